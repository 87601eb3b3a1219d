"""`cog store …`: add, path-info, verify, gc, roots, realise, export, import, copy, keys.

The realiser, the binary caches and signing are imported by the subcommands that use them:
`cog store add` and its kin start without loading trio, httpx or pydantic.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from cog.cli.cache_flags import add_key_flags
from cog.project.errors import UsageError
from store.db import PathInfo
from store.gc import collect_garbage
from store.local import Store
from store.paths import StorePath
from store.transfer import export_paths, import_paths
from store.verify import verify_store


def register(sub: argparse._SubParsersAction[Any]) -> None:
    store = sub.add_parser("store")
    cmds = store.add_subparsers(dest="store_cmd", metavar="COMMAND", required=True)

    p = cmds.add_parser("add", help="add a file or directory as a content-addressed path")
    p.add_argument("path", type=Path)
    p.add_argument("--name", help="store path name (default: the file's name)")
    p.add_argument("--root", metavar="NAME", help="also keep it alive as gcroots/NAME")
    p.set_defaults(func=cmd_add)

    p = cmds.add_parser("path-info", help="show what the store knows about a path")
    p.add_argument("paths", nargs="+")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--closure", action="store_true", help="include everything it refers to")
    p.set_defaults(func=cmd_path_info)

    p = cmds.add_parser("verify", help="re-hash every valid path")
    p.add_argument("--repair", action="store_true", help="remove corrupt paths and rebuild them")
    p.set_defaults(func=cmd_verify)

    p = cmds.add_parser("gc", help="delete what no GC root reaches")
    p.add_argument("--dry-run", action="store_true", help="only say what would be deleted")
    p.set_defaults(func=cmd_gc)

    p = cmds.add_parser("roots", help="list GC roots")
    p.set_defaults(func=cmd_roots)

    p = cmds.add_parser("realise", help="build .drv files from the store")
    p.add_argument("drvs", nargs="+")
    p.add_argument("--jobs", "-j", type=int, default=None, help="parallel builds (default: cores)")
    p.add_argument("--no-sandbox", action="store_true", help="run foreign code unsandboxed")
    p.set_defaults(func=cmd_realise)

    p = cmds.add_parser("export", help="write the closure of paths to stdout as one stream")
    p.add_argument("paths", nargs="+")
    p.add_argument(
        "--signing-key",
        type=Path,
        metavar="FILE",
        help="sign the input-addressed paths with this key (default: $COG_SIGNING_KEY)",
    )
    p.set_defaults(func=cmd_export)

    p = cmds.add_parser("import", help="read an export stream from stdin into the store")
    p.add_argument(
        "--trusted-key",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="accept input-addressed paths this public key signed (repeatable; "
        "default: $COG_TRUSTED_KEYS)",
    )
    p.set_defaults(func=cmd_import)

    p = cmds.add_parser("copy", help="copy paths (with their closure) to or from a binary cache")
    p.add_argument("paths", nargs="+")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--to", metavar="URL", help="oci://HOST/REPO or file://DIR")
    where.add_argument("--from", dest="source", metavar="URL", help="oci://HOST/REPO or file://DIR")
    add_key_flags(p)
    p.add_argument("-j", "--jobs", type=int, default=4, help="parallel transfers (default 4)")
    p.set_defaults(func=cmd_copy)

    p = cmds.add_parser("generate-key", help="make a signing key pair: NAME.sec and NAME.pub")
    p.add_argument("name", help="the key's name, recorded in every signature it makes")
    p.add_argument("--dir", type=Path, default=Path("."), help="where to write (default: here)")
    p.set_defaults(func=cmd_generate_key)


def _path(store: Store, text: str) -> StorePath:
    """A path given by its logical name, or by a (possibly relative) physical one."""
    return store.parse(text if text.startswith("/") else str(Path(text).absolute()))


def cmd_add(args: argparse.Namespace, store: Store) -> int:
    if not args.path.exists() and not args.path.is_symlink():
        raise UsageError(f"{args.path} does not exist", hint="give a file or directory to add")
    path = store.add(args.path, args.name)
    if args.root:
        store.add_root(path, args.root)
    print(path)
    return 0


def cmd_path_info(args: argparse.Namespace, store: Store) -> int:
    paths = [_path(store, p) for p in args.paths]
    if args.closure:
        paths = store.closure(paths)
    infos = [store.layer_info(p) for p in paths]
    if args.json:
        json.dump([i.to_json() for i in infos], sys.stdout, indent=2, sort_keys=True)
        print()
        return 0
    for info in infos:
        print(info.path)
        print(f"  nar blake3   {info.nar_hash}  ({info.nar_size} bytes)")
        print(f"  layer sha256 {info.tar_sha256}  ({info.tar_size} bytes)")
        if info.deriver:
            print(f"  deriver      {info.deriver}")
        if info.ca:
            print(f"  ca           {info.ca}")
        for ref in info.references:
            print(f"  references   {ref}")
    return 0


def cmd_verify(args: argparse.Namespace, store: Store) -> int:
    report = verify_store(store, repair=args.repair)
    for path, problem in sorted(report.corrupt.items()):
        print(f"corrupt: {path}: {problem}")
    if report.leftovers:
        verb = "removed" if args.repair else "found"
        print(
            f"{verb} {len(report.leftovers)} leftover entries of interrupted work (not valid paths)"
        )
    rebuilt = 0
    if args.repair and report.removed:
        for info in report.removed:
            print(f"removed: {info.path}")
        rebuilt = _rebuild(store, report.removed)
    print(
        f"checked {report.checked} paths, {len(report.corrupt)} corrupt"
        + (f", {rebuilt} rebuilt" if args.repair else "")
    )
    return 0 if report.clean or args.repair else 1


def _rebuild(store: Store, removed: list[PathInfo]) -> int:
    """Builds again what repair removed, where the derivation that made it is still known."""
    drvs = []
    for info in removed:
        if info.deriver is not None:
            deriver = StorePath.parse(info.deriver)
            if store.is_valid(deriver):
                drvs.append(deriver)
    if drvs:
        _realise(store, drvs)
    return len(drvs)


def _realise(
    store: Store, drvs: list[StorePath], jobs: int | None = None, sandbox: bool = True
) -> list[dict[str, StorePath]]:
    """Builds the outputs of the `.drv` files `drvs` (each output name -> its path)."""
    import trio

    from builders.progress import default_reporter
    from builders.realise import Realiser
    from derivations.store_io import read_drv

    realiser = Realiser(store, jobs=jobs, sandbox=sandbox, reporter=default_reporter())
    return trio.run(realiser.realise, [read_drv(store, d) for d in drvs])


def cmd_gc(args: argparse.Namespace, store: Store) -> int:
    result = collect_garbage(store, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    for path in result.dead:
        print(f"{verb} {path}")
    mib = result.freed_bytes / (1 << 20)
    print(
        f"{verb} {len(result.dead)} paths and {len(result.leftovers)} leftovers, "
        f"{mib:.1f} MiB" + (" freed" if not args.dry_run else "")
    )
    return 0


def cmd_roots(args: argparse.Namespace, store: Store) -> int:
    for link, path in store.roots():
        print(f"{link} -> {path if path is not None else '(stale)'}")
    return 0


def cmd_realise(args: argparse.Namespace, store: Store) -> int:
    drvs = [_path(store, d) for d in args.drvs]
    for outputs in _realise(store, drvs, jobs=args.jobs, sandbox=not args.no_sandbox):
        for path in outputs.values():
            print(path)
    return 0


def cmd_export(args: argparse.Namespace, store: Store) -> int:
    if sys.stdout.isatty():
        raise UsageError(
            "refusing to write a binary stream to a terminal", hint="redirect it: > FILE"
        )
    from store.signing import SigningKey

    key_file = args.signing_key or os.environ.get("COG_SIGNING_KEY")
    key = SigningKey.load(Path(key_file)) if key_file else None
    export_paths(store, [_path(store, p) for p in args.paths], sys.stdout.buffer, key)
    sys.stdout.buffer.flush()
    return 0


def cmd_import(args: argparse.Namespace, store: Store) -> int:
    from store.signing import TrustedKeys

    trusted = list(args.trusted_key)
    trusted += [Path(p) for p in os.environ.get("COG_TRUSTED_KEYS", "").split(":") if p]
    for path in import_paths(store, sys.stdin.buffer, TrustedKeys.load(trusted)):
        print(path)
    return 0


def cmd_copy(args: argparse.Namespace, store: Store) -> int:
    from cog.project.caches import Caches
    from cog.project.options import CacheOptions

    keys = {"signing_key": args.signing_key, "trusted_keys": tuple(args.trusted_key)}
    if args.to:
        from store.cache import publish

        caches = Caches.open(CacheOptions(read_write=(args.to,), **keys))
        paths = [_path(store, p) for p in args.paths]
        for path in paths:
            store.info(path)  # a path that is not here fails before anything is sent
        [cache] = caches.writable
        # Not Caches.publish, which reports a failure and goes on (a build's cache is an
        # extra): here the copy is the command, so a refused path fails it.
        result = publish(store, cache, paths, caches.key, jobs=args.jobs)
        print(
            f"cache {cache.url}: {len(result.uploaded)} paths published, "
            f"{len(result.present)} already there",
            file=sys.stderr,
        )
        return 0
    substituter = Caches.open(CacheOptions(read_only=(args.source,), **keys)).substituter
    assert substituter is not None
    substituter.fallback = ""  # nothing is built here: a refusal is only a refusal
    said: list[str] = []
    tell = substituter.say

    def say(line: str) -> None:
        said.append(line)
        tell(line)

    substituter.say = say
    failed = 0
    for text in args.paths:
        path = store.parse(text)
        before = len(said)
        if store.is_valid(path) or substituter.fetch(store, path):
            print(path)
            continue
        if len(said) == before:  # (a refusal has said why already, in one line)
            line = f"{path} was not copied: {args.source} holds no trusted entry for it"
            print(line, file=sys.stderr)
        failed += 1
    return 1 if failed else 0


def cmd_generate_key(args: argparse.Namespace, store: Store) -> int:
    from store.signing import generate_key

    secret, public = generate_key(args.name, args.dir)
    print(f"wrote {secret} (keep it secret: COG_SIGNING_KEY) and {public} (COG_TRUSTED_KEYS)")
    return 0

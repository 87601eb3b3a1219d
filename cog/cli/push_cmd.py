"""`cog push` and `cog login`: the project's image to a registry, and the credentials for it."""

from __future__ import annotations

import argparse
import functools
import getpass
import sys
from collections.abc import Callable
from typing import Any

from cog.cli.build_cmd import add_image_flags, build_image
from cog.cli.errors import UsageError
from cog.cli.project import project_dir
from derivations.config import load_config
from store.cache import OciCache, Substituter, cached_layout
from store.errors import StoreError
from store.local import Store
from store.oci import Layout
from store.paths import StorePath
from store.push import KnownBlobs, PushResult, push
from store.reference import Reference
from store.registry import Registry, login


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("push")
    p.add_argument("image", nargs="?", help="HOST/NAME[:TAG] (default: cog.yaml's image)")
    add_image_flags(p)
    p.add_argument("--uploads", type=int, default=4, help="parallel blob uploads (default 4)")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("login")
    p.add_argument("registry", help="HOST[:PORT], e.g. r8.im")
    p.add_argument("-u", "--username", help="the user name (asked for if not given)")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.set_defaults(func=cmd_login)


def cmd_push(args: argparse.Namespace, store: Store) -> int:
    project = project_dir()
    target = args.image or load_config(project).image
    if not target:
        raise UsageError(
            "there is no image name to push to",
            hint="run `cog push HOST/NAME[:TAG]`, or set image: in cog.yaml",
        )
    ref = Reference.parse(target)
    if ref.digest:
        raise UsageError(f"cannot push to a digest ({target})", hint="push to a tag instead")
    registry = Registry(ref.host, ref.insecure)
    registry.ping()  # a wrong host or missing credentials fail now, not after the build
    lazy = bool(args.cache or args.cache_from)
    _, path, caches = build_image(store, project, args, fetch=not lazy)
    print(f"pushing {ref.with_tag(ref.tag or 'latest')}", file=sys.stderr)
    known = KnownBlobs(store.meta / "registries", ref.host)
    # Layers a binary cache on this registry holds are mounted from it, never uploaded.
    mount_from = next(
        (c.repository for c in caches.every if isinstance(c, OciCache) and c.ref.host == ref.host),
        None,
    )
    send = functools.partial(
        push,
        ref=ref,
        known=known,
        jobs=args.uploads,
        say=lambda line: print(line, file=sys.stderr),
        registry=registry,
        mount_from=mount_from,
    )
    result = None
    if not store.is_valid(path) and caches.substituter is not None:
        result = _push_from_cache(store, caches.substituter, path, send)
    if result is None:
        if not store.is_valid(path):  # the cache could not serve it after all: fetch it
            _, path, _ = build_image(store, project, args)
        result = send(Layout.open(store.real_path(path)))
    print(
        f"{len(result.uploaded)} blobs uploaded ({result.bytes_uploaded / 2**20:.1f} MiB), "
        f"{len(result.mounted)} mounted, {len(result.present)} already there",
        file=sys.stderr,
    )
    print(f"pushed {ref.with_tag(None)}@{result.digest}")
    return 0


def _push_from_cache(
    store: Store,
    substituter: Substituter,
    path: StorePath,
    send: Callable[[Layout], PushResult],
) -> PushResult | None:
    """Pushes an image that stays in a binary cache: its manifest and config come from the
    cache, its layers are mounted from the cache's repository. None (and one line) when a
    layer cannot be had that way; the caller then fetches the image and pushes it."""
    with store.temp_dir("cached-image-") as where:
        try:
            layout = cached_layout(substituter, path, where)
            return send(layout)
        except (StoreError, OSError) as e:
            print(
                f"the cached image cannot be pushed by mounting ({e}); fetching it", file=sys.stderr
            )
            return None


def cmd_login(args: argparse.Namespace, store: Store) -> int:
    host = args.registry.removeprefix("https://").removeprefix("http://").rstrip("/")
    username = args.username or (input("Username: ") if sys.stdin.isatty() else "")
    if not username:
        raise UsageError("no user name given", hint="pass -u NAME")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
    else:
        raise UsageError("no password given", hint="pipe it in with --password-stdin")
    if not password:
        raise UsageError("the password is empty")
    saved = login(host, username, password)
    print(f"logged in to {host}; credentials saved in {saved}")
    return 0

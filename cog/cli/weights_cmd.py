"""`cog weights import` and `cog weights pull`: managed weights, as in Cog (experimental there).

`import` reads each weight's source (a `file://` folder, filtered by its include/exclude
globs), stores its files in the local weight cache, packs them into an OCI artifact pushed to
the model's repository, and records it all in `weights.lock`. `pull` fills the cache back from
the registry for a checked-in `weights.lock`, fetching only the layers that hold missing files.
`cog run`/`cog predict`/`cog serve` then mount each weight read-only at its target.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cog.cli.project import project_dir
from cog.cli.weights_store import (
    CHUNK,
    LOCK_NAME,
    Artifact,
    FileCache,
    LockEntry,
    Plan,
    WeightsError,
    build_artifact,
    cache_dir,
    dirhash,
    envelope_format,
    format_size,
    load_lock,
    managed_weights,
    plan_weight,
    short_digest,
    unpack_layer,
    weight_repository,
    weight_tag,
    write_layout,
)
from derivations.config import CogConfig, Weight, load_config
from store.local import Store
from store.oci import Layout, digest_of
from store.push import KnownBlobs, push
from store.reference import Reference
from store.registry import Registry

HELP_REGISTRY = (
    "The registry is the model's: 'model' in cog.yaml, with COG_MODEL, COG_MODEL_REGISTRY or "
    "COG_MODEL_REPO overriding it."
)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("weights")
    commands = p.add_subparsers(dest="weights_command", metavar="COMMAND", required=True)
    q = commands.add_parser(
        "import",
        help="build and push weights to a registry",
        description="Packs the weight sources of cog.yaml into OCI layers, pushes them to the "
        "model's registry, updates weights.lock and fills the local weight cache, so `cog run` "
        "can mount them at once. " + HELP_REGISTRY,
    )
    q.add_argument("names", nargs="*", metavar="NAME", help="only these weights (default: all)")
    q.add_argument("--dry-run", action="store_true", help="show what would be imported, only")
    q.add_argument("-v", "--verbose", action="store_true", help="show per-file details")
    q.add_argument(
        "--allow-source",
        action="append",
        default=[],
        type=Path,
        metavar="DIR",
        help="a folder outside the project that cog.yaml's sources may read and push "
        "(sources stay inside the project otherwise; repeatable)",
    )
    q.set_defaults(func=cmd_import)
    q = commands.add_parser(
        "pull",
        help="populate the local weight cache from the registry",
        description="Downloads the files weights.lock names, and that the local weight cache "
        "($COG_CACHE_DIR/weights) lacks, from the registry. " + HELP_REGISTRY,
    )
    q.add_argument("names", nargs="*", metavar="NAME", help="only these weights (default: all)")
    q.add_argument("-v", "--verbose", action="store_true", help="show manifest, layer, file detail")
    q.set_defaults(func=cmd_pull)


def say(line: str = "") -> None:
    print(line, file=sys.stderr, flush=True)


def _note() -> None:
    say("NOTE: cog weights is experimental. Behavior may change in future versions.")
    say("Do not rely on it in production workflows.")
    say()


def _weights(config: CogConfig) -> list[Weight]:
    weights = managed_weights(config)
    if not weights:
        raise WeightsError(
            "no weights defined in cog.yaml",
            hint="add weights: entries with a name, a target and a source: {uri: file://…}",
        )
    return weights


# --- import --------------------------------------------------------------------------------


def _status(plan: Plan, fingerprints: list[str], old: LockEntry | None) -> str:
    if old is None:
        return "new"
    sources = [(uri, inc, exc) for uri, _, inc, exc, _ in plan.sources]
    if old.target != plan.target or sources != [(s.uri, s.include, s.exclude) for s in old.sources]:
        return "config changed"
    if fingerprints != [s.fingerprint for s in old.sources] or [
        (f.path, f.digest) for f in plan.files
    ] != [(f.path, f.digest) for f in sorted(old.files, key=lambda f: f.path)]:
        return "upstream changed"
    return "unchanged"


def _print_plan(
    plan: Plan, fingerprints: list[str], old: LockEntry | None, repo: Reference, verbose: bool
) -> None:
    """What is read from where and pushed where: each source's folder as resolved (a link
    shows where it leads) and the repository."""
    status = _status(plan, fingerprints, old)
    icon = {"new": "+", "unchanged": "="}.get(status, "~")
    if len(plan.sources) == 1:
        say(f"{icon} {plan.name}  {plan.sources[0][0]} → {plan.target}")
    else:
        say(f"{icon} {plan.name}  → {plan.target}")
        for i, source in enumerate(plan.sources):
            say(f"  source[{i}]: {source[0]}")
    for _, root, _, _, _ in plan.sources:
        say(f"  reads: {root}")
    say(f"  pushes to: {repo}")
    say(f"  status: {status}")
    say(f"  files: {len(plan.files)}  size: {format_size(plan.size)}")
    if verbose:
        if plan.excluded:
            say(f"  excluded ({len(plan.excluded)} files):")
            for f in plan.excluded:
                say(f"    - {f.path} ({format_size(f.size)})")
        say(f"  included ({len(plan.files)} files):")
        for f in plan.files:
            say(f"    + {f.path} ({format_size(f.size)})")
    say()


def _file_digest(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        while data := f.read(CHUNK):
            hasher.update(data)
    return f"sha256:{hasher.hexdigest()}"


def _fingerprints(plan: Plan) -> list[str]:
    """Hashes every file of the plan's sources (each source's fingerprint covers all its
    files, the filtered-out ones too); returns the fingerprints."""
    fingerprints = []
    for _, _, _, _, every in plan.sources:
        for f in every:
            try:
                f.digest = _file_digest(f.real)
            except OSError as e:
                raise WeightsError(f"cannot read {f.real}: {e.strerror}") from None
        fingerprints.append(dirhash([(f.path, f.digest) for f in every]))
    return fingerprints


def _build(plan: Plan, fingerprints: list[str], cache: FileCache) -> Artifact:
    """The included files into the cache (those it lacks), then the weight's artifact."""
    for f in plan.files:
        if cache.has(f.digest):
            continue
        try:
            with open(f.real, "rb") as source:
                cache.put_stream(source, f.size, f.digest)
        except OSError as e:
            raise WeightsError(f"cannot read {f.real}: {e.strerror}") from None
    return build_artifact(plan, {f.path: f.digest for f in plan.files}, cache, fingerprints)


def _push(store: Store, repo: Reference, artifact: Artifact, verbose: bool) -> str:
    registry = Registry(repo.host, repo.insecure)
    ref = repo.with_tag(weight_tag(artifact.entry.name, artifact.entry.set_digest))
    known = KnownBlobs(store.meta / "registries", repo.host)
    with store.temp_dir("weights-") as scratch:
        write_layout(artifact, scratch / "layout")
        layout = Layout.open(scratch / "layout")
        name = artifact.entry.name

        def line(text: str) -> None:
            if verbose:
                say(f"  {name}: {text.strip()}")

        result = push(layout, ref, known, jobs=4, say=line, registry=registry)
    if result.digest != artifact.entry.digest:
        raise WeightsError(f"the registry stored weight {name!r} as {result.digest}")
    return f"{repo}@{result.digest}"


def cmd_import(args: argparse.Namespace, store: Store) -> int:
    _note()
    project = project_dir()
    config = load_config(project)
    weights = _weights(config)
    repo = weight_repository(config)
    selected = _select(weights, args.names)
    lock_path = project / LOCK_NAME
    lock = load_lock(lock_path, required=False)
    plans = [plan_weight(project, w, args.allow_source) for w in selected]
    fingerprints = [_fingerprints(plan) for plan in plans]
    for plan, found in zip(plans, fingerprints, strict=True):
        _print_plan(plan, found, lock.find(plan.name), repo, args.verbose)
    if args.dry_run:
        return 0

    cache = FileCache(cache_dir())
    say(f"Building {len(plans)} weight(s)...")
    artifacts = []
    for plan, found in zip(plans, fingerprints, strict=True):
        artifacts.append(_build(plan, found, cache))
        say(f"{plan.name}: Download complete")
    for artifact in artifacts:
        entry = artifact.entry
        say(
            f"  {entry.name} -> {entry.target} ({len(entry.layers)} layer(s), "
            f"{format_size(artifact.size)})"
        )

    say(f"\nPushing {len(artifacts)} weight(s) to {repo}...")
    Registry(repo.host, repo.insecure).ping()
    refs = []
    for artifact in artifacts:
        refs.append(_push(store, repo, artifact, args.verbose))
        say(f"{artifact.entry.name}: Pushed")

    # The lock: each imported entry (an unchanged one keeps its import time), in cog.yaml's
    # order, without the weights cog.yaml no longer has.
    imported = {a.entry.name: a.entry for a in artifacts}
    entries = []
    for weight in weights:
        name = weight.name or ""
        old, new = lock.find(name), imported.get(name)
        if new is not None and old is not None and old.same_content(new):
            new = old
        if new is not None or old is not None:
            entries.append(new or old)
    lock.weights = [e for e in entries if e is not None]
    lock.envelope_format = envelope_format()
    lock.save(lock_path)

    for artifact, ref in zip(artifacts, refs, strict=True):
        say(f"  {artifact.entry.name}: {ref}")
    say(f"\nImported {len(artifacts)} weight artifact(s) to {repo}")
    say(f"Total: {format_size(sum(a.size for a in artifacts))}")
    return 0


def _select(weights: list[Weight], names: list[str]) -> list[Weight]:
    if not names:
        return weights
    by_name = {w.name: w for w in weights}
    unknown = [n for n in dict.fromkeys(names) if n not in by_name]
    if unknown:
        raise WeightsError(
            f"weight(s) not found in cog.yaml: {', '.join(unknown)}",
            hint=f"the weights are: {', '.join(str(w.name) for w in weights)}",
        )
    return [by_name[n] for n in dict.fromkeys(names)]


# --- pull ----------------------------------------------------------------------------------


@dataclass
class PullResult:
    cached: bool
    bytes: int = 0
    files: int = 0
    layers: int = 0


def cmd_pull(args: argparse.Namespace, store: Store) -> int:
    _note()
    project = project_dir()
    config = load_config(project)
    _weights(config)
    repo = weight_repository(config)
    lock_path = project / LOCK_NAME
    lock = load_lock(lock_path)
    entries = lock.weights
    if args.names:
        unknown = [n for n in dict.fromkeys(args.names) if lock.find(n) is None]
        if unknown:
            raise WeightsError(
                f"unknown weight(s): {', '.join(unknown)}",
                hint=f"{LOCK_NAME} has: {', '.join(e.name for e in lock.weights) or 'none'}",
            )
        entries = [e for n in dict.fromkeys(args.names) if (e := lock.find(n)) is not None]
    cache = FileCache(cache_dir())
    if args.verbose:
        say(f"Cache:    {cache.root}")
        say(f"Lockfile: {lock_path}")
        say()
    results = [_pull_entry(entry, repo, cache, args.verbose) for entry in entries]
    if args.verbose:
        say()
    fetched = [r for r in results if not r.cached]
    files = sum(r.files for r in fetched)
    if files == 0:
        say(f"All {len(results)} weight(s) already cached.")
        return 0
    say(
        f"Pulled {format_size(sum(r.bytes for r in fetched))} across {files} file(s) / "
        f"{sum(r.layers for r in fetched)} layer(s) for {len(fetched)} weight(s); "
        f"{len(results) - len(fetched)} already cached."
    )
    return 0


def _pull_entry(entry: LockEntry, repo: Reference, cache: FileCache, verbose: bool) -> PullResult:
    missing = [f for f in entry.files if not cache.has(f.digest)]
    total = len(entry.files)
    if not missing:
        say(f"Pulling {entry.name}... cached ({total}/{total} files)")
        return PullResult(cached=True)
    if verbose:
        say(f"Pulling {entry.name} -> {entry.target}")
        say(f"  manifest: {repo}@{entry.digest}")
        say(f"  files:    {len(missing)} missing / {total} total")
    else:
        say(f"Pulling {entry.name}... ({len(missing)} file(s))")
    registry = Registry(repo.host, repo.insecure)
    data, _ = registry.get_manifest(repo.repository, entry.digest)
    if digest_of(data) != entry.digest:
        raise WeightsError(
            f"the registry sent a manifest for {entry.name!r} that is not {entry.digest}"
        )
    try:
        layers = {str(d["digest"]): d for d in json.loads(data)["layers"]}
    except (ValueError, KeyError, TypeError):
        raise WeightsError(
            f"the manifest of weight {entry.name!r} is not a weight artifact"
        ) from None
    result = PullResult(cached=False)
    missing_paths = {f.path for f in missing}
    for layer in sorted({f.layer for f in missing}):
        descriptor = layers.get(layer)
        if descriptor is None:
            raise WeightsError(
                f"the manifest of weight {entry.name!r} has no layer {short_digest(layer)}",
                hint="import the weights again",
            )
        size = int(descriptor.get("size", 0))
        if verbose:
            say(f"  layer {short_digest(layer)} ({format_size(size) if size else 'unknown size'})")
        wanted = {f.path: f for f in entry.files if f.layer == layer}
        cache.root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache.root, prefix=".pull-") as tmp:
            blob = Path(tmp) / "layer"
            registry.fetch_blob(repo.repository, layer, size, blob)
            for stored in unpack_layer(blob, layer, wanted, cache):
                if stored.path not in missing_paths:
                    continue
                say(f"{short_digest(stored.digest)}: Download complete")
                if verbose:
                    say(
                        f"    {stored.path} ({format_size(stored.size)}) "
                        f"{short_digest(stored.digest)}"
                    )
                result.files += 1
                result.bytes += stored.size
        result.layers += 1
    say(
        f"Pulling {entry.name}... done ({format_size(result.bytes)}, {result.files} file(s), "
        f"{result.layers} layer(s))"
    )
    return result

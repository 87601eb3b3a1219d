"""`cog weights import` and `cog weights pull`: managed weights, as in Cog (experimental there).

`import` reads each weight's source (a `file://` folder, filtered by its include/exclude
globs), stores its files in cog's store, packs them into an OCI artifact pushed to the model's
repository, and records it all in `weights.lock`. `pull` fills the store back from the registry
for a checked-in `weights.lock`, fetching only the layers that hold missing files. `cog run`/
`cog predict`/`cog serve` then mount each weight read-only at its target. The work is
`cog.project.weights`'s; this module parses and prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cog.cli.cog_flags import add_config_flag
from cog.project.errors import UsageError
from cog.project.locate import project_dir
from cog.project.weights import ProjectWeights
from cog.project.weights_sources import Plan
from cog.project.weights_status import WeightStatus, weights_status
from derivations.weights_lock import LockEntry
from store.local import Store
from store.reference import Reference

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
        "model's registry, updates weights.lock and stores the files in cog's store, so `cog "
        "run` can mount them at once. " + HELP_REGISTRY,
    )
    q.add_argument("names", nargs="*", metavar="NAME", help="only these weights (default: all)")
    add_config_flag(q)
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
        description="Downloads the files weights.lock names, and that cog's store "
        "($COG_STORE_DIR) lacks, from the registry. " + HELP_REGISTRY,
    )
    q.add_argument("names", nargs="*", metavar="NAME", help="only these weights (default: all)")
    add_config_flag(q)
    q.add_argument("-v", "--verbose", action="store_true", help="show manifest, layer, file detail")
    q.set_defaults(func=cmd_pull)
    q = commands.add_parser(
        "status",
        help="show the status of configured weights",
        description="Shows each declared weight's state across cog.yaml, weights.lock and the "
        "registry: ready (all layers in the registry), incomplete (some missing there), stale "
        "(cog.yaml changed since the import), pending (not imported yet) or orphaned (in "
        "weights.lock only). Every status but ready is resolved by `cog weights import`. "
        + HELP_REGISTRY
        + " Exits 0 when every weight is ready, 1 otherwise.",
    )
    q.add_argument("--json", action="store_true", help="output as JSON")
    q.add_argument("-v", "--verbose", action="store_true", help="show per-layer status")
    add_config_flag(q)
    q.set_defaults(func=cmd_status)


def say(line: str = "") -> None:
    print(line, file=sys.stderr, flush=True)


def format_size(size: int) -> str:
    """Sizes as Cog prints them: 512B, 1.0KB, 3.2MB, 1.5GB."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f}{unit}"
    return f"{size}B"


def short_digest(digest: str) -> str:
    return digest.partition(":")[2][:12]


def _note() -> None:
    say("NOTE: cog weights is experimental. Behavior may change in future versions.")
    say("Do not rely on it in production workflows.")
    say()


# --- import --------------------------------------------------------------------------------


def _print_plan(plan: Plan, repo: Reference, verbose: bool) -> None:
    """What is read from where and pushed where: each source's folder as resolved (a link
    shows where it leads) and the repository."""
    status = plan.status
    icon = {"new": "+", "unchanged": "="}.get(status, "~")
    if len(plan.sources) == 1:
        say(f"{icon} {plan.name}  {plan.sources[0].uri} → {plan.target}")
    else:
        say(f"{icon} {plan.name}  → {plan.target}")
        for i, source in enumerate(plan.sources):
            say(f"  source[{i}]: {source.uri}")
    for source in plan.sources:
        say(f"  reads: {source.root}")
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


def cmd_import(args: argparse.Namespace, store: Store) -> int:
    _note()
    weights = ProjectWeights(store, project_dir())
    weights.declared()
    repo = weights.repository()
    plans = weights.plan(args.names, args.allow_source)
    for plan in plans:
        _print_plan(plan, repo, args.verbose)
    if args.dry_run:
        return 0

    say(f"Building {len(plans)} weight(s)...")
    artifacts = []
    for plan in plans:
        artifacts.append(weights.build(plan))
        say(f"{plan.name}: Download complete")
    for artifact in artifacts:
        entry = artifact.entry
        say(
            f"  {entry.name} -> {entry.target} ({len(entry.layers)} layer(s), "
            f"{format_size(artifact.size)})"
        )

    say(f"\nPushing {len(artifacts)} weight(s) to {repo}...")
    weights.reachable()
    refs = []
    for artifact in artifacts:
        name = artifact.entry.name

        def line(text: str, name: str = name) -> None:
            if args.verbose:
                say(f"  {name}: {text.strip()}")

        refs.append(weights.push(artifact, line))
        say(f"{name}: Pushed")
    weights.record(artifacts)

    for artifact, ref in zip(artifacts, refs, strict=True):
        say(f"  {artifact.entry.name}: {ref}")
    say(f"\nImported {len(artifacts)} weight artifact(s) to {repo}")
    say(f"Total: {format_size(sum(a.size for a in artifacts))}")
    return 0


# --- pull ----------------------------------------------------------------------------------


@dataclass
class PullResult:
    cached: bool
    bytes: int = 0
    files: int = 0
    layers: int = 0


def cmd_pull(args: argparse.Namespace, store: Store) -> int:
    _note()
    weights = ProjectWeights(store, project_dir())
    weights.declared()
    repo = weights.repository()
    entries = weights.pulled(args.names)
    if args.verbose:
        say(f"Cache:    {store.root}")
        say(f"Lockfile: {weights.lock_path}")
        say()
    results = [_pull_entry(weights, entry, repo, args.verbose) for entry in entries]
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


def _pull_entry(
    weights: ProjectWeights, entry: LockEntry, repo: Reference, verbose: bool
) -> PullResult:
    missing = weights.missing(entry)
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
    result = PullResult(cached=False)
    missing_paths = {f.path for f in missing}
    for layer, size in weights.layers(entry, missing):
        if verbose:
            say(f"  layer {short_digest(layer)} ({format_size(size) if size else 'unknown size'})")
        for stored in weights.fetch_layer(entry, layer, size):
            if stored.path not in missing_paths:
                continue
            say(f"{short_digest(stored.digest)}: Download complete")
            if verbose:
                say(f"    {stored.path} ({format_size(stored.size)}) {short_digest(stored.digest)}")
            result.files += 1
            result.bytes += stored.size
        result.layers += 1
    say(
        f"Pulling {entry.name}... done ({format_size(result.bytes)}, {result.files} file(s), "
        f"{result.layers} layer(s))"
    )
    return result


# --- status --------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace, store: Store) -> int:
    _note()
    results = weights_status(ProjectWeights(store, project_dir()))
    if args.json:
        print(_go_struct_json({"weights": [_status_json(r) for r in results]}))
    else:
        _print_status(results, args.verbose)
    if any(r.status != "ready" for r in results):
        raise UsageError(
            "not all weights are ready", hint="run 'cog weights import' to resolve the others"
        )
    return 0


def _status_json(result: WeightStatus) -> dict[str, Any]:
    """One weight as Cog's `--json` writes it (its struct's fields, in order; empty ones
    left out)."""
    shown: dict[str, Any] = {"name": result.name, "target": result.target, "status": result.status}
    entry = result.entry
    if entry is not None:
        shown |= {
            "size": entry.size,
            "sizeCompressed": entry.size_compressed,
            "layerCount": len(entry.layers),
            "fileCount": len(entry.files),
            "digest": entry.digest,
        }
        if entry.sources and (entry.sources[0].uri or entry.sources[0].fingerprint):
            first = entry.sources[0]
            more = f" (+{len(entry.sources) - 1} more)" if len(entry.sources) > 1 else ""
            source = {
                "uri": first.uri + more,
                "fingerprint": first.fingerprint,
            }
            shown["source"] = {k: v for k, v in source.items() if v}
    shown["layers"] = [
        {"digest": layer.digest, "size": layer.size, "status": layer.status}
        for layer in result.layers
    ]
    return {k: v for k, v in shown.items() if v not in (0, "", [], None) or k in _KEPT}


_KEPT = {"name", "target", "status"}


def _go_struct_json(value: Any) -> str:
    """JSON as Go's encoder writes a struct, indented by two: fields in their order, UTF-8
    kept, and <, > and & escaped."""
    text = json.dumps(value, indent=2, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _print_status(results: list[WeightStatus], verbose: bool) -> None:
    """The table Cog prints: columns two spaces apart (Go's tabwriter), and with --verbose
    each layer under its weight."""
    if not results:
        print("No weights configured.")
        return
    rows = [["NAME", "TARGET", "STATUS", "SIZE", "LAYERS", "DIGEST"]]
    for r in results:
        entry = r.entry
        size = format_size(entry.size) if entry is not None and entry.size > 0 else "-"
        layers = str(len(entry.layers)) if entry is not None and entry.layers else "-"
        digest = _digest_short(entry.digest) if entry is not None and entry.digest else "-"
        rows.append([r.name, r.target, r.status, size, layers, digest])
        if verbose:
            for i, layer in enumerate(r.layers):
                branch = "└─" if i == len(r.layers) - 1 else "├─"
                size = format_size(layer.size)
                rows.append(
                    [f"  {branch}", "", layer.status, size, "", _digest_short(layer.digest)]
                )
    widths = [max(len(row[i]) for row in rows) + 2 for i in range(5)]
    for row in rows:
        print("".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + row[5])


def _digest_short(digest: str) -> str:
    algorithm, colon, hexadecimal = digest.partition(":")
    return f"{algorithm}:{hexadecimal[:12]}" if colon and hexadecimal else digest

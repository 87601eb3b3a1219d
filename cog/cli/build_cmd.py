"""`cog build`: lock if needed (or refuse, with --locked), then realise every layer."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from builders.progress import default_reporter
from builders.project import Layers, layers
from builders.realise import realise
from cog.cli.errors import UsageError
from cuda_channels.channel import DEFAULT_CHANNEL, Channel, load
from derivations import lock as locking
from derivations.config import CogConfig, load_config
from store.local import Store


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("build", help="build every layer of the project in this directory")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--locked", action="store_true", help="refuse a missing or stale cog.lock")
    mode.add_argument("--frozen", action="store_true", help="use cog.lock as it is")
    p.add_argument("--arch", choices=["amd64", "arm64"], default="amd64")
    p.add_argument("-j", "--jobs", type=int, default=None)
    p.set_defaults(func=cmd_build)


def locked_inputs(
    project: Path, arch: str, locked: bool, frozen: bool
) -> tuple[CogConfig, dict[str, Any], Channel]:
    """The config and a lock to build from, relocking when allowed and needed."""
    config = load_config(project)
    lock = locking.read(project)
    name = (lock or {}).get("inputs", {}).get("channel", {}).get("name") or DEFAULT_CHANNEL
    channel = load(name)
    if lock is None:
        if locked or frozen:
            raise UsageError("there is no cog.lock", hint="run `cog lock` first")
        print("no cog.lock yet: locking", file=sys.stderr)
    else:
        if frozen:
            return config, lock, channel
        drift = locking.drift(lock, config, project, channel, arch)
        if not drift:
            return config, lock, channel
        if locked:
            raise UsageError("cog.lock is stale: " + "; ".join(drift), hint="run `cog lock`")
        print("cog.lock is stale (" + "; ".join(drift) + "): locking", file=sys.stderr)
    lock = locking.create(config, project, channel, arch, lock)
    locking.write(project, lock)
    return config, lock, channel


def build(store: Store, project: Path, args: argparse.Namespace) -> Layers:
    config, lock, channel = locked_inputs(project, args.arch, args.locked, args.frozen)
    result = layers(store, project, config, lock, channel)
    realise(store, result.derivations, jobs=args.jobs, reporter=default_reporter())
    roots = project / ".cog" / "roots"
    roots.mkdir(parents=True, exist_ok=True)
    for name, path in result.paths().items():
        store.add_indirect_root(roots / name.replace(":", "-").replace("/", "-"), path)
    return result


def cmd_build(args: argparse.Namespace, store: Store) -> int:
    result = build(store, Path.cwd(), args)
    for name, path in result.paths().items():
        info = store.info(path)
        print(f"{name:<16} {path}  {info.nar_size / 2**20:8.1f} MiB")
    return 0

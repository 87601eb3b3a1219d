"""`cog lock`: pin everything a build reads into cog.lock, or check that it is fresh."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from builders.run_step import parse_secrets
from builders.sandbox.jail import host_tool_argv
from cog.cli.build_cmd import pin_run_steps
from cog.cli.compat import add_secret_flag
from cog.cli.project import project_dir
from cog.project.errors import UsageError, warn
from cuda_channels.channel import load
from derivations import lock
from derivations.config import load_config
from store.local import Store


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("lock")
    p.add_argument("--check", action="store_true", help="exit 1 if cog.lock is missing or stale")
    p.add_argument("--upgrade", action="store_true", help="re-resolve every package")
    p.add_argument(
        "--upgrade-package",
        action="append",
        default=[],
        metavar="NAME",
        help="re-resolve this Python package (repeatable)",
    )
    p.add_argument("--arch", choices=["amd64", "arm64"], default="amd64")
    p.add_argument(
        "--channel",
        default=None,
        help="channel (default: the lock's, else the one that suits python_version)",
    )
    add_secret_flag(p)  # a build.run step that mounts a secret is run to be pinned
    p.set_defaults(func=cmd_lock)


def cmd_lock(args: argparse.Namespace, store: Store) -> int:
    project = project_dir()
    config = load_config(project)
    try:
        previous = lock.read(project)
    except lock.LockError as e:
        if args.check:
            raise
        # What the error's hint asks for: a lock this cog cannot read is written afresh.
        print(f"{e}: rewriting it", file=sys.stderr)
        previous = None
    channel = load(args.channel or lock.channel_name(config, previous))
    if args.check:
        if previous is None:
            raise UsageError("there is no cog.lock", hint="run `cog lock` to create it")
        changes = lock.drift(previous, config, project, channel, args.arch)
        if changes:
            raise UsageError("cog.lock is stale: " + "; ".join(changes), hint="run `cog lock`")
        print("cog.lock is up to date")
        return 0
    upgrade: list[str] | bool = True if args.upgrade else args.upgrade_package
    result = lock.create(
        config, project, channel, args.arch, previous, upgrade, warn=warn, sandbox=host_tool_argv
    )
    secrets = parse_secrets(args.secret, Path.cwd())
    result = pin_run_steps(
        store, project, config, result, channel, previous, secrets, upgrade=bool(args.upgrade)
    )
    changed = lock.write(project, result)
    system = len(result.system.base) + len(result.system.python) + len(result.system.packages)
    steps = result.run or ()
    fixed = sum(1 for s in steps if s.network)
    print(
        f"{'wrote' if changed else 'unchanged:'} cog.lock: {system} system packages, "
        f"{len(result.python_packages)} Python packages, "
        f"{len(result.runtime_packages)} for the runtime"
        + (f", {len(steps)} build.run steps ({fixed} fixed-output)" if steps else "")
    )
    return 0

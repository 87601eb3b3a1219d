"""`cog lock`: pin everything a build reads into cog.lock, or check that it is fresh."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from builders.build_secrets import parse_secrets
from cog.cli.compat import add_secret_flag
from cog.project.locate import project_dir
from cog.project.lock import check_lock, lock_project
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
    if args.check:
        check_lock(project, args.arch, args.channel)
        print("cog.lock is up to date")
        return 0
    upgrade: list[str] | bool = True if args.upgrade else args.upgrade_package
    secrets = parse_secrets(args.secret, Path.cwd())
    locked = lock_project(store, project, args.arch, args.channel, upgrade, secrets)
    result = locked.lock
    system = len(result.system.base) + len(result.system.python) + len(result.system.packages)
    steps = result.run or ()
    fixed = sum(1 for s in steps if s.network)
    print(
        f"{'wrote' if locked.changed else 'unchanged:'} cog.lock: {system} system packages, "
        f"{len(result.python_packages)} Python packages, "
        f"{len(result.runtime_packages)} for the runtime"
        + (f", {len(steps)} build.run steps ({fixed} fixed-output)" if steps else "")
    )
    return 0

"""`cog exec`: a command in the project's built environment, natively, as Cog runs it in Docker:
the model's environment on PATH, this directory at /src (writable) and the working directory,
stdin passed through (and the terminal, when there is one), the command's exit code returned."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cog.cli.build_flags import add_lock_mode_flags, build_options
from cog.cli.cog_flags import add_config_flag
from cog.cli.compat import add_compat_flags
from cog.cli.values import add_env_flag, parse_env
from cog.project.command import check_publish, run_in_project
from cog.project.locate import project_dir
from store.local import Store


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "exec",
        description="Builds the environment cog.yaml describes and runs COMMAND in it, "
        "natively under bubblewrap, with this directory mounted writable at /src.",
    )
    add_env_flag(p)
    p.add_argument(
        "-p",
        "--publish",
        action="append",
        default=[],
        metavar="[HOST:]PORT",
        help="a port the command listens on, published on this host as docker run -p does "
        "(on every address unless HOST is given)",
    )
    p.add_argument(
        "--gpus",
        help="GPUs to pass in, as `docker run --gpus` takes them: all, a count, or device=0,1",
    )
    add_compat_flags(p)
    add_config_flag(p)
    add_lock_mode_flags(p)
    p.add_argument("--arch", default="amd64", help=argparse.SUPPRESS)
    p.add_argument("-j", "--jobs", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND [ARG...]")
    p.set_defaults(func=cmd_exec)


def cmd_exec(args: argparse.Namespace, store: Store) -> int:
    env = parse_env(args.env)
    publish = [check_publish(value) for value in args.publish]
    return run_in_project(
        store,
        project_dir(),
        build_options(args),
        args.command,
        env,
        args.gpus,
        publish,
        interactive=sys.stdin.isatty(),
    )

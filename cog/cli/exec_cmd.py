"""`cog exec`: a command in the project's built environment, natively, as Cog runs it in Docker:
the model's environment on PATH, this directory at /src (writable) and the working directory,
stdin passed through (and the terminal, when there is one), the command's exit code returned."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from cog.cli.compat import add_compat_flags
from cog.cli.predict_cmd import model_env
from cog.cli.project import project_dir
from cog.project.errors import UsageError
from store.local import Store


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "exec",
        description="Builds the environment cog.yaml describes and runs COMMAND in it, "
        "natively under bubblewrap, with this directory mounted writable at /src.",
    )
    p.add_argument("-e", "--env", action="append", default=[], metavar="NAME=VALUE")
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
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--locked", action="store_true", help="refuse a missing or stale cog.lock")
    mode.add_argument("--frozen", action="store_true", help="use cog.lock as it is")
    p.add_argument("--arch", default="amd64", help=argparse.SUPPRESS)
    p.add_argument("-j", "--jobs", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND [ARG...]")
    p.set_defaults(func=cmd_exec)


def check_publish(value: str) -> tuple[str, int]:
    """Cog's `-p [HOST:]PORT`, checked: the host address (every one, unless given) and port."""
    host, _, port = value.rpartition(":")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UsageError(
            f"invalid port {value!r}: port must be between 1 and 65535", hint="e.g. -p 8888"
        )
    return host or "0.0.0.0", int(port)


def cmd_exec(args: argparse.Namespace, store: Store) -> int:
    from builders.image import layers_env
    from builders.sandbox.model import project_jail
    from cog.cli.build_cmd import build
    from cog.cli.predict_cmd import host_gpu

    if not args.command:
        raise UsageError("cog exec needs a command to run", hint="e.g. cog exec python")
    gpu = host_gpu(args.gpus)  # before anything is built
    env = model_env(args.env)
    publish = [check_publish(value) for value in args.publish]
    project = project_dir()
    if not (project / "cog.yaml").is_file():
        raise UsageError("there is no cog.yaml here", hint="run cog exec in your project")
    config, _, built = build(store, project, args)
    command = " ".join(shlex.quote(a) for a in args.command)
    print(f"Running {command} with the current directory at /src...", file=sys.stderr)
    sys.stderr.flush()
    with store.temp_dir("exec-") as scratch:
        jail = project_jail(
            store,
            built,
            scratch / "root",
            layers_env(store, config, built, args.arch) | config.env | env,
            src=project,
            interactive=sys.stdin.isatty(),
            gpu=gpu,
            publish=publish,
        )
        launch = jail.launch(args.command)
        try:
            return launch.start().wait()
        finally:
            launch.stop()

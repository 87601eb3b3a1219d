"""`cog exec`'s service: a command in the project's built environment, natively, as Cog runs it
in Docker (the model's environment on PATH, the project writable at /src and the working
directory, stdin passed through, and the terminal when `interactive`)."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from cog.project.errors import UsageError
from cog.project.options import BuildOptions
from store.local import Store


def check_publish(value: str) -> tuple[str, int]:
    """Cog's `-p [HOST:]PORT`, checked: the host address (every one, unless given) and port."""
    host, _, port = value.rpartition(":")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UsageError(
            f"invalid port {value!r}: port must be between 1 and 65535", hint="e.g. -p 8888"
        )
    return host or "0.0.0.0", int(port)


def run_in_project(
    store: Store,
    project: Path,
    options: BuildOptions,
    command: Sequence[str],
    env: Mapping[str, str],
    gpus: str | None,
    publish: Sequence[tuple[str, int]],
    interactive: bool,
) -> int:
    """Builds the project's environment, then runs `command` in it; its exit code."""
    from builders.image import layers_env
    from builders.sandbox.model import project_jail
    from cog.project.build import build
    from cog.project.serve import host_gpu

    if not command:
        raise UsageError("cog exec needs a command to run", hint="e.g. cog exec python")
    gpu = host_gpu(gpus)  # before anything is built
    if not (project / "cog.yaml").is_file():
        raise UsageError("there is no cog.yaml here", hint="run cog exec in your project")
    plan = build(store, project, options)
    shown = " ".join(shlex.quote(a) for a in command)
    print(f"Running {shown} with the current directory at /src...", file=sys.stderr)
    sys.stderr.flush()
    with store.temp_dir("exec-") as scratch:
        environment = layers_env(store, plan.config, plan.layers, options.arch)
        jail = project_jail(
            store,
            plan.layers,
            scratch / "root",
            environment | plan.config.env | dict(env),
            src=project,
            interactive=interactive,
            gpu=gpu,
            publish=list(publish),
        )
        launch = jail.launch(list(command))
        try:
            return launch.start().wait()
        finally:
            launch.stop()

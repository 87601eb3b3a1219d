"""`cog debug`: what a build is made of, as plain text.

- `cog debug` prints the Dockerfile that makes this project's environment with Docker, as
  Cog's (hidden) command of that name does. cog-hermetic never runs it: each of its steps is a
  pinned store path here. It follows cog-hermetic's build, not Cog's generator: CUDA comes as
  NVIDIA's wheels on a Python base image, never from an `nvidia/cuda` base image.
- `cog debug derivation PATH…` prints derivations as the plain data they are (the `.drv` file
  of PATH, or of the derivation that built PATH), to read, diff or hash.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from cog import __version__ as sdk_version
from cog.cli.cog_flags import add_config_flag, add_timestamp_flag
from cog.cli.compat import add_compat_flags
from cog.project.errors import UsageError
from cog.project.locate import project_dir
from store.local import Store
from store.paths import StorePath

HEADER = """\
#syntax=docker/dockerfile:1.4
# The environment `cog build` makes for this project, as a Dockerfile for Docker users.
# cog-hermetic does not run it: each step is a pinned store path (`cog debug derivation`)."""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("debug")
    add_compat_flags(p)
    add_config_flag(p)
    add_timestamp_flag(p)
    p.add_argument("--image-name", help="accepted as Cog does; the Dockerfile names no image")
    what = p.add_subparsers(dest="debug_cmd", metavar="COMMAND")
    d = what.add_parser("derivation", help="print derivations as plain data (JSON)")
    d.add_argument("paths", nargs="+", metavar="PATH", help="a .drv path, or a path one built")
    p.set_defaults(func=cmd_debug)


def cmd_debug(args: argparse.Namespace, store: Store) -> int:
    if args.debug_cmd == "derivation":
        return _derivations(args.paths, store)
    sys.stdout.write(dockerfile(project_dir()))
    return 0


def _derivations(paths: list[str], store: Store) -> int:
    from derivations.hashing import drv_document
    from derivations.store_io import read_drv

    for text in paths:
        path = store.parse(text if text.startswith("/") else str(Path(text).absolute()))
        if not path.name.endswith(".drv"):
            deriver = store.info(path).deriver
            if deriver is None:
                raise UsageError(
                    f"{path} was added, not built: no derivation made it",
                    hint="give a .drv path, or a path that a build made",
                )
            path = StorePath.parse(deriver)
        if not store.is_valid(path):
            raise UsageError(
                f"the derivation {path} is not in this store",
                hint="build the project again to write it",
            )
        document = drv_document(read_drv(store, path))
        print(json.dumps({"path": str(path), **document}, indent=2, sort_keys=True))
    return 0


def dockerfile(project: Path) -> str:
    """The Dockerfile for the project's cog.yaml (pins from cog.lock where it has them)."""
    from derivations.config import load_config, requirement_lines
    from derivations.lock import read

    config = load_config(project)
    build = config.build
    lock = read(project)
    lines = [HEADER, f"FROM python:{build.python_version}-slim"]
    lines += ["ENV DEBIAN_FRONTEND=noninteractive", "ENV PYTHONUNBUFFERED=1"]
    if build.gpu:
        lines += [
            "ENV LD_LIBRARY_PATH=/usr/local/nvidia/lib64",
            "ENV NVIDIA_DRIVER_CAPABILITIES=all",
            "ENV NVIDIA_VISIBLE_DEVICES=all",
        ]
    if build.system_packages:
        packages = " ".join(sorted(build.system_packages))
        lines.append(f"RUN apt-get update -qq && apt-get install -qqy {packages}")
    if lock is not None:  # exactly what the lock pins (CUDA's wheels among them)
        pins = [f"{w.name}=={w.version}" for w in lock.python_packages]
        packages = " ".join(shlex.quote(p) for p in pins)
        lines.append(f"RUN pip install --no-cache-dir --no-deps {packages}")
    else:
        requirements = requirement_lines(config, project)
        if build.python_requirements:
            lines.append(f"COPY {build.python_requirements} /tmp/requirements.txt")
            lines.append("RUN pip install --no-cache-dir -r /tmp/requirements.txt")
        elif requirements:
            packages = " ".join(shlex.quote(r) for r in requirements)
            lines.append(f"RUN pip install --no-cache-dir {packages}")
    lines.append(f"RUN pip install --no-cache-dir cog=={sdk_version}")
    for step in build.steps:
        mounts = "".join(f"--mount=type={m.type},id={m.id},target={m.target} " for m in step.mounts)
        command = step.command.strip()
        if "\n" in command:  # a script: a heredoc keeps its lines as the shell reads them
            command = f"<<'EOF'\n{command}\nEOF"
        lines.append(f"RUN {mounts}{command}")
    lines += [
        "WORKDIR /src",
        "EXPOSE 5000",
        'CMD ["python", "-m", "cog.server.http"]',
        "COPY . /src",
    ]
    return "\n".join(lines) + "\n"

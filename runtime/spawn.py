"""Starting the worker (the predictor's process) and holding this side of its pipes.

Standard library only: `runtime.boot` starts the worker before the server stack is imported,
and the server (`runtime.main`, `runtime.worker`) takes over what it started.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class WorkerSpec:
    ref: str  # predict.py:Predictor
    cwd: Path
    python: str = sys.executable
    train: bool = False
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Spawned:
    """A started worker: its process and this side's ends of its three pipes."""

    process: subprocess.Popen[bytes]
    work_fd: int  # predictions and shutdown: read by the worker's main thread
    control_fd: int  # cancel and healthcheck: read while a prediction runs
    receive_fd: int
    ref: str = ""  # predict.py:Predictor, for what the server says about it


def spawn_worker(spec: WorkerSpec) -> Spawned:
    """Starts `python -m cog.server.worker REF` with its pipes (fds in COG_IPC_FDS)."""
    work_r, work_w = os.pipe()
    control_r, control_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    theirs = (work_r, control_r, from_child_w)
    env = {**os.environ, **spec.env, "COG_IPC_FDS": ",".join(map(str, theirs))}
    argv = [spec.python, "-m", "cog.server.worker", spec.ref]
    if spec.train:
        argv.append("--train")
    try:
        process = subprocess.Popen(
            argv,
            cwd=spec.cwd,
            env=env,
            pass_fds=theirs,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError:
        for fd in (work_w, control_w, from_child_r):
            os.close(fd)
        raise
    finally:
        for fd in theirs:
            os.close(fd)
    return Spawned(process, work_w, control_w, from_child_r, spec.ref)

"""The server's side of the worker: start it, talk to it, and notice when it dies.

The worker runs the predictor in its own process (the model environment's interpreter);
this module is its only contact. Messages are JSON lines over two pipes that the worker
moves to fds of its own. One reader task dispatches every message to the prediction it
names; when the pipe closes, every prediction still running fails with the reason the
worker died, and the server stays up.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

Handler = Callable[[dict[str, Any]], None]


@dataclass
class WorkerSpec:
    ref: str  # predict.py:Predictor
    cwd: Path
    python: str = sys.executable
    train: bool = False
    env: dict[str, str] = field(default_factory=dict)


class WorkerDied(Exception):
    pass


def describe_exit(code: int | None) -> str:
    if code is None:
        return "the worker is gone"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"the worker was killed by {name}{hint}"
    return f"the worker exited with status {code}"


class WorkerProcess:
    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.process: trio.Process | None = None
        self._send: trio.lowlevel.FdStream | None = None
        self._receive: trio.lowlevel.FdStream | None = None
        self._send_lock = trio.Lock()
        self.handlers: dict[str, Handler] = {}  # prediction id -> its message handler
        self.on_message: Handler = lambda m: None  # messages that name no prediction
        self.exit_reason: str | None = None
        self.exited = trio.Event()

    async def start(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        env = {**os.environ, **self.spec.env, "COG_IPC_FDS": f"{to_child_r},{from_child_w}"}
        argv = [self.spec.python, "-m", "cog.server.worker", self.spec.ref]
        if self.spec.train:
            argv.append("--train")
        try:
            self.process = await trio.lowlevel.open_process(
                argv,
                cwd=self.spec.cwd,
                env=env,
                pass_fds=(to_child_r, from_child_w),
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self._send = trio.lowlevel.FdStream(to_child_w)
        self._receive = trio.lowlevel.FdStream(from_child_r)

    async def send(self, message: dict[str, Any]) -> None:
        if self._send is None or self.exited.is_set():
            raise WorkerDied(self.exit_reason or "the worker is not running")
        data = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        async with self._send_lock:
            try:
                await self._send.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                raise WorkerDied(self.exit_reason or "the worker is not running") from None

    async def run(self) -> None:
        """Reads messages until the worker's pipe closes, then records why it died."""
        assert self._receive is not None and self.process is not None
        partial: list[bytes] = []  # a message longer than one read, in pieces
        try:
            while True:
                chunk = await self._receive.receive_some(1 << 20)
                if not chunk:
                    break
                end = chunk.rfind(b"\n")
                if end == -1:  # joined once its end arrives: linear in the message's size
                    partial.append(chunk)
                    continue
                if partial:
                    partial.append(chunk[: end + 1])
                    whole, partial = b"".join(partial), []
                else:
                    whole = chunk[: end + 1]
                if end + 1 < len(chunk):
                    partial.append(chunk[end + 1 :])
                for line in whole.split(b"\n"):
                    if line:
                        self._dispatch(json.loads(line))
        finally:
            with trio.move_on_after(5) as scope:
                scope.shield = True
                code = await self.process.wait()
            self.exit_reason = describe_exit(code if not scope.cancelled_caught else None)
            self.exited.set()
            for handler in list(self.handlers.values()):
                handler({"type": "worker_died", "error": self.exit_reason})

    def _dispatch(self, message: dict[str, Any]) -> None:
        handler = self.handlers.get(message.get("id") or "")
        if handler is not None and message.get("type") != "healthcheck":
            handler(message)
        else:
            self.on_message(message)

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)

    async def stop(self) -> None:
        """Asks the worker to finish, and kills it if it does not within a few seconds."""
        if self.process is None or self.exited.is_set():
            return
        with contextlib.suppress(WorkerDied):
            await self.send({"type": "shutdown"})
        with trio.move_on_after(5):
            await self.exited.wait()
        self.kill()

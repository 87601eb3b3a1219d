"""The server's side of the worker: talk to it, and notice when it dies.

The worker runs the predictor in its own process (the model environment's interpreter),
started by `runtime.boot` before the server stack is imported; this module is its only
contact. Messages (`runtime.pipe`, shared with the worker) are JSON lines over three pipes (work
and control to the worker, one back) that the worker moves to fds of its own. One reader task
dispatches every message to the prediction it names; when the pipe closes, every prediction
still running fails with the reason the worker died, and the server stays up.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable

import trio

from runtime.pipe import (
    FROM_WORKER,
    WORK_PIPE,
    FromWorker,
    Lines,
    ToPrediction,
    ToWorker,
    WorkerDiedMessage,
    frame,
)
from runtime.spawn import Spawned


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
    def __init__(self, spawned: Spawned | OSError) -> None:
        self.spawned = spawned
        self.process: subprocess.Popen[bytes] | None = None
        self._work: trio.lowlevel.FdStream | None = None
        self._control: trio.lowlevel.FdStream | None = None
        self._receive: trio.lowlevel.FdStream | None = None
        self._work_lock, self._control_lock = trio.Lock(), trio.Lock()
        # prediction id -> its message handler
        self.handlers: dict[str, Callable[[ToPrediction], None]] = {}
        self.on_message: Callable[[FromWorker], None] = lambda m: None  # those of no prediction
        self.exit_reason: str | None = None
        self.exited = trio.Event()

    def start(self) -> None:
        """Takes over the started worker's pipes (raises the OSError that stopped its start)."""
        if isinstance(self.spawned, OSError):
            raise self.spawned
        self.process = self.spawned.process
        self._work = trio.lowlevel.FdStream(self.spawned.work_fd)
        self._control = trio.lowlevel.FdStream(self.spawned.control_fd)
        self._receive = trio.lowlevel.FdStream(self.spawned.receive_fd)

    async def send(self, message: ToWorker) -> None:
        """Predictions and shutdown go down the work pipe, in order; cancel and healthcheck down
        the control pipe, which the worker reads while a prediction runs."""
        if message["type"] in WORK_PIPE:
            stream, lock = self._work, self._work_lock
        else:
            stream, lock = self._control, self._control_lock
        if stream is None or self.exited.is_set():
            raise WorkerDied(self.exit_reason or "the worker is not running")
        data = frame(message)
        async with lock:
            try:
                await stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                raise WorkerDied(self.exit_reason or "the worker is not running") from None

    async def run(self) -> None:
        """Reads messages until the worker's pipe closes, then records why it died."""
        assert self._receive is not None and self.process is not None
        lines = Lines(FROM_WORKER)
        try:
            while chunk := await self._receive.receive_some(1 << 20):
                for message in lines.feed(chunk):
                    self._dispatch(message)
        finally:
            process = self.process
            with trio.move_on_after(5) as scope:
                scope.shield = True
                code = await trio.to_thread.run_sync(process.wait, abandon_on_cancel=True)
            self.exit_reason = describe_exit(code if not scope.cancelled_caught else None)
            self.exited.set()
            died: WorkerDiedMessage = {"type": "worker_died", "error": self.exit_reason}
            for handler in list(self.handlers.values()):
                handler(died)

    def _dispatch(self, message: FromWorker) -> None:
        """To the prediction it names; the rest (setup's, healthchecks', ended predictions'
        logs) to `on_message`."""
        pid = message.get("id")
        handler = self.handlers.get(pid) if isinstance(pid, str) else None
        if handler is not None and message["type"] != "healthcheck":
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

"""The worker process: loads the predictor, runs setup and predictions, talks to the server.

Started by the server as `python -m cog.server.worker REF [--train]` with the model
environment's interpreter. The IPC channel is three pipes whose fds arrive in `COG_IPC_FDS`:
work (predictions, shutdown) and control (cancel, healthcheck) from the server, and one
back; they are moved to high fds at once, and fds 1 and 2 become pipes of the worker's own,
read by threads that forward whatever the predictor (or a subprocess it starts, or a C
library) writes as log lines. So nothing written to stdout can ever corrupt the channel.
Messages are JSON lines, in every direction, typed in `cog.server.pipe` (the same file as the
server's `runtime.pipe`).

A synchronous predictor runs predictions one at a time on the main thread, which reads the
work pipe itself (a hand-over from a reader thread cost 0.15 ms a prediction after an idle
moment); a thread reads the control pipe, and a cancel raises `CancelationException` on the main
thread through SIGUSR1. An async predictor runs each prediction as a task of one asyncio loop,
which reads both pipes, and is cancelled by cancelling its task.
"""

from __future__ import annotations

import asyncio
import codecs
import contextvars
import dataclasses
import datetime
import enum
import fcntl
import inspect
import io
import os
import pathlib
import select
import shutil
import signal
import struct
import sys
import tempfile
import termios
import threading
import traceback
from collections.abc import Callable
from typing import Any

from cog.predictor import CancelationException
from cog.scope import Scope, enter_scope, exit_scope
from cog.server import signature
from cog.server.pipe import (
    FILE,
    TO_WORKER,
    Done,
    FromWorker,
    HealthcheckRequest,
    HealthcheckResult,
    Lines,
    Predict,
    Stream,
    ToWorker,
    frame,
)
from cog.types import Path, Secret, URLFile

_FENCE = b"\x00cog-log-fence\x00"
HIGH_FD = 100

_prediction: contextvars.ContextVar[str | None] = contextvars.ContextVar("cog_id", default=None)


class Channel:
    def __init__(self, work_fd: int, control_fd: int, wfd: int) -> None:
        self.work = os.fdopen(work_fd, "rb")
        self.control = os.fdopen(control_fd, "rb")
        self._wfd = wfd
        self._lock = threading.Lock()
        self.sending = False  # the main thread is inside send(): cancellation waits

    def send(self, message: FromWorker) -> None:
        data = frame(message)
        with self._lock:
            self.sending = True
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._wfd, view) :]
            finally:
                self.sending = False

    @staticmethod
    def receive(pipe: io.BufferedReader) -> ToWorker | None:
        """The next message on `pipe` (blocking), or None once the server has closed it."""
        while line := pipe.readline():
            message = TO_WORKER.parse(line)
            if message is not None:
                return message
        return None


def _high(fd: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, HIGH_FD)
    os.close(fd)
    return moved


def describe_error(error: BaseException) -> str:
    """An exception as coglet prints it (pyo3's PyErr): its type's qualified name, then what
    str() makes of it, even when that is nothing."""
    try:
        text = str(error)
    except Exception:
        text = "<exception str() failed>"
    return f"{type(error).__qualname__}: {text}"


class Failure(Exception):
    """A prediction's failure in coglet's words: `Prediction failed: STAGE: ERROR`, where the
    stage says what failed (the call, an iteration, the serialization of the output)."""

    def __init__(self, stage: str, cause: BaseException) -> None:
        super().__init__(stage)
        self.cause = cause
        self.message = f"Prediction failed: {stage}: {describe_error(cause)}"


# What ends a prediction as canceled rather than failed.
_CANCELED = (CancelationException, asyncio.CancelledError)


class Logs:
    """Routes everything written to stdout/stderr to the channel, tagged with its prediction."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.active: set[str] = set()

    def owner(self) -> str | None:
        """The prediction a write belongs to: this task's or thread's, else the only one."""
        mine = _prediction.get()
        if mine is not None:
            return mine
        return next(iter(self.active)) if len(self.active) == 1 else None

    def emit(self, stream: Stream, text: str, owner: str | None) -> None:
        if text:
            self.channel.send({"type": "log", "id": owner, "stream": stream, "data": text})

    def capture_fds(self) -> None:
        self.fenced: dict[int, threading.Event] = {}
        self.readers: dict[int, int] = {}  # captured fd -> its pipe's read end
        self.forwarding: set[int] = set()  # captured fds whose pump holds unsent bytes
        streams: tuple[tuple[int, Stream], ...] = ((1, "stdout"), (2, "stderr"))
        for fd, name in streams:
            read_end, write_end = os.pipe()
            os.dup2(write_end, fd)
            os.close(write_end)
            self.fenced[fd] = threading.Event()
            self.readers[fd] = read_end
            threading.Thread(target=self._pump, args=(read_end, fd, name), daemon=True).start()
        sys.stdout = _Writer(self, "stdout")
        sys.stderr = _Writer(self, "stderr")

    def fence(self, timeout: float = 2.0) -> None:
        """Waits until everything written to fds 1 and 2 so far has been forwarded, so a
        prediction's last lines (a subprocess's, a C library's) are in its logs when it ends."""
        waiting = []
        for fd, seen in self.fenced.items():
            pending = struct.unpack("i", fcntl.ioctl(self.readers[fd], termios.FIONREAD, b"\0" * 4))
            if pending[0] == 0 and fd not in self.forwarding:
                continue  # nothing written since the last read: no round trip needed
            seen.clear()
            os.write(fd, _FENCE)
            waiting.append(seen)
        for seen in waiting:
            seen.wait(timeout)

    def _pump(self, fd: int, target: int, name: Stream) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        pending = b""
        while True:
            select.select([fd], [], [])
            # Marked before the read: bytes are always either in the pipe or marked here,
            # so fence() can tell from outside whether anything is still on its way.
            self.forwarding.add(target)
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            pending += chunk
            while (at := pending.find(_FENCE)) != -1:
                self.emit(name, decoder.decode(pending[:at]), self.owner())
                pending = pending[at + len(_FENCE) :]
                self.fenced[target].set()
            keep = len(_FENCE) - 1  # a fence may be split across reads
            ready, pending = pending[:-keep], pending[-keep:]
            if _FENCE[:1] not in pending:
                ready, pending = ready + pending, b""
            self.emit(name, decoder.decode(ready), self.owner())
            if not pending:
                self.forwarding.discard(target)


class _Writer(io.TextIOBase):
    """sys.stdout/sys.stderr: Python-level writes, attributed by context (async-safe)."""

    def __init__(self, logs: Logs, name: Stream) -> None:
        self._logs = logs
        self._name = name

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._logs.emit(self._name, text, self._logs.owner())
        return len(text)

    def fileno(self) -> int:  # subprocess and faulthandler want a real descriptor
        return 1 if self._name == "stdout" else 2


def encode(value: Any, files: pathlib.Path) -> Any:
    """An output as JSON for the channel; files become {FILE: path}. As coglet: a pydantic
    model is what its `model_dump()` (v1: `dict()`) returns, a dataclass (`cog.BaseModel`) its
    fields, an enum its value, a datetime its ISO form; each encoded in turn."""
    if isinstance(value, enum.Enum):
        return encode(value.value, files)
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if not isinstance(value, type):
        dump = getattr(value, "model_dump", None)
        if callable(dump):
            return encode(dump(), files)
        legacy = getattr(value, "dict", None)
        if callable(legacy) and not isinstance(value, dict):
            return encode(legacy(), files)
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, pathlib.PurePath):
        return {FILE: str(pathlib.Path(value).resolve())}
    if isinstance(value, io.IOBase):
        name = pathlib.Path(getattr(value, "name", "") or "output").name
        target = pathlib.Path(tempfile.mkdtemp(dir=files)) / name
        with open(target, "wb") as f:
            shutil.copyfileobj(value, f)
        return {FILE: str(target)}
    if isinstance(value, Secret):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name), files) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): encode(v, files) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [encode(v, files) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return encode(value.tolist(), files)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")  # json's


def decode(value: Any, kind: dict[str, Any]) -> Any:
    """An input from the channel as the type the predictor declared."""
    if value is None:
        return None
    k = kind["kind"]
    if k == "list":
        return [decode(v, kind["items"]) for v in value]
    if k == "path":
        return Path(value[FILE] if isinstance(value, dict) else value)
    if k == "file":
        return open(value[FILE] if isinstance(value, dict) else value, "rb")
    if k == "secret":
        return Secret(value)
    if k == "url":
        return URLFile(value)
    return value


def _is_stream(result: Any) -> bool:
    return inspect.isgenerator(result) or (
        hasattr(result, "__next__") and not isinstance(result, (str, bytes, io.IOBase))
    )


class Worker:
    def __init__(self, channel: Channel, ref: str, method: str) -> None:
        self.channel = channel
        self.logs = Logs(channel)
        self.ref = ref
        self.method = method
        self.target: Any = None
        self.fn: Callable[..., Any] = lambda: None
        self.desc: dict[str, Any] = {}
        self.kinds: dict[str, dict[str, Any]] = {}
        self.sync_current: str | None = None
        self.cancel_pending = False
        self.cancel_early: set[str] = set()  # canceled before the main thread took them up
        self.files = pathlib.Path(tempfile.mkdtemp(prefix="cog-outputs-"))
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None

    # --- setup ---------------------------------------------------------------------------

    def setup(self) -> bool:
        try:
            self.target = signature.load(self.ref)
            self.fn = signature.entry_point(self.target, self.method)
            self.desc = signature.describe(self.target, self.fn)
            self.kinds = {i["name"]: i["type"] for i in self.desc["inputs"]}
        except signature.PredictorError as e:
            self._setup_failed(f"failed to load predictor: {e}")
            return False
        except BaseException as e:  # the model's module raised while importing
            traceback.print_exc()
            self._setup_failed(f"failed to load predictor: {describe_error(e)}")
            return False
        self.channel.send({"type": "signature", "signature": self.desc})
        setup = getattr(self.target, "setup", None)
        try:
            if callable(setup) and not inspect.isfunction(self.target):
                kwargs = {}
                if "weights" in inspect.signature(setup).parameters:
                    kwargs["weights"] = _weights()
                result = setup(**kwargs)
                if inspect.isawaitable(result):
                    self._loop().run_until_complete(result)
        except BaseException as e:
            traceback.print_exc()
            self._setup_failed(f"setup failed: {describe_error(e)}")
            return False
        self.channel.send({"type": "setup_done"})
        return True

    def _setup_failed(self, error: str) -> None:
        """Setup's end, in coglet's words (the server adds its own around them), once what it
        wrote (a traceback too) has reached the server as setup's output."""
        self.logs.fence()
        self.channel.send({"type": "setup_failed", "error": error})

    def _loop(self) -> asyncio.AbstractEventLoop:
        if self.loop is None:
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
        return self.loop

    # --- predictions ---------------------------------------------------------------------

    def _kwargs(self, message: Predict) -> dict[str, Any]:
        given = message.get("input") or {}
        return {k: decode(v, self.kinds[k]) for k, v in given.items() if k in self.kinds}

    def _drain(self, pid: str, result: Any) -> Any:
        """A plain result as it is; an iterator's items sent as they come (then _STREAMED)."""
        if not _is_stream(result):
            return result
        items = iter(result)
        while True:
            try:
                item = next(items)
            except StopIteration:
                return _STREAMED
            except _CANCELED:
                raise
            except BaseException as e:  # sys.exit and KeyboardInterrupt as well, as coglet
                raise Failure("Generator iteration error", e) from e
            self._chunk(pid, item)

    def _finish(self, pid: str, scope: Scope, error: BaseException | None, output: Any) -> None:
        if error is None:
            message: Done = {"type": "done", "id": pid, "metrics": scope.metrics}
            if output is not _STREAMED:
                try:
                    message["output"] = encode(output, self.files)
                except Exception as e:
                    error = Failure("Failed to serialize output", e)
            if error is None:
                self.channel.send(message)
                return
        if isinstance(error, _CANCELED):
            self.channel.send({"type": "canceled", "id": pid, "metrics": scope.metrics})
            return
        failure = error if isinstance(error, Failure) else Failure("Prediction failed", error)
        if not isinstance(failure.cause, SystemExit):
            # The traceback goes to the server's log, not the prediction's: as Cog does.
            text = "".join(traceback.format_exception(failure.cause))
            self.logs.emit("stderr", text, None)
        self.channel.send(
            {"type": "failed", "id": pid, "error": failure.message, "metrics": scope.metrics}
        )

    def _chunk(self, pid: str, item: Any) -> None:
        try:
            value = encode(item, self.files)
        except Exception as e:
            raise Failure("Failed to serialize output item", e) from e
        self.channel.send({"type": "output", "id": pid, "value": value})

    def _call(self, message: Predict, stage: str) -> Any:
        """The predictor called with the prediction's inputs; what it raises, worded for
        `stage` (cancellation aside)."""
        try:
            return self.fn(**self._kwargs(message))
        except _CANCELED:
            raise
        except BaseException as e:  # sys.exit and KeyboardInterrupt fail only this prediction
            raise Failure(stage, e) from e

    def _scope(self, pid: str, message: Predict) -> Scope:
        """The prediction's scope; each metric it records is sent on at once (for SSE)."""

        def sent(name: str, value: Any, mode: str) -> None:
            self.channel.send(
                {"type": "metric", "id": pid, "name": name, "value": value, "mode": mode}
            )

        return Scope(message.get("context"), sent)

    def predict_sync(self, message: Predict) -> None:
        pid = message["id"]
        scope = self._scope(pid, message)
        token = enter_scope(scope)
        self.sync_current = pid
        self.logs.active.add(pid)
        error: BaseException | None = None
        output: Any = None
        try:
            if pid in self.cancel_early:
                self.cancel_early.discard(pid)
                raise CancelationException()
            failed = "Training failed" if self.method == "train" else "Prediction failed"
            output = self._drain(pid, self._call(message, failed))
        except BaseException as e:  # cancellation, sys.exit and errors all end one prediction
            error = e
        finally:
            self.sync_current = None
            self.logs.fence()
            self.logs.active.discard(pid)
            exit_scope(token)
        self._finish(pid, scope, error, output)

    async def predict_async(self, message: Predict) -> None:
        pid = message["id"]
        scope = self._scope(pid, message)
        enter_scope(scope)  # this task's own context
        _prediction.set(pid)
        self.logs.active.add(pid)
        error: BaseException | None = None
        output: Any = None
        try:
            if pid in self.cancel_early:
                self.cancel_early.discard(pid)
                raise asyncio.CancelledError()
            called = "standalone function"
            if not inspect.isfunction(self.target):
                called = getattr(self.fn, "__name__", self.method)
            result = self._call(message, f"Failed to call {called}")
            failed = (
                "Async training failed" if self.method == "train" else "Async prediction failed"
            )
            if inspect.isasyncgen(result):
                output = await self._drain_async(pid, result, failed)
            elif inspect.isawaitable(result):
                try:
                    output = await result
                except _CANCELED:
                    raise
                except BaseException as e:  # sys.exit too: coglet's worker hangs on it
                    raise Failure(failed, e) from e
            else:
                output = self._drain(pid, result)
        except (Exception, asyncio.CancelledError, SystemExit, KeyboardInterrupt) as e:
            error = e
        finally:
            await asyncio.get_running_loop().run_in_executor(None, self.logs.fence)
            self.logs.active.discard(pid)
            self.tasks.pop(pid, None)
        self._finish(pid, scope, error, output)

    async def _drain_async(self, pid: str, result: Any, failed: str) -> Any:
        """An async generator's items, sent as they come; a failure is worded as coglet words
        any failure of an async prediction (`failed`)."""
        items = result.__aiter__()
        while True:
            try:
                item = await items.__anext__()
            except StopAsyncIteration:
                return _STREAMED
            except _CANCELED:
                raise
            except BaseException as e:
                raise Failure(failed, e) from e
            self._chunk(pid, item)

    # --- commands ------------------------------------------------------------------------

    def healthcheck(self, message: HealthcheckRequest) -> None:
        check = getattr(self.target, "healthcheck", None)
        reply: HealthcheckResult = {"type": "healthcheck", "id": message["id"], "ok": True}
        try:
            result = check() if callable(check) else True
            if inspect.isawaitable(result):
                result = asyncio.run(_awaited(result))
            if result is False:
                reply["ok"], reply["error"] = False, "healthcheck returned False"
        except Exception as e:
            reply["ok"], reply["error"] = False, f"{type(e).__name__}: {e}"
        self.channel.send(reply)

    def _cancel_early(self, pid: str) -> None:
        """A cancel that came before its prediction: the prediction is canceled as it starts."""
        if len(self.cancel_early) > 1000:  # late cancels of ended ones
            self.cancel_early.clear()
        self.cancel_early.add(pid)

    def on_signal(self, signum: int, frame: Any) -> None:
        if self.sync_current is None:
            return
        if self.channel.sending:  # never interrupt a message half written
            self.cancel_pending = True
            return
        raise CancelationException()

    def serve_sync(self) -> None:
        signal.signal(signal.SIGUSR1, self.on_signal)

        def control() -> None:
            while (message := self.channel.receive(self.channel.control)) is not None:
                if message["type"] == "cancel":
                    if message["id"] == self.sync_current:
                        os.kill(os.getpid(), signal.SIGUSR1)
                    else:  # on its way in the work pipe: canceled as it starts
                        self._cancel_early(message["id"])
                elif message["type"] == "healthcheck":
                    threading.Thread(target=self.healthcheck, args=(message,), daemon=True).start()

        threading.Thread(target=control, daemon=True).start()
        while (message := self.channel.receive(self.channel.work)) is not None:
            if message["type"] == "predict":
                self.predict_sync(message)
            elif message["type"] == "shutdown":
                break

    def serve_async(self) -> None:
        loop = self._loop()
        stopped = loop.create_future()

        def handle(message: ToWorker | None) -> None:
            """One message; None is the pipe's end, read as a shutdown."""
            if message is None or message["type"] == "shutdown":
                if not stopped.done():
                    stopped.set_result(None)
            elif message["type"] == "predict":
                self.tasks[message["id"]] = loop.create_task(self.predict_async(message))
            elif message["type"] == "cancel":
                task = self.tasks.get(message["id"])
                if task is not None:
                    task.cancel()
                else:  # its prediction is still on its way in the work pipe
                    self._cancel_early(message["id"])
            elif message["type"] == "healthcheck":
                threading.Thread(target=self.healthcheck, args=(message,), daemon=True).start()

        for pipe in (self.channel.work, self.channel.control):
            reader = _LineReader(pipe.fileno(), handle)
            loop.add_reader(pipe.fileno(), reader.ready)
        loop.run_until_complete(stopped)


class _LineReader:
    """Reads a pipe's messages as the event loop finds it readable; None at its end."""

    def __init__(self, fd: int, handle: Callable[[ToWorker | None], None]) -> None:
        self.fd = fd
        self.handle = handle
        self.lines = Lines(TO_WORKER)

    def ready(self) -> None:
        chunk = os.read(self.fd, 1 << 20)
        if not chunk:
            asyncio.get_event_loop().remove_reader(self.fd)
            self.handle(None)
            return
        for message in self.lines.feed(chunk):
            self.handle(message)


class _Streamed:
    pass


_STREAMED: Any = _Streamed()


async def _awaited(value: Any) -> Any:
    return await value


def _weights() -> Any:
    url = os.environ.get("COG_WEIGHTS")
    if url:
        return url
    local = pathlib.Path("weights")
    return Path(local) if local.exists() else None


def main() -> int:
    sys.setswitchinterval(float(os.environ.get("COG_SWITCH", "0.005")))
    ref = sys.argv[1]
    method = "train" if "--train" in sys.argv[2:] else "predict"
    work, control, out = (int(x) for x in os.environ.pop("COG_IPC_FDS").split(","))
    channel = Channel(_high(work), _high(control), _high(out))
    worker = Worker(channel, ref, method)
    worker.logs.capture_fds()
    if not worker.setup():
        return 1
    if worker.desc["is_async"]:
        worker.serve_async()
    else:
        worker.serve_sync()
    return 0


if __name__ == "__main__":
    sys.exit(main())

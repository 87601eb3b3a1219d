"""The runtime's core: one worker, its setup, the concurrency slots, and every prediction.

Each prediction is a task in the server's nursery, whether the request waits for it (sync)
or not (`Prefer: respond-async`). A sync request that goes away cancels its prediction; the
cancel endpoint, shutdown and the setup timeout are the other ways a prediction or the worker
is stopped. The HTTP layer (`runtime.app`) only translates requests into calls here.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import math
import os
import secrets
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from runtime.files import Client, InputError, UploadError, finish_outputs, prepare_inputs
from runtime.openapi import openapi
from runtime.pipe import FromWorker, HealthcheckResult, ToPrediction
from runtime.schema import Inputs
from runtime.spawn import Spawned
from runtime.webhooks import Webhook
from runtime.worker import WorkerDied, WorkerProcess

HEALTHCHECK_TIMEOUT_S = 5.0
LOG_LINE_WAIT_S = 0.05  # how long a line without its newline waits for the rest
TERMINAL = ("succeeded", "failed", "canceled")
CANCELED_KEPT_S = 30.0  # how long a repeated cancel of a canceled prediction is still a 200
CANCELED_KEPT = 1024  # and of how many at most
SETUP_LOG_INTERVAL_S = 30.0  # how often a setup that has not finished is reported


class Text:
    """Text appended piece by piece and read whole now and then: linear in its length however
    many pieces arrive (`str +=` copies the whole each time: 40,000 log lines took seconds)."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[str] = []

    def append(self, text: str) -> None:
        if text:
            self._parts.append(text)

    def __str__(self) -> str:
        if len(self._parts) > 1:
            self._parts[:] = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def __bool__(self) -> bool:
        return bool(self._parts)


def now_iso() -> str:
    """The time as coglet writes it (chrono's RFC 3339: 0, 3, 6 or 9 fractional digits)."""
    seconds, nanos = divmod(time.time_ns(), 1_000_000_000)
    when = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    if nanos == 0:
        fraction = ""
    elif nanos % 1_000_000 == 0:
        fraction = f".{nanos // 1_000_000:03d}"
    elif nanos % 1000 == 0:
        fraction = f".{nanos // 1000:06d}"
    else:
        fraction = f".{nanos:09d}"
    return f"{when:%Y-%m-%dT%H:%M:%S}{fraction}+00:00"


def seconds_since(start_ns: int) -> float:
    """Elapsed seconds as Rust's `Duration::as_secs_f64` computes them."""
    seconds, nanos = divmod(time.monotonic_ns() - start_ns, 1_000_000_000)
    return seconds + nanos / 1e9


def nest_metrics(flat: dict[str, Any]) -> dict[str, Any]:
    """User metrics as coglet reports them: `a.b` is `{"a": {"b": ...}}`; a None is no metric."""
    if not any("." in name for name in flat) and None not in flat.values():
        return dict(flat)
    out: dict[str, Any] = {}
    for name, value in flat.items():
        *parents, leaf = name.split(".")
        node = out
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return out


class Rejected(Exception):
    """A request the runtime refuses: HTTP status and Cog's body (JSON, or plain text)."""

    def __init__(self, status: int, body: dict[str, Any] | str) -> None:
        super().__init__(body)
        self.status = status
        self.body = body


def _history_capacity() -> int:
    """COG_STREAM_HISTORY_CAPACITY, as coglet reads it: a count of events, 1024 where it is
    unset or not a whole number."""
    value = os.environ.get("COG_STREAM_HISTORY_CAPACITY", "")
    return int(value) if value.isdigit() else 1024


STREAM_HISTORY_CAPACITY = _history_capacity()


@dataclass
class Prediction:
    """One prediction. Its JSON is coglet's: `snapshot()` (webhooks, SSE, a repeated PUT),
    `sync_response()` (the answer to a request that waited) and `accepted()` (a 202)."""

    id: str
    input: dict[str, Any]
    training: bool
    iterator: bool
    webhook: Webhook | None
    context: dict[str, str]
    status: str = "starting"
    output: Any = None
    logs: Text = field(default_factory=Text)
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)  # the user's, as recorded
    predict_time: float | None = None
    created_ns: int = field(default_factory=time.monotonic_ns)
    partial_logs: dict[str, str] = field(default_factory=dict)  # stream -> unfinished line
    partial_deadline: float = 0.0  # when what partial_logs holds is sent, line or not
    done: trio.Event = field(default_factory=trio.Event)
    subscribers: list[trio.MemorySendChannel[tuple[str, Any]]] = field(default_factory=list)
    # The latest events, replayed to an SSE client that joins late (coglet's stream history:
    # STREAM_HISTORY_CAPACITY of them, 0 for none), and how many fell out of it.
    history: collections.deque[tuple[str, Any]] = field(default_factory=collections.deque)
    history_dropped: int = 0

    def _metrics(self) -> dict[str, Any]:
        metrics = nest_metrics(self.metrics)
        if self.predict_time is not None:
            metrics["predict_time"] = self.predict_time
        return metrics

    def _body(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "logs": str(self.logs),
            "metrics": self._metrics(),
        }

    def snapshot(self) -> dict[str, Any]:
        body = self._body()
        if self.status == "succeeded" or (self.iterator and self.output):
            body["output"] = self.output  # as Cog: a failed iterator shows what it yielded
        if self.error is not None:
            body["error"] = self.error
        return body

    def sync_response(self) -> dict[str, Any]:
        body = self._body()
        if self.status == "succeeded":
            body["output"] = self.output  # as Cog: a failed prediction reports no output
        elif self.status == "failed":
            body["error"] = self.error or ""
        return body

    def accepted(self) -> dict[str, Any]:
        return {"id": self.id, "status": "starting"}

    def subscribe(self, channel: trio.MemorySendChannel[tuple[str, Any]]) -> None:
        """A new SSE client: the history first, then each event as it comes; where the
        history has dropped events, one error event instead, then the end (as coglet)."""
        if self.history_dropped:
            error = "SSE stream replay truncated; events were dropped"
            channel.send_nowait(("error", {"error": error, "skipped": self.history_dropped}))
            channel.close()
            return
        for item in self.history:
            channel.send_nowait(item)
        if self.done.is_set():  # the history ended with the completed event, if it kept any
            channel.close()
        else:
            self.subscribers.append(channel)

    def publish(self, event: str, data: Any) -> None:
        if STREAM_HISTORY_CAPACITY > 0:
            if len(self.history) == STREAM_HISTORY_CAPACITY:
                self.history.popleft()
                self.history_dropped += 1
            self.history.append((event, data))
        for channel in list(self.subscribers):
            try:
                channel.send_nowait((event, data))
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                self.subscribers.remove(channel)


@dataclass
class Setup:
    status: str = "starting"  # starting, succeeded, failed
    started_at: str = field(default_factory=now_iso)
    completed_at: str | None = None
    logs: Text = field(default_factory=Text)
    done: trio.Event = field(default_factory=trio.Event)


class Runtime:
    def __init__(
        self,
        spawned: Spawned | OSError,
        train: bool = False,
        upload_url: str | None = None,
        setup_timeout: float | None = None,
        max_concurrency: int | None = None,
        setup_log_interval: float | None = None,
    ) -> None:
        self.training = train
        self.setup_log_interval = setup_log_interval or SETUP_LOG_INTERVAL_S
        self.ref = spawned.ref if isinstance(spawned, Spawned) else ""
        self.started = time.monotonic()
        self.upload_url = upload_url
        self.setup_timeout = setup_timeout
        self.max_concurrency_override = max_concurrency
        self.worker = WorkerProcess(spawned)
        self.setup = Setup()
        self.signature: dict[str, Any] | None = None
        self.inputs: Inputs | None = None
        self.schema: dict[str, Any] | None = None
        self.slots = 1
        self.predictions: dict[str, Prediction] = {}
        # Canceled ones, for a while: a cancel repeated after the first took effect is still
        # answered 200, as coglet does while its worker winds the prediction down.
        self.canceled: collections.OrderedDict[str, float] = collections.OrderedDict()
        self.unhealthy: str | None = None
        self.nursery: trio.Nursery | None = None
        self.shutdown_requested = trio.Event()
        self.files = Path(tempfile.mkdtemp(prefix="cog-inputs-"))
        self.http = Client()
        self._healthchecks: dict[str, trio.MemorySendChannel[HealthcheckResult]] = {}

    # --- lifecycle -------------------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Starts the worker and supervises it; returns when the worker has stopped."""
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            self.worker.on_message = self._on_unowned
            try:
                self.worker.start()
            except OSError as e:
                self._setup_failed(f"cannot start the worker: {e}")
                task_status.started()
                return
            nursery.start_soon(self.worker.run)
            nursery.start_soon(self._watch_setup)
            task_status.started()
            await self.worker.exited.wait()
            if self.setup.status == "starting":
                self._setup_failed(f"setup failed: {self.worker.exit_reason}")
            nursery.cancel_scope.cancel()

    async def _watch_setup(self) -> None:
        timeout = math.inf if self.setup_timeout is None else self.setup_timeout
        with trio.move_on_after(timeout):
            await self._wait_for_setup()
            return
        self._setup_failed(f"setup timed out after {self.setup_timeout:g} seconds")
        self.worker.kill()

    async def _wait_for_setup(self) -> None:
        """Waits for setup to end, saying now and then what it waits for: a predictor stuck
        at import otherwise leaves the server silent."""
        while True:
            with trio.move_on_after(self.setup_log_interval):
                await self.setup.done.wait()
                return
            predictor = self.ref or "the predictor"
            # The signature comes once the module is imported, before setup() is called.
            doing = f"still importing {predictor}"
            if self.signature is not None:
                doing = f"setup() of {predictor} is still running"
            waited = time.monotonic() - self.started
            print(f"cog: {doing} ({waited:.0f} s so far)", file=sys.stderr, flush=True)

    async def shutdown(self) -> None:
        for prediction in list(self.predictions.values()):
            if not prediction.done.is_set():
                await self.cancel(prediction.id)
        with trio.move_on_after(5):
            for prediction in list(self.predictions.values()):
                await prediction.done.wait()
        await self.worker.stop()
        shutil.rmtree(self.files, ignore_errors=True)

    def _setup_failed(self, reason: str) -> None:
        if self.setup.status != "starting":
            return
        self.setup.status = "failed"
        self.setup.completed_at = now_iso()
        self.setup.logs.append(reason + "\n")
        self.setup.done.set()

    def _on_unowned(self, message: FromWorker) -> None:
        if message["type"] == "signature":
            self.signature = message["signature"]
            self.inputs = Inputs(message["signature"])
            self.schema = openapi(message["signature"], training=self.training)
            wanted = self.max_concurrency_override or message["signature"]["max_concurrency"]
            # A sync predictor runs one prediction at a time, whatever COG_MAX_CONCURRENCY says.
            self.slots = max(1, wanted) if message["signature"]["is_async"] else 1
        elif message["type"] == "setup_done":
            self.setup.status = "succeeded"
            self.setup.completed_at = now_iso()
            self.setup.done.set()
        elif message["type"] == "setup_failed":
            self._setup_failed(message.get("error", "setup failed"))
        elif message["type"] == "log":
            if self.setup.status == "starting":
                self.setup.logs.append(message["data"])
            else:
                sys.stderr.write(message["data"])
        elif message["type"] == "healthcheck":
            waiter = self._healthchecks.pop(str(message.get("id")), None)
            if waiter is not None:
                waiter.send_nowait(message)

    # --- health ----------------------------------------------------------------------------

    def busy(self) -> bool:
        return self.running() >= self.slots

    def running(self) -> int:
        return len(self.predictions)  # only unfinished predictions are kept

    def status(self) -> str:
        if self.setup.status == "failed":
            return "SETUP_FAILED"
        if self.worker.exited.is_set():
            return "DEFUNCT"
        if self.setup.status == "starting":
            return "STARTING"
        if self.unhealthy:
            return "UNHEALTHY"
        return "BUSY" if self.busy() else "READY"

    async def user_healthcheck(self) -> None:
        """Runs the predictor's healthcheck() (5 s limit) and records whether it passed."""
        if not (self.signature and self.signature.get("healthcheck")):
            return
        if self.status() not in ("READY", "BUSY", "UNHEALTHY"):
            return
        check_id = secrets.token_hex(4)
        send, receive = trio.open_memory_channel[HealthcheckResult](1)
        self._healthchecks[check_id] = send
        try:
            await self.worker.send({"type": "healthcheck", "id": check_id})
        except WorkerDied:
            return
        with trio.move_on_after(HEALTHCHECK_TIMEOUT_S):
            result = await receive.receive()
            if result.get("ok"):
                self.unhealthy = None
            else:  # worded as coglet words it
                error = str(result.get("error") or "returned False")
                if error == "healthcheck returned False":
                    error = "user-defined healthcheck returned False"
                self.unhealthy = f"Healthcheck failed: {error}"
            return
        self._healthchecks.pop(check_id, None)
        self.unhealthy = (
            "Healthcheck failed: user-defined healthcheck timed out after "
            f"{HEALTHCHECK_TIMEOUT_S:.1f} seconds"
        )

    # --- predictions -----------------------------------------------------------------------

    def _ready(self) -> None:
        if self.setup.status != "succeeded" or self.worker.exited.is_set():
            if self.worker.exited.is_set() and self.setup.status == "succeeded":
                raise Rejected(
                    503,
                    {
                        "error": f"the model's worker died: {self.worker.exit_reason}",
                        "status": "failed",
                    },
                )
            raise Rejected(
                503,
                {
                    "error": "Setup has not finished yet. Wait until it has finished, or GET "
                    "/health-check for status.",
                    "status": "failed",
                },
            )

    def submit(self, body: Any, prediction_id: str | None = None) -> tuple[Prediction, bool]:
        """Validates a request and starts its prediction in the nursery (or raises Rejected).
        Returns the prediction and whether it is new (else it was already running)."""
        self._ready()
        if not isinstance(body, dict):
            raise Rejected(
                422, {"detail": [{"loc": ["body"], "msg": "must be an object", "type": "type"}]}
            )
        if prediction_id is not None and body.get("id") not in (None, prediction_id):
            noun = "training" if self.training else "prediction"
            raise Rejected(
                422,
                {
                    "detail": [
                        {
                            "loc": ["body", "id"],
                            "msg": f"{noun} ID must match the ID supplied in the URL",
                            "type": "value_error",
                        }
                    ]
                },
            )
        pid = prediction_id or body.get("id") or f"pred_{secrets.token_hex(8)}"
        existing = self.predictions.get(pid)
        if existing is not None and not existing.done.is_set():
            return existing, False  # idempotent: the same id again is the same prediction
        assert self.inputs is not None and self.signature is not None
        raw = body.get("input") or {}
        values, errors = self.inputs.validate(raw)
        if errors:
            raise Rejected(422, {"detail": errors})
        if self.busy():
            raise Rejected(
                409, {"error": "At capacity - all prediction slots busy", "status": "failed"}
            )
        webhook = None
        if body.get("webhook"):
            webhook = Webhook(self.http, str(body["webhook"]), body.get("webhook_events_filter"))
        prediction = Prediction(
            id=pid,
            input={k: v for k, v in raw.items() if k in self.inputs.kinds},  # as Cog: known
            training=self.training,
            iterator=bool(self.signature["output"].get("iterator")),
            webhook=webhook,
            context={str(k): str(v) for k, v in (body.get("context") or {}).items()},
        )
        self.predictions[pid] = prediction
        assert self.nursery is not None and values is not None
        self.nursery.start_soon(self._execute, prediction, values)
        return prediction, True

    async def cancel(self, pid: str) -> bool:
        prediction = self.predictions.get(pid)
        if prediction is None:
            ended = self.canceled.get(pid)
            return ended is not None and time.monotonic() - ended < CANCELED_KEPT_S
        if not prediction.done.is_set():
            await self._stop(pid)
        return True

    async def _stop(self, pid: str) -> None:
        """Asks the worker to cancel `pid` (nothing to ask once the worker is gone)."""
        with contextlib.suppress(WorkerDied):
            await self.worker.send({"type": "cancel", "id": pid})

    async def _execute(self, prediction: Prediction, values: dict[str, Any]) -> None:
        send, receive = trio.open_memory_channel[ToPrediction](math.inf)
        self.worker.handlers[prediction.id] = send.send_nowait
        prediction.status = "processing"
        if prediction.iterator:
            prediction.output = []
        try:
            if prediction.webhook:
                await prediction.webhook.intermediate("start", prediction.snapshot, force=True)
            prediction.publish("start", {"id": prediction.id, "status": "processing"})
            try:
                assert self.inputs is not None  # set with the signature, before any prediction
                ready = await prepare_inputs(self.http, values, self.inputs.kinds, self.files)
                await self.worker.send(
                    {
                        "type": "predict",
                        "id": prediction.id,
                        "input": ready,
                        "context": prediction.context,
                    }
                )
            except (InputError, WorkerDied) as e:
                await self._end(prediction, "failed", error=str(e))
                return
            while True:
                message: ToPrediction | None = None
                if prediction.partial_logs:  # an unfinished line waits briefly for its end
                    with trio.move_on_at(prediction.partial_deadline):
                        message = await receive.receive()
                    if message is None:
                        await self._log_lines(prediction, flush=True)
                        continue
                else:
                    message = await receive.receive()
                if await self._handle(prediction, message):
                    return
                # What else has arrived is handled without a trip through the scheduler for
                # each message: 40,000 log lines are 80,000 messages.
                while True:
                    try:
                        message = receive.receive_nowait()
                    except trio.WouldBlock:
                        break
                    if await self._handle(prediction, message):
                        return
        except Exception as e:  # a bug, or a failure nobody foresaw: this prediction fails alone
            traceback.print_exc(file=sys.stderr)
            if not prediction.done.is_set():
                await self._stop(prediction.id)
                await self._end(prediction, "failed", error=f"{type(e).__name__}: {e}")
        finally:
            self.worker.handlers.pop(prediction.id, None)
            if self.predictions.get(prediction.id) is prediction:
                del self.predictions[prediction.id]  # finished ones are not kept: no leak
            if not prediction.done.is_set():  # cancelled from outside (shutdown)
                prediction.logs.append("".join(prediction.partial_logs.values()))
                prediction.status = "canceled"
                prediction.predict_time = seconds_since(prediction.created_ns)
                prediction.done.set()

    async def _log_lines(
        self, prediction: Prediction, flush: bool = False, notify: bool = True
    ) -> None:
        """Logs as coglet reports them: whole lines, one event per write that ends a line;
        what has no newline yet is held until its line ends, or a moment, or the end."""
        sent = False
        for stream, text in list(prediction.partial_logs.items()):
            cut = len(text) if flush else text.rfind("\n") + 1
            if cut == 0:
                continue
            lines, rest = text[:cut], text[cut:]
            if rest:
                prediction.partial_logs[stream] = rest
                prediction.partial_deadline = trio.current_time() + LOG_LINE_WAIT_S
            else:
                del prediction.partial_logs[stream]
            prediction.logs.append(lines)
            prediction.publish("log", {"data": lines, "source": stream})
            sent = True
        if sent and notify and prediction.webhook:
            await prediction.webhook.intermediate("logs", prediction.snapshot)

    async def _handle(self, prediction: Prediction, message: ToPrediction) -> bool:
        """Applies one message to its prediction; True once the prediction has ended."""
        if message["type"] == "log":
            stream = "stderr" if message.get("stream") == "stderr" else "stdout"
            if not prediction.partial_logs:
                prediction.partial_deadline = trio.current_time() + LOG_LINE_WAIT_S
            prediction.partial_logs[stream] = prediction.partial_logs.get(stream, "") + str(
                message["data"]
            )
            await self._log_lines(prediction)
        elif message["type"] == "output":
            try:
                value = await finish_outputs(self.http, message["value"], self.upload_url)
            except UploadError as e:  # the prediction fails; the predictor is stopped
                await self._stop(prediction.id)
                await self._end(prediction, "failed", error=str(e))
                return True
            prediction.output.append(value)
            prediction.publish("output", {"chunk": value, "index": len(prediction.output) - 1})
            if prediction.webhook:
                await prediction.webhook.intermediate("output", prediction.snapshot)
        elif message["type"] == "metric":  # all of them arrive again with the end: this is for SSE
            metric = {"name": message["name"], "value": message["value"], "mode": message["mode"]}
            prediction.publish("metric", metric)
        elif message["type"] == "done":
            prediction.metrics.update(message.get("metrics") or {})
            if "output" in message:
                try:
                    prediction.output = await finish_outputs(
                        self.http, message["output"], self.upload_url
                    )
                except UploadError as e:
                    await self._end(prediction, "failed", error=str(e))
                    return True
            await self._end(prediction, "succeeded")
            return True
        elif message["type"] == "failed":
            prediction.metrics.update(message.get("metrics") or {})
            await self._end(prediction, "failed", error=message.get("error"))
            return True
        elif message["type"] == "canceled":
            prediction.metrics.update(message.get("metrics") or {})
            await self._end(prediction, "canceled")
            return True
        elif message["type"] == "worker_died":
            await self._end(prediction, "failed", error=message["error"])
            return True
        return False

    async def _end(self, prediction: Prediction, status: str, error: str | None = None) -> None:
        if self.predictions.get(prediction.id) is prediction:
            del self.predictions[prediction.id]  # its slot is free from now on
        if status == "canceled":
            self.canceled[prediction.id] = time.monotonic()
            while len(self.canceled) > CANCELED_KEPT:
                self.canceled.popitem(last=False)
        await self._log_lines(prediction, flush=True, notify=False)  # the terminal event has them
        prediction.status = status
        prediction.error = error
        prediction.predict_time = seconds_since(prediction.created_ns)
        prediction.done.set()
        prediction.publish("completed", prediction.snapshot())
        for channel in prediction.subscribers:
            channel.close()
        if prediction.webhook:
            with trio.CancelScope(shield=True):
                await prediction.webhook.terminal(prediction.snapshot())


def env_float(name: str) -> float | None:
    value = os.environ.get(name)
    try:
        return float(value) if value else None
    except ValueError:
        return None

"""The runtime's core: one worker, its setup, the concurrency slots, and every prediction.

Each prediction is a task in the server's nursery, whether the request waits for it (sync)
or not (`Prefer: respond-async`). A sync request that goes away cancels its prediction; the
cancel endpoint, shutdown and the setup timeout are the other ways a prediction or the worker
is stopped. The HTTP layer (`runtime.app`) only translates requests into calls here.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import os
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

from runtime.files import InputError, finish_outputs, prepare_inputs
from runtime.schema import Inputs, openapi
from runtime.webhooks import Webhook
from runtime.worker import WorkerDied, WorkerProcess, WorkerSpec

HEALTHCHECK_TIMEOUT_S = 5.0
TERMINAL = ("succeeded", "failed", "canceled")


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


class Rejected(Exception):
    """A request the runtime refuses: HTTP status and Cog's JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body)
        self.status = status
        self.body = body


@dataclass
class Prediction:
    id: str
    input: dict[str, Any]
    training: bool
    iterator: bool
    webhook: Webhook | None
    context: dict[str, str]
    status: str = "starting"
    output: Any = None
    logs: str = ""
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=now_iso)
    started_at: str | None = None
    completed_at: str | None = None
    done: trio.Event = field(default_factory=trio.Event)
    subscribers: list[trio.MemorySendChannel[tuple[str, Any]]] = field(default_factory=list)

    def response(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "input": self.input,
            "status": self.status,
            "logs": self.logs,
            "metrics": self.metrics,
            "created_at": self.created_at,
        }
        if self.status == "succeeded" or (self.status == "processing" and self.output):
            body["output"] = self.output  # as Cog: a failed prediction reports no output
        if self.error is not None:
            body["error"] = self.error
        if self.started_at:
            body["started_at"] = self.started_at
        if self.completed_at:
            body["completed_at"] = self.completed_at
        return body

    def publish(self, event: str, data: Any) -> None:
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
    logs: str = ""
    done: trio.Event = field(default_factory=trio.Event)


class Runtime:
    def __init__(
        self,
        spec: WorkerSpec,
        upload_url: str | None = None,
        setup_timeout: float | None = None,
        max_concurrency: int | None = None,
    ) -> None:
        self.spec = spec
        self.training = spec.train
        self.upload_url = upload_url
        self.setup_timeout = setup_timeout
        self.max_concurrency_override = max_concurrency
        self.worker = WorkerProcess(spec)
        self.setup = Setup()
        self.signature: dict[str, Any] | None = None
        self.inputs: Inputs | None = None
        self.schema: dict[str, Any] | None = None
        self.slots = 1
        self.predictions: dict[str, Prediction] = {}
        self.unhealthy: str | None = None
        self.nursery: trio.Nursery | None = None
        self.shutdown_requested = trio.Event()
        self.files = Path(tempfile.mkdtemp(prefix="cog-inputs-"))
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(60.0), follow_redirects=True)
        self._healthchecks: dict[str, trio.MemorySendChannel[dict[str, Any]]] = {}

    # --- lifecycle -------------------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Starts the worker and supervises it; returns when the worker has stopped."""
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            self.worker.on_message = self._on_unowned
            try:
                await self.worker.start()
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
        if self.setup_timeout is None:
            await self.setup.done.wait()
            return
        with trio.move_on_after(self.setup_timeout):
            await self.setup.done.wait()
            return
        self._setup_failed(f"setup timed out after {self.setup_timeout:g} seconds")
        self.worker.kill()

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
        self.setup.logs += reason + "\n"
        self.setup.done.set()

    def _on_unowned(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "signature":
            self.signature = message["signature"]
            self.inputs = Inputs(message["signature"])
            self.schema = openapi(message["signature"], training=self.training)
            wanted = self.max_concurrency_override or message["signature"]["max_concurrency"]
            # A sync predictor runs one prediction at a time, whatever COG_MAX_CONCURRENCY says.
            self.slots = max(1, wanted) if message["signature"]["is_async"] else 1
        elif kind == "setup_done":
            self.setup.status = "succeeded"
            self.setup.completed_at = now_iso()
            self.setup.done.set()
        elif kind == "setup_failed":
            self._setup_failed(message.get("error", "setup failed"))
        elif kind == "log":
            if self.setup.status == "starting":
                self.setup.logs += message["data"]
            else:
                sys.stderr.write(message["data"])
        elif kind == "healthcheck":
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
        send, receive = trio.open_memory_channel[dict[str, Any]](1)
        self._healthchecks[check_id] = send
        try:
            await self.worker.send({"type": "healthcheck", "id": check_id})
        except WorkerDied:
            return
        with trio.move_on_after(HEALTHCHECK_TIMEOUT_S):
            result = await receive.receive()
            self.unhealthy = None if result.get("ok") else result.get("error", "unhealthy")
            return
        self._healthchecks.pop(check_id, None)
        self.unhealthy = f"healthcheck timed out after {HEALTHCHECK_TIMEOUT_S:g} seconds"

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

    def submit(self, body: Any, prediction_id: str | None = None) -> Prediction:
        """Validates a request and starts its prediction in the nursery (or raises Rejected)."""
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
            return existing  # idempotent: the same id again is the same prediction
        assert self.inputs is not None and self.signature is not None
        values, errors = self.inputs.validate(body.get("input") or {})
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
            input=body.get("input") or {},
            training=self.training,
            iterator=bool(self.signature["output"].get("iterator")),
            webhook=webhook,
            context={str(k): str(v) for k, v in (body.get("context") or {}).items()},
        )
        self.predictions[pid] = prediction
        assert self.nursery is not None and values is not None
        self.nursery.start_soon(self._execute, prediction, values)
        return prediction

    async def cancel(self, pid: str) -> bool:
        prediction = self.predictions.get(pid)
        if prediction is None or prediction.done.is_set():
            return prediction is not None
        with contextlib.suppress(WorkerDied):
            await self.worker.send({"type": "cancel", "id": pid})
        return True

    async def _execute(self, prediction: Prediction, values: dict[str, Any]) -> None:
        send, receive = trio.open_memory_channel[dict[str, Any]](math.inf)
        self.worker.handlers[prediction.id] = send.send_nowait
        started = time.monotonic()
        prediction.started_at = now_iso()
        prediction.status = "processing"
        if prediction.iterator:
            prediction.output = []
        try:
            if prediction.webhook:
                await prediction.webhook.intermediate("start", prediction.response(), force=True)
            prediction.publish("start", prediction.response())
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
                await self._end(prediction, "failed", started, error=str(e))
                return
            async for message in receive:
                if await self._handle(prediction, message, started):
                    return
        finally:
            self.worker.handlers.pop(prediction.id, None)
            if self.predictions.get(prediction.id) is prediction:
                del self.predictions[prediction.id]  # finished ones are not kept: no leak
            if not prediction.done.is_set():  # cancelled from outside (shutdown)
                prediction.status = "canceled"
                prediction.completed_at = now_iso()
                prediction.done.set()

    async def _handle(
        self, prediction: Prediction, message: dict[str, Any], started: float
    ) -> bool:
        kind = message["type"]
        if kind == "log":
            prediction.logs += message["data"]
            prediction.publish("log", message["data"])
            if prediction.webhook:
                await prediction.webhook.intermediate("logs", prediction.response())
        elif kind == "output":
            value = await finish_outputs(self.http, message["value"], self.upload_url)
            prediction.output.append(value)
            prediction.publish("output", value)
            if prediction.webhook:
                await prediction.webhook.intermediate("output", prediction.response())
        elif kind == "done":
            prediction.metrics.update(message.get("metrics") or {})
            if "output" in message:
                try:
                    prediction.output = await finish_outputs(
                        self.http, message["output"], self.upload_url
                    )
                except httpx.HTTPError as e:
                    await self._end(
                        prediction, "failed", started, error=f"uploading the output failed: {e}"
                    )
                    return True
            await self._end(prediction, "succeeded", started)
            return True
        elif kind in ("failed", "canceled", "worker_died"):
            prediction.metrics.update(message.get("metrics") or {})
            status = "canceled" if kind == "canceled" else "failed"
            await self._end(prediction, status, started, error=message.get("error"))
            return True
        return False

    async def _end(
        self, prediction: Prediction, status: str, started: float, error: str | None = None
    ) -> None:
        if self.predictions.get(prediction.id) is prediction:
            del self.predictions[prediction.id]  # its slot is free from now on
        prediction.status = status
        prediction.error = error
        prediction.metrics["predict_time"] = time.monotonic() - started
        prediction.completed_at = now_iso()
        prediction.done.set()
        prediction.publish("completed", prediction.response())
        for channel in prediction.subscribers:
            channel.close()
        if prediction.webhook:
            with trio.CancelScope(shield=True):
                await prediction.webhook.terminal(prediction.response())


def env_float(name: str) -> float | None:
    value = os.environ.get(name)
    try:
        return float(value) if value else None
    except ValueError:
        return None

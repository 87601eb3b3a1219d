"""The runtime's core: one worker, its setup, the concurrency slots, and every prediction.

Each prediction is a task in the server's nursery, whether the request waits for it (sync)
or not (`Prefer: respond-async`). A sync request that goes away cancels its prediction; the
cancel endpoint, shutdown and the setup timeout are the other ways a prediction or the worker
is stopped. The HTTP layer (`runtime.app`) only translates requests into calls here.

`Runtime` puts together the parts, each in a module of its own: the worker's start and setup
(`runtime.lifecycle`), the slots (`runtime.slots`), admission of a request
(`runtime.admission`), a prediction's run and its handlers of the worker's messages
(`runtime.execution`), its record (`runtime.record`), and the user's healthcheck
(`runtime.health`).
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

import trio

from runtime.admission import at_capacity, not_ready, requested_id, validated
from runtime.execution import Execution
from runtime.files import Client
from runtime.health import Healthchecks
from runtime.lifecycle import Declared, Lifecycle, Setup
from runtime.record import Prediction
from runtime.slots import Slots
from runtime.spawn import Spawned
from runtime.webhooks import Webhook


class Runtime:
    """The server's one worker and its predictions, as `runtime.app` asks for them."""

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
        self.slots = Slots()
        self.healthchecks = Healthchecks()
        self.lifecycle = Lifecycle(
            spawned,
            self.slots,
            self.healthchecks,
            training=train,
            setup_timeout=setup_timeout,
            setup_log_interval=setup_log_interval,
            max_concurrency=max_concurrency,
        )
        self.worker = self.lifecycle.worker
        self.http = Client()
        files = Path(tempfile.mkdtemp(prefix="cog-inputs-"))
        self.execution = Execution(self.worker, self.slots, self.http, upload_url, files)
        self.nursery: trio.Nursery | None = None
        self.shutdown_requested = trio.Event()

    @property
    def setup(self) -> Setup:
        return self.lifecycle.setup

    @property
    def signature(self) -> dict[str, Any] | None:
        declared = self.lifecycle.declared
        return declared.signature if declared is not None else None

    @property
    def schema(self) -> dict[str, Any] | None:
        declared = self.lifecycle.declared
        return declared.schema if declared is not None else None

    @property
    def unhealthy(self) -> str | None:
        return self.healthchecks.unhealthy

    # --- lifecycle -------------------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Starts the worker and supervises it; returns when the worker has stopped."""
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            await self.lifecycle.supervise(nursery, task_status)
            nursery.cancel_scope.cancel()

    async def shutdown(self) -> None:
        if self.setup.status == "starting":  # the worker reads no message until setup ends
            self.worker.kill()
        for prediction in list(self.slots.running.values()):
            if not prediction.done.is_set():
                await self.cancel(prediction.id)
        with trio.move_on_after(5):
            for prediction in list(self.slots.running.values()):
                await prediction.done.wait()
        await self.worker.stop()
        shutil.rmtree(self.execution.files, ignore_errors=True)

    # --- health ----------------------------------------------------------------------------

    def status(self) -> str:
        if self.setup.status == "failed":
            return "SETUP_FAILED"
        if self.worker.exited.is_set():
            return "DEFUNCT"
        if self.setup.status == "starting":
            return "STARTING"
        if self.healthchecks.unhealthy:
            return "UNHEALTHY"
        return "BUSY" if self.slots.busy() else "READY"

    async def user_healthcheck(self) -> None:
        """Runs the predictor's healthcheck() (5 s limit) and records whether it passed."""
        if not (self.signature and self.signature.get("healthcheck")):
            return
        if self.status() not in ("READY", "BUSY", "UNHEALTHY"):
            return
        await self.healthchecks.check(self.worker)

    # --- predictions -----------------------------------------------------------------------

    def submit(self, body: Any, prediction_id: str | None = None) -> tuple[Prediction, bool]:
        """Validates a request and starts its prediction in the nursery (or raises Rejected).
        Returns the prediction and whether it is new (else it was already running)."""
        if self.setup.status != "succeeded" or self.worker.exited.is_set():
            died = self.setup.status == "succeeded"  # and the worker has exited since
            raise not_ready(str(self.worker.exit_reason) if died else None)
        pid = requested_id(body, prediction_id, self.training) or f"pred_{secrets.token_hex(8)}"
        existing = self.slots.running.get(pid)
        if existing is not None and not existing.done.is_set():
            return existing, False  # idempotent: the same id again is the same prediction
        declared = self.lifecycle.declared
        assert declared is not None and self.nursery is not None  # set before setup succeeds
        raw = body.get("input")
        if raw is None:  # as coglet: no input, or null, is no inputs (but [] is refused)
            raw = {}
        values = validated(declared.inputs, raw)
        if self.slots.busy():
            raise at_capacity()
        prediction = self._prediction(pid, body, raw, declared)
        self.slots.take(prediction)
        self.nursery.start_soon(self.execution.run, prediction, values, declared.inputs.kinds)
        return prediction, True

    def _prediction(
        self, pid: str, body: dict[str, Any], raw: dict[str, Any], declared: Declared
    ) -> Prediction:
        webhook = None
        if body.get("webhook"):
            webhook = Webhook(self.http, str(body["webhook"]), body.get("webhook_events_filter"))
        return Prediction(
            id=pid,
            input={k: v for k, v in raw.items() if k in declared.inputs.kinds},  # as Cog: known
            training=self.training,
            iterator=bool(declared.signature["output"].get("iterator")),
            webhook=webhook,
            context={str(k): str(v) for k, v in (body.get("context") or {}).items()},
        )

    async def cancel(self, pid: str) -> bool:
        """Whether `pid` is running (asked to stop) or was canceled lately."""
        prediction = self.slots.running.get(pid)
        if prediction is None:
            return self.slots.canceled_lately(pid)
        if not prediction.done.is_set():
            await self.execution.stop(pid)
        return True

"""Running one prediction on the worker: send it, follow the worker's messages, end it.

Each message type has a small handler in one table (`HANDLERS`); a handler returns True once
the prediction has ended. The I/O a prediction needs (input files, uploads, webhooks) happens
here; its state lives in `runtime.record`.
"""

from __future__ import annotations

import contextlib
import math
import sys
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from runtime.files import Client, InputError, UploadError, finish_outputs, prepare_inputs
from runtime.pipe import (
    Canceled,
    Done,
    Failed,
    Log,
    Metric,
    Output,
    ToPrediction,
    WorkerDiedMessage,
)
from runtime.record import Prediction
from runtime.slots import Slots
from runtime.worker import WorkerDied, WorkerProcess

WORKER_CRASHED = "Worker crashed"  # coglet's error for a prediction whose worker died

# (the runtime's execution, the prediction, the message narrowed to the handler's type)
Handler = Callable[["Execution", Prediction, Any], Awaitable[bool]]


class Execution:
    """Runs predictions on one worker, each in a task of its own (`run`)."""

    def __init__(
        self,
        worker: WorkerProcess,
        slots: Slots,
        http: Client,
        upload_url: str | None,
        files: Path,
    ) -> None:
        self.worker = worker
        self.slots = slots
        self.http = http
        self.upload_url = upload_url
        self.files = files  # where input files are fetched to

    async def run(
        self, prediction: Prediction, values: dict[str, Any], kinds: dict[str, dict[str, Any]]
    ) -> None:
        """The prediction from start to end; whatever goes wrong, it fails alone."""
        send, receive = trio.open_memory_channel[ToPrediction](math.inf)
        self.worker.handlers[prediction.id] = send.send_nowait
        prediction.begin()
        try:
            if await self._start(prediction, values, kinds):
                await self._follow(prediction, receive)
        except Exception as e:  # a bug, or a failure nobody foresaw
            traceback.print_exc(file=sys.stderr)
            if not prediction.done.is_set():
                await self.stop(prediction.id)
                await self.end(prediction, "failed", error=f"{type(e).__name__}: {e}")
        finally:
            self.worker.handlers.pop(prediction.id, None)
            self.slots.free(prediction)  # finished ones are not kept: no leak
            if not prediction.done.is_set():  # cancelled from outside (shutdown)
                prediction.abandon()

    async def _start(
        self, prediction: Prediction, values: dict[str, Any], kinds: dict[str, dict[str, Any]]
    ) -> bool:
        """Announces the start, fetches the input files and sends the prediction to the worker;
        False where that failed the prediction."""
        if prediction.webhook:
            await prediction.webhook.intermediate("start", prediction.snapshot, force=True)
        prediction.events.publish("start", {"id": prediction.id, "status": "processing"})
        try:
            ready = await prepare_inputs(self.http, values, kinds, self.files)
            await self.worker.send(
                {
                    "type": "predict",
                    "id": prediction.id,
                    "input": ready,
                    "context": prediction.context,
                }
            )
        except InputError as e:
            await self.end(prediction, "failed", error=str(e))
            return False
        except WorkerDied as e:
            await self.crashed(prediction, str(e))
            return False
        return True

    async def _follow(
        self, prediction: Prediction, receive: trio.MemoryReceiveChannel[ToPrediction]
    ) -> None:
        """Handles the prediction's messages until one ends it."""
        handlers = HANDLERS
        while True:
            message: ToPrediction | None = None
            if prediction.partial_logs:  # an unfinished line waits briefly for its end
                with trio.move_on_at(prediction.partial_deadline):
                    message = await receive.receive()
                if message is None:
                    await self.send_lines(prediction, flush=True)
                    continue
            else:
                message = await receive.receive()
            # What else has arrived is handled without a trip through the scheduler for each
            # message: 40,000 log lines are 80,000 messages.
            while message is not None:
                handler = handlers.get(message["type"])
                if handler is not None and await handler(self, prediction, message):
                    return
                try:
                    message = receive.receive_nowait()
                except trio.WouldBlock:
                    message = None

    async def stop(self, pid: str) -> None:
        """Asks the worker to cancel `pid` (nothing to ask once the worker is gone)."""
        with contextlib.suppress(WorkerDied):
            await self.worker.send({"type": "cancel", "id": pid})

    async def end(self, prediction: Prediction, status: str, error: str | None = None) -> None:
        self.slots.free(prediction)  # its slot is free from now on
        if status == "canceled":
            self.slots.record_cancel(prediction.id)
        prediction.complete(status, error)
        if prediction.webhook:
            with trio.CancelScope(shield=True):
                await prediction.webhook.terminal(prediction.snapshot())

    async def crashed(self, prediction: Prediction, reason: str) -> None:
        """The worker died under the prediction: coglet's words for it, and ours for how it
        died (a signal, an exit status) as the last line of the prediction's logs."""
        prediction.add_log("stderr", f"{reason}\n")
        await self.end(prediction, "failed", error=WORKER_CRASHED)

    async def send_lines(self, prediction: Prediction, flush: bool = False) -> None:
        if prediction.take_lines(flush) and prediction.webhook:
            await prediction.webhook.intermediate("logs", prediction.snapshot)


# --- the handlers, one per message type ----------------------------------------------------


async def on_log(execution: Execution, prediction: Prediction, message: Log) -> bool:
    stream = "stderr" if message.get("stream") == "stderr" else "stdout"
    prediction.add_log(stream, str(message["data"]))
    # `send_lines`, written out: this runs for every piece of output (80,000 for 40,000 lines).
    if prediction.take_lines() and prediction.webhook:
        await prediction.webhook.intermediate("logs", prediction.snapshot)
    return False


async def on_output(execution: Execution, prediction: Prediction, message: Output) -> bool:
    """One item an iterator yielded."""
    try:
        value = await finish_outputs(execution.http, message["value"], execution.upload_url)
    except UploadError as e:  # the prediction fails; the predictor is stopped
        await execution.stop(prediction.id)
        await execution.end(prediction, "failed", error=str(e))
        return True
    prediction.output.append(value)
    index = len(prediction.output) - 1
    prediction.events.publish("output", {"chunk": value, "index": index})
    if prediction.webhook:
        await prediction.webhook.intermediate("output", prediction.snapshot)
    return False


async def on_metric(execution: Execution, prediction: Prediction, message: Metric) -> bool:
    # All of them arrive again with the end: this one is for SSE.
    metric = {"name": message["name"], "value": message["value"], "mode": message["mode"]}
    prediction.events.publish("metric", metric)
    return False


async def on_done(execution: Execution, prediction: Prediction, message: Done) -> bool:
    prediction.metrics.update(message.get("metrics") or {})
    if "output" in message:
        try:
            prediction.output = await finish_outputs(
                execution.http, message["output"], execution.upload_url
            )
        except UploadError as e:
            await execution.end(prediction, "failed", error=str(e))
            return True
    await execution.end(prediction, "succeeded")
    return True


async def on_failed(execution: Execution, prediction: Prediction, message: Failed) -> bool:
    prediction.metrics.update(message.get("metrics") or {})
    await execution.end(prediction, "failed", error=message.get("error"))
    return True


async def on_canceled(execution: Execution, prediction: Prediction, message: Canceled) -> bool:
    prediction.metrics.update(message.get("metrics") or {})
    await execution.end(prediction, "canceled")
    return True


async def on_worker_died(
    execution: Execution, prediction: Prediction, message: WorkerDiedMessage
) -> bool:
    await execution.crashed(prediction, message["error"])
    return True


# The worker's messages to a prediction, by type; each handler returns True once it has ended it.
HANDLERS: dict[str, Handler] = {
    "log": on_log,
    "output": on_output,
    "metric": on_metric,
    "done": on_done,
    "failed": on_failed,
    "canceled": on_canceled,
    "worker_died": on_worker_died,
}

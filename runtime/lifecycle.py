"""The worker's life as the server sees it: its start, its setup, and what the predictor declared.

The worker describes the predictor (its signature) once the module is imported, then runs
setup(); both arrive as messages that belong to no prediction, handled here by type. Setup ends
when the worker says so, fails, times out (COG_SETUP_TIMEOUT), or the worker dies first; while
it runs, a line now and then says what it waits for.
"""

from __future__ import annotations

import math
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from runtime.health import Healthchecks
from runtime.openapi import openapi
from runtime.pipe import FromWorker, HealthcheckResult, Log, SetupFailed, Signature
from runtime.record import Text, now_iso
from runtime.schema import Inputs
from runtime.slots import Slots
from runtime.spawn import Spawned
from runtime.worker import WorkerProcess

SETUP_LOG_INTERVAL_S = 30.0  # how often a setup that has not finished is reported


@dataclass
class Setup:
    """Setup's state, as /health-check reports it."""

    status: str = "starting"  # starting, succeeded, failed
    started_at: str = field(default_factory=now_iso)
    completed_at: str | None = None
    logs: Text = field(default_factory=Text)
    done: trio.Event = field(default_factory=trio.Event)

    def succeed(self) -> None:
        self.status = "succeeded"
        self.completed_at = now_iso()
        self.done.set()

    def fail(self, reason: str, detail: str | None = None) -> None:
        """Setup failed for `reason` (coglet's sentence, the last of the logs: coglet's logs
        hold it alone), unless it has already ended; `detail` is a line of ours before it."""
        if self.status != "starting":
            return
        self.status = "failed"
        self.completed_at = now_iso()
        if detail:
            self.logs.append(detail + "\n")
        self.logs.append(reason)
        self.done.set()


@dataclass(frozen=True)
class Declared:
    """What the predictor declared: its signature, the validator of its inputs, its OpenAPI."""

    signature: dict[str, Any]
    inputs: Inputs
    schema: dict[str, Any]


class Lifecycle:
    """The worker and its setup, from its start until it stops."""

    def __init__(
        self,
        spawned: Spawned | OSError,
        slots: Slots,
        healthchecks: Healthchecks,
        training: bool,
        setup_timeout: float | None,
        setup_log_interval: float | None,
        max_concurrency: int | None,
    ) -> None:
        self.worker = WorkerProcess(spawned)
        self.setup = Setup()
        self.declared: Declared | None = None
        self.slots, self.healthchecks = slots, healthchecks
        self.ref = spawned.ref if isinstance(spawned, Spawned) else ""
        self.started = time.monotonic()
        self.training = training
        self.setup_timeout = setup_timeout
        self.setup_log_interval = setup_log_interval or SETUP_LOG_INTERVAL_S
        self.max_concurrency = max_concurrency  # COG_MAX_CONCURRENCY, over the predictor's

    async def supervise(
        self, nursery: trio.Nursery, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Starts the worker and watches its setup; returns when the worker has stopped."""
        self.worker.on_message = self._on_message
        try:
            self.worker.start()
        except OSError as e:
            self.setup.fail(f"failed to spawn worker: spawner failed: {e}")
            task_status.started()
            return
        nursery.start_soon(self.worker.run)
        nursery.start_soon(self._watch_setup)
        task_status.started()
        await self.worker.exited.wait()
        # If setup had not ended: coglet's sentence, after ours that says how the worker ended.
        self.setup.fail("worker crashed", detail=f"setup failed: {self.worker.exit_reason}")

    async def _watch_setup(self) -> None:
        timeout = math.inf if self.setup_timeout is None else self.setup_timeout
        with trio.move_on_after(timeout):
            await self._wait_for_setup()
            return
        detail = f"setup timed out after {self.setup_timeout:g} seconds"
        self.setup.fail("worker setup timed out", detail=detail)
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
            if self.declared is not None:
                doing = f"setup() of {predictor} is still running"
            waited = time.monotonic() - self.started
            print(f"cog: {doing} ({waited:.0f} s so far)", file=sys.stderr, flush=True)

    def _on_message(self, message: FromWorker) -> None:
        """A message that belongs to no running prediction, to its handler (if any)."""
        handler = UNOWNED.get(message["type"])
        if handler is not None:
            handler(self, message)


# --- the handlers of messages that belong to no prediction, one per type -------------------


def on_signature(lifecycle: Lifecycle, message: Signature) -> None:
    signature = message["signature"]
    inputs = Inputs(signature)
    lifecycle.declared = Declared(
        signature, inputs, openapi(signature, training=lifecycle.training)
    )
    wanted = lifecycle.max_concurrency or signature["max_concurrency"]
    lifecycle.slots.set_capacity(wanted, is_async=signature["is_async"])


def on_setup_failed(lifecycle: Lifecycle, message: SetupFailed) -> None:
    """The worker's reason, inside coglet's words for a failed setup: its orchestrator's error
    around its worker's (which names the slot that failed: a fresh id, as coglet's are)."""
    error = message.get("error", "setup failed")
    lifecycle.setup.fail(
        f"worker setup failed: worker setup failed (slot {uuid.uuid4()}): Setup failed: {error}"
    )


def on_log(lifecycle: Lifecycle, message: Log) -> None:
    """Setup's output is kept for /health-check; later output of no prediction is the server's."""
    if lifecycle.setup.status == "starting":
        lifecycle.setup.logs.append(message["data"])
    else:
        sys.stderr.write(message["data"])


def on_healthcheck(lifecycle: Lifecycle, message: HealthcheckResult) -> None:
    lifecycle.healthchecks.answered(message)


UNOWNED: dict[str, Callable[[Lifecycle, Any], None]] = {
    "signature": on_signature,
    "setup_done": lambda lifecycle, message: lifecycle.setup.succeed(),
    "setup_failed": on_setup_failed,
    "log": on_log,
    "healthcheck": on_healthcheck,
}

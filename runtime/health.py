"""The predictor's own healthcheck(): asked of the worker, answered within a limit, remembered.

The server's status (READY, BUSY, ...) is the runtime's; this is the user's part of it, which
turns READY or BUSY into UNHEALTHY until a later check passes.
"""

from __future__ import annotations

import secrets

import trio

from runtime.pipe import HealthcheckResult
from runtime.worker import WorkerDied, WorkerProcess

HEALTHCHECK_TIMEOUT_S = 5.0


def _failure(result: HealthcheckResult) -> str | None:
    """Why the check failed, worded as coglet words it; None if it passed."""
    if result.get("ok"):
        return None
    error = str(result.get("error") or "returned False")
    if error == "healthcheck returned False":
        error = "user-defined healthcheck returned False"
    return f"Healthcheck failed: {error}"


class Healthchecks:
    __slots__ = ("_waiting", "unhealthy")

    def __init__(self) -> None:
        self.unhealthy: str | None = None  # why the last check failed
        self._waiting: dict[str, trio.MemorySendChannel[HealthcheckResult]] = {}  # by check id

    async def check(self, worker: WorkerProcess) -> None:
        """Runs the predictor's healthcheck() (5 s limit) and records whether it passed."""
        check_id = secrets.token_hex(4)
        send, receive = trio.open_memory_channel[HealthcheckResult](1)
        self._waiting[check_id] = send
        try:
            await worker.send({"type": "healthcheck", "id": check_id})
        except WorkerDied:
            return
        with trio.move_on_after(HEALTHCHECK_TIMEOUT_S):
            self.unhealthy = _failure(await receive.receive())
            return
        self._waiting.pop(check_id, None)
        self.unhealthy = (
            "Healthcheck failed: user-defined healthcheck timed out after "
            f"{HEALTHCHECK_TIMEOUT_S:.1f} seconds"
        )

    def answered(self, message: HealthcheckResult) -> None:
        """The worker's answer, to the check that waits for it (none after a timeout)."""
        waiter = self._waiting.pop(str(message.get("id")), None)
        if waiter is not None:
            waiter.send_nowait(message)

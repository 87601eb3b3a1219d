"""Whether a request may start a prediction, and Cog's words where it may not.

Checked in coglet's order: the setup (503), the body's shape and id (422), the inputs (422),
then a free slot (409).
"""

from __future__ import annotations

from typing import Any

from runtime.schema import Inputs


class Rejected(Exception):
    """A request the runtime refuses: HTTP status and Cog's body (JSON, or plain text)."""

    def __init__(self, status: int, body: dict[str, Any] | str) -> None:
        super().__init__(body)
        self.status = status
        self.body = body


def not_ready(worker_died: str | None) -> Rejected:
    """Setup has not succeeded, or the worker died after it did (`worker_died`, the reason)."""
    if worker_died is not None:
        return Rejected(
            503, {"error": f"the model's worker died: {worker_died}", "status": "failed"}
        )
    return Rejected(
        503,
        {
            "error": "Setup has not finished yet. Wait until it has finished, or GET "
            "/health-check for status.",
            "status": "failed",
        },
    )


def requested_id(body: Any, url_id: str | None, training: bool) -> Any:
    """The id the request names for its prediction (in the URL, or the body as sent), if any."""
    if not isinstance(body, dict):
        raise Rejected(
            422, {"detail": [{"loc": ["body"], "msg": "must be an object", "type": "type"}]}
        )
    if url_id is not None and body.get("id") not in (None, url_id):
        noun = "training" if training else "prediction"
        message = f"{noun} ID must match the ID supplied in the URL"
        raise Rejected(
            422, {"detail": [{"loc": ["body", "id"], "msg": message, "type": "value_error"}]}
        )
    return url_id or body.get("id")


def validated(inputs: Inputs, raw: Any) -> dict[str, Any]:
    """The inputs' values, or Rejected with Cog's 422 `detail`."""
    values, errors = inputs.validate(raw)
    if errors or values is None:
        raise Rejected(422, {"detail": errors})
    return values


def at_capacity() -> Rejected:
    return Rejected(409, {"error": "At capacity - all prediction slots busy", "status": "failed"})

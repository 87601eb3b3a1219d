"""The worker's side of the pipe's framing: one JSON object a line.

Messages arrive in chunks of whatever size the pipe gives; a message can be far larger than a
chunk (a 40 MB output) or many can share one. Standard library only: the worker runs it in the
model's environment. The server's side (`runtime.worker`) frames the same way with its own
code, because the runtime's environment holds `runtime/` alone, not the SDK.
"""

from __future__ import annotations

import json
from typing import Any


def frame(message: dict[str, Any]) -> bytes:
    """A message as one line (values JSON cannot hold are written as their str())."""
    return json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"


class Lines:
    """Splits a stream of chunks into messages. Each message is joined once, when its end has
    arrived, so the cost is linear in its size however many chunks it took."""

    def __init__(self) -> None:
        self._partial: list[bytes] = []

    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        """The messages that `chunk` completes, in order."""
        end = chunk.rfind(b"\n")
        if end == -1:
            self._partial.append(chunk)
            return []
        whole = b"".join([*self._partial, chunk[: end + 1]])
        self._partial = [chunk[end + 1 :]] if end + 1 < len(chunk) else []
        return [json.loads(line) for line in whole.split(b"\n") if line]

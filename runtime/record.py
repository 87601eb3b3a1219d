"""One prediction's record: its state as it runs, its logs by whole lines, and coglet's JSON of it.

The record changes only in memory; `runtime.execution` feeds it the worker's messages and does
the I/O (uploads, webhooks) around it.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field
from typing import Any

import trio

from runtime.events import EventStream, Listener
from runtime.webhooks import Webhook

LOG_LINE_WAIT_S = 0.05  # how long a line without its newline waits for the rest


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
    events: EventStream = field(default_factory=EventStream)

    # --- coglet's JSON ---------------------------------------------------------------------

    def _body(self) -> dict[str, Any]:
        metrics = nest_metrics(self.metrics)
        if self.predict_time is not None:
            metrics["predict_time"] = self.predict_time
        return {"id": self.id, "status": self.status, "logs": str(self.logs), "metrics": metrics}

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

    def subscribe(self, channel: Listener) -> None:
        """A new SSE client (see `EventStream.subscribe`)."""
        self.events.subscribe(channel, ended=self.done.is_set())

    # --- as it runs ------------------------------------------------------------------------

    def begin(self) -> None:
        self.status = "processing"
        if self.iterator:
            self.output = []

    def add_log(self, stream: str, data: str) -> None:
        """Text the predictor wrote: kept until its line ends (see `take_lines`)."""
        if not self.partial_logs:
            self.partial_deadline = trio.current_time() + LOG_LINE_WAIT_S
        self.partial_logs[stream] = self.partial_logs.get(stream, "") + data

    def take_lines(self, flush: bool = False) -> bool:
        """Logs as coglet reports them: whole lines, one event per write that ends a line; what
        has no newline yet is held until its line ends, or a moment, or the end (`flush`).
        True when any were taken."""
        taken = False
        for stream, text in list(self.partial_logs.items()):
            cut = len(text) if flush else text.rfind("\n") + 1
            if cut == 0:
                continue
            lines, rest = text[:cut], text[cut:]
            if rest:
                self.partial_logs[stream] = rest
                self.partial_deadline = trio.current_time() + LOG_LINE_WAIT_S
            else:
                del self.partial_logs[stream]
            self.logs.append(lines)
            self.events.publish("log", {"data": lines, "source": stream})
            taken = True
        return taken

    def complete(self, status: str, error: str | None = None) -> None:
        """The end: the held logs, the terminal state, the completed event, and no more events."""
        self.take_lines(flush=True)  # the terminal event has them
        self.status = status
        self.error = error
        self.predict_time = seconds_since(self.created_ns)
        self.done.set()
        self.events.publish("completed", self.snapshot())
        self.events.close()

    def abandon(self) -> None:
        """Canceled from outside (shutdown) before it ended: no more events, nobody told."""
        self.logs.append("".join(self.partial_logs.values()))
        self.status = "canceled"
        self.predict_time = seconds_since(self.created_ns)
        self.done.set()

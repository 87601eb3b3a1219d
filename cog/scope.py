"""The running prediction's scope: `current_scope().record_metric(...)` and `.context`."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

MetricSink = Callable[[str, Any, str], None]


class Scope:
    def __init__(self, context: dict[str, str] | None = None, sink: MetricSink | None = None):
        self.context: dict[str, str] = dict(context or {})
        self.metrics: dict[str, Any] = {}
        self._sink = sink

    def record_metric(self, name: str, value: Any, mode: str = "replace") -> None:
        """Records a metric for this prediction: `replace` it, `incr` it, or `append` to it."""
        if not name or any(not part for part in name.split(".")):
            return  # as Cog: empty keys and empty dotted segments are ignored
        if mode in ("incr", "increment"):
            value = self.metrics.get(name, 0) + value
        elif mode == "append":
            value = [*self.metrics.get(name, []), value]
        elif mode != "replace":
            raise ValueError(f"unknown metric mode {mode!r}: use replace, incr or append")
        self.metrics[name] = value
        if self._sink is not None:
            self._sink(name, value, "replace")


_current: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("cog_scope", default=None)
_outside = Scope()


def current_scope() -> Scope:
    """The scope of the prediction running in this task or thread (a scratch one outside)."""
    return _current.get() or _outside


def enter_scope(scope: Scope) -> contextvars.Token[Scope | None]:
    return _current.set(scope)


def exit_scope(token: contextvars.Token[Scope | None]) -> None:
    _current.reset(token)

"""The running prediction's scope: `current_scope().record_metric(...)` and `.context`."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

MAX_METRIC_NAME = 128  # bytes, as coglet counts them
MAX_METRIC_SEGMENTS = 4


def check_metric_name(name: str, reserved_ok: bool = False) -> None:
    """coglet's rules for a metric name, in its words: dot-separated segments (at most 4, 128
    bytes in all) of ASCII letters, digits and single underscores, each starting with a letter
    and ending with a letter or digit; `predict_time` and `cog.*` are reserved."""
    if name == "predict_time" and not reserved_ok:
        raise ValueError("'predict_time' is reserved by the runtime")
    if name.startswith("cog.") and not reserved_ok:
        raise ValueError("the 'cog.' prefix is reserved for system metrics")
    if not name:
        raise ValueError("metric name must not be empty")
    size = len(name.encode())
    if size > MAX_METRIC_NAME:
        raise ValueError(
            f"metric name must be {MAX_METRIC_NAME} characters or fewer (got {size} characters)"
        )
    segments = name.split(".")
    if len(segments) > MAX_METRIC_SEGMENTS:
        raise ValueError(
            f"metric name must have at most {MAX_METRIC_SEGMENTS} dot-separated segments "
            f"(got {len(segments)})"
        )
    for i, segment in enumerate(segments):
        if not segment:
            if i == 0:
                raise ValueError("metric name must not start with a dot")
            if i == len(segments) - 1:
                raise ValueError("metric name must not end with a dot")
            raise ValueError("metric name must not contain empty segments (consecutive dots)")
        if not (segment[0].isascii() and segment[0].isalpha()):
            raise ValueError(f"metric name segment '{segment}' must start with a letter")
        underscore = False
        for char in segment[1:]:  # in coglet's order: the first fault met is the one named
            if char == "_":
                if underscore:
                    raise ValueError(
                        f"metric name segment '{segment}' must not contain consecutive underscores"
                    )
                underscore = True
            elif char.isascii() and char.isalnum():
                underscore = False
            else:
                raise ValueError(
                    f"metric name segment '{segment}' contains invalid character '{char}'"
                )
        if underscore:
            raise ValueError(f"metric name segment '{segment}' must end with a letter or digit")


_KINDS = ((bool, "bool"), (int, "int"), (float, "float"), (str, "str"), (list, "list"))
_MODES = {"replace": "replace", "incr": "incr", "increment": "incr", "append": "append"}
_STREAMED_MODES = {"replace": "replace", "incr": "increment", "append": "append"}  # coglet's


def _text(argument: str, value: Any) -> None:
    if not isinstance(value, str):  # in the words of coglet's argument conversion
        raise TypeError(
            f"argument '{argument}': '{type(value).__name__}' object cannot be cast as 'str'"
        )


def _parse(key: Any, mode: Any) -> str:
    """The mode `record(key, value, mode)` means, once its arguments are checked as coglet
    checks them: both strings (mode or None), the mode one it knows."""
    _text("key", key)
    if mode is not None:
        _text("mode", mode)
    how = _MODES.get(mode or "replace")
    if how is None:
        raise TypeError(f"Invalid metric mode: '{mode}'. Expected 'replace', 'incr', or 'append'.")
    return how


def _kind(value: Any) -> str:
    for python_type, name in (*_KINDS, (dict, "dict")):  # bool before int: bool is an int
        if isinstance(value, python_type):
            return name
    raise TypeError(
        f"Unsupported metric value type: {type(value).__name__}. "
        "Expected bool, int, float, str, list, or dict."
    )


class Metrics(dict[str, Any]):
    """`scope.metrics`: the prediction's metrics, with coglet's rules. `record(key, value,
    mode)` replaces, increments or appends; a metric keeps its type until deleted
    (`delete(key)`, `del metrics[key]`, or `metrics[key] = None`)."""

    def __init__(self, on_record: Callable[[str, Any, str], None] | None = None) -> None:
        super().__init__()
        self._types: dict[str, str] = {}
        self._on_record = on_record  # told each change as coglet streams it: name, value, mode

    def record(self, key: str, value: Any, mode: str | None = None) -> None:
        how = _parse(key, mode)
        check_metric_name(key)
        kind = _kind(value)
        known = self._types.get(key)
        if known is not None and known != kind:
            raise TypeError(
                f"Metric '{key}' has type {known}, cannot set to {kind} without deleting first"
            )
        if how == "incr" and kind not in ("int", "float"):
            raise TypeError(f"Increment mode requires int or float, got {kind}")
        self._types[key] = kind
        current = self.get(key)
        if self._on_record is not None:
            self._on_record(key, value, _STREAMED_MODES[how])
        if how == "incr":
            value = (current or 0) + value
        elif how == "append":
            value = [*(current or []), value]
        super().__setitem__(key, value)

    def delete(self, key: str) -> None:
        """Kept as None, which the server reads as coglet's delete (a dotted key leaves its
        parent objects, as there)."""
        _text("key", key)
        check_metric_name(key, reserved_ok=True)  # deleting what was never set is harmless
        self._types.pop(key, None)
        if self._on_record is not None:
            self._on_record(key, None, "replace")
        super().__setitem__(key, None)

    def __setitem__(self, key: str, value: Any) -> None:
        if value is None:
            self.delete(key)
        else:
            self.record(key, value)

    def __delitem__(self, key: str) -> None:
        self.delete(key)

    def __repr__(self) -> str:
        return f"MetricRecorder(keys={len(self._types)})"  # as coglet's recorder shows itself


class Scope:
    def __init__(
        self,
        context: dict[str, str] | None = None,
        on_metric: Callable[[str, Any, str], None] | None = None,
    ) -> None:
        self.context: dict[str, str] = dict(context or {})
        self.metrics = Metrics(on_metric)

    def record_metric(self, key: str, value: Any, mode: str | None = None) -> None:
        """Records a metric for this prediction: `replace` it, `incr` it, or `append` to it.
        A name or value outside coglet's rules raises, which fails the prediction, as in Cog."""
        self.metrics.record(key, value, mode)

    def __repr__(self) -> str:
        return f"Scope({self.metrics!r})"


class _Inactive(Metrics):
    """The metrics outside a prediction (in `setup()`, at import, in a test calling the
    predictor directly): every operation is accepted and dropped, as by coglet's inactive
    recorder, so that code which records metrics runs the same outside the server."""

    def record(self, key: str, value: Any, mode: str | None = None) -> None:
        _parse(key, mode)  # coglet reads its arguments before it looks whether it is active

    def delete(self, key: str) -> None:
        _text("key", key)

    def __repr__(self) -> str:
        return "MetricRecorder(inactive)"


_current: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("cog_scope", default=None)
_outside = Scope()
_outside.metrics = _Inactive()


def current_scope() -> Scope:
    """The scope of the prediction running in this task or thread; outside one, a scope that
    ignores what it is told."""
    return _current.get() or _outside


def enter_scope(scope: Scope) -> contextvars.Token[Scope | None]:
    return _current.set(scope)


def exit_scope(token: contextvars.Token[Scope | None]) -> None:
    _current.reset(token)

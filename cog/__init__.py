"""The Cog SDK that predictors import. Standard library only: it runs in the model's environment.

`cog.cli` (the `cog` command) and `cog.server` (the worker and the server's entry point) live
beside it; importing `cog` loads neither.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from cog.input import FieldInfo, Input
from cog.model import BaseModel
from cog.predictor import BasePredictor, BaseRunner, CancelationException
from cog.scope import Scope, current_scope
from cog.types import AsyncConcatenateIterator, ConcatenateIterator, File, Path, Secret, URLFile

__version__ = "0.23.1"  # the Cog contract this SDK implements

F = TypeVar("F", bound=Callable[..., Any])


def streaming(fn: F | None = None) -> Any:
    """Marks a predict function as able to stream its output over server-sent events."""

    def mark(inner: F) -> F:
        inner.__cog_streaming__ = True  # type: ignore[attr-defined]
        return inner

    return mark if fn is None else mark(fn)


def concurrent(fn: F | None = None, *, max: int = 1) -> Any:
    """Lets an async predict function run up to `max` predictions at once."""
    if isinstance(max, bool) or not isinstance(max, int):
        raise TypeError("concurrent max must be an integer")
    if max < 1:
        raise ValueError("concurrent max must be at least 1")

    def mark(inner: F) -> F:
        is_async = inspect.iscoroutinefunction(inner) or inspect.isasyncgenfunction(inner)
        if max > 1 and not is_async:
            raise TypeError("concurrent max greater than 1 requires an async function")
        inner.__cog_concurrent_max__ = max  # type: ignore[attr-defined]
        return inner

    return mark if fn is None else mark(fn)


class _RetiredWarning(FutureWarning):
    """`ExperimentalFeatureWarning`: Cog no longer emits it; kept for models that filter it."""


def _record(name: str, value: Any) -> None:
    """`emit_metric(name, value)`: `current_scope().record_metric(name, value)`, its old name."""
    current_scope().record_metric(name, value)


_RETIRED: dict[str, tuple[object, str]] = {
    "ExperimentalFeatureWarning": (
        _RetiredWarning,
        "ExperimentalFeatureWarning is deprecated: remove it from your imports and any "
        "warnings.filterwarnings(...) that names it",
    ),
    "emit_metric": (
        _record,
        "emit_metric() is deprecated: use current_scope().record_metric(name, value)",
    ),
}


def __getattr__(name: str) -> object:
    """Names Cog retired but models still import: they work, and say once (on stderr, where
    no warnings filter can hide it) what to use instead."""
    if name not in _RETIRED:
        raise AttributeError(f"module 'cog' has no attribute {name!r}")
    value, advice = _RETIRED[name]
    print(f"cog: {advice}", file=sys.stderr)
    globals()[name] = value
    return value


__all__ = [
    "AsyncConcatenateIterator",
    "BaseModel",
    "BasePredictor",
    "BaseRunner",
    "CancelationException",
    "ConcatenateIterator",
    "FieldInfo",
    "File",
    "Input",
    "Path",
    "Scope",
    "Secret",
    "URLFile",
    "concurrent",
    "current_scope",
    "streaming",
]

"""The Cog SDK that predictors import. Standard library only: it runs in the model's environment.

`cog.cli` (the `cog` command) and `cog.server` (the worker and the server's entry point) live
beside it; importing `cog` loads neither. Its public names, their signatures and behaviour are
Cog 0.23.1's (tests/sdk/test_sdk_surface.py compares them; docs/conformance/sdk.md lists them).
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections.abc import Callable
from typing import TypeVar, overload

from cog.input import FieldInfo, Input
from cog.model import BaseModel
from cog.predictor import BasePredictor, BaseRunner, CancelationException
from cog.scope import Scope as Scope  # the type current_scope() returns; not in __all__
from cog.scope import current_scope
from cog.types import (
    AsyncConcatenateIterator,
    ConcatenateIterator,
    File,
    Opaque,
    Path,
    Secret,
    URLFile,
    URLPath,
)

__version__ = "0.23.1"  # the Cog contract this SDK implements

_F = TypeVar("_F", bound=Callable[..., object])


@overload
def streaming(fn: _F) -> _F: ...


@overload
def streaming(fn: None = None) -> Callable[[_F], _F]: ...


def streaming(fn: _F | None = None) -> _F | Callable[[_F], _F]:
    """Marks a predict function as able to stream its output over server-sent events."""

    def decorate(inner: _F) -> _F:
        with contextlib.suppress(AttributeError, TypeError):  # Cog takes anything
            inner.__cog_streaming__ = True  # type: ignore[attr-defined]
        return inner

    return decorate if fn is None else decorate(fn)


@overload
def concurrent(fn: _F) -> _F: ...


@overload
def concurrent(fn: None = None, *, max: int = 1) -> Callable[[_F], _F]: ...


def concurrent(fn: _F | None = None, *, max: int = 1) -> _F | Callable[[_F], _F]:
    """Lets an async predict function run up to `max` predictions at once."""
    if isinstance(max, bool) or not isinstance(max, int):
        raise TypeError("concurrent max must be an integer")
    if max < 1:
        raise ValueError("concurrent max must be at least 1")

    def decorate(inner: _F) -> _F:
        is_async = inspect.iscoroutinefunction(inner) or inspect.isasyncgenfunction(inner)
        if max > 1 and not is_async:
            raise TypeError("concurrent max greater than 1 requires an async function")
        inner.__cog_concurrent_max__ = max  # type: ignore[attr-defined]
        return inner

    if fn is None:
        return decorate
    if not callable(fn):
        raise TypeError("concurrent must be used as @concurrent or @concurrent(max=...)")
    return decorate(fn)


class _ExperimentalFeatureWarning(FutureWarning):
    """`ExperimentalFeatureWarning`: Cog no longer emits it; kept for models that filter it."""


def _emit_metric(name: str, value: float) -> None:
    """`emit_metric(name, value)`: `current_scope().record_metric(name, value)`, its old name."""
    current_scope().record_metric(name, value)


_emit_metric.__name__ = _emit_metric.__qualname__ = "emit_metric"

# Names Cog retired that models still import, each with what Cog says (once) when it is.
_RETIRED: dict[str, tuple[object, str]] = {
    "ExperimentalFeatureWarning": (
        _ExperimentalFeatureWarning,
        "ExperimentalFeatureWarning is deprecated and will be removed in a future release. "
        "Remove `ExperimentalFeatureWarning` from your imports and any associated "
        "`warnings.filterwarnings(...)` calls.",
    ),
    "emit_metric": (
        _emit_metric,
        "emit_metric() is deprecated and will be removed in a future release. "
        "Use current_scope().record_metric(name, value) instead.",
    ),
}


def __getattr__(name: str) -> object:
    """A retired name works, and says once, on stderr (where no warnings filter hides it),
    what to do instead."""
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
    "ExperimentalFeatureWarning",
    "FieldInfo",
    "File",
    "Input",
    "Opaque",
    "Path",
    "Secret",
    "URLFile",
    "URLPath",
    "__version__",
    "concurrent",
    "current_scope",
    "emit_metric",
    "streaming",
]

"""`Input(...)`: a predictor argument's default, description and constraints."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class _Missing:
    def __repr__(self) -> str:
        return "<required>"


# `Input()` without a default. Cog's `Input` defaults to None and tells the two apart by reading
# the source at build time; this SDK is read at run time, so "no default" needs its own value.
MISSING: Any = _Missing()


@dataclass(frozen=True)
class FieldInfo:
    """What `Input(...)` returns: the input's metadata, read when the signature is described."""

    default: Any = MISSING
    description: str | None = None
    ge: int | float | None = None
    le: int | float | None = None
    min_length: int | None = None
    max_length: int | None = None
    regex: str | None = None
    choices: list[str | int] | None = None
    deprecated: bool | None = None
    accept: str | None = None  # the MIME types or extensions a file input takes ("image/*")


def Input(
    default: Any = MISSING,
    *,
    default_factory: Callable[..., Any] | None = None,
    description: str | None = None,
    ge: int | float | None = None,
    le: int | float | None = None,
    min_length: int | None = None,
    max_length: int | None = None,
    regex: str | None = None,
    choices: list[str | int] | None = None,
    deprecated: bool | None = None,
    accept: str | None = None,
) -> Any:
    """Declares an input; without `default` it is required, with `default=None` optional."""
    if default_factory is not None:
        raise TypeError(
            "default_factory is not supported in Input(). "
            "Use a literal default value instead: Input(default=...). "
            "Mutable defaults like lists should use immutable alternatives "
            "(e.g. a comma-separated string) or be constructed in predict()."
        )
    return FieldInfo(
        default=default,
        description=description,
        ge=ge,
        le=le,
        min_length=min_length,
        max_length=max_length,
        regex=regex,
        choices=choices,
        deprecated=deprecated,
        accept=accept,
    )

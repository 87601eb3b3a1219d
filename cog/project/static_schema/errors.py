"""Cog's schema errors: each message is Cog's sentence (pkg/schema/errors.go and the
generator's inline ones), formatted as Cog formats it."""

from __future__ import annotations


class SchemaError(Exception):
    """A predictor Cog's static generator refuses; `str()` is Cog's message."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def wrap(kind: str, message: str) -> SchemaError:
    return SchemaError(kind, message)


def unsupported(what: str) -> SchemaError:
    return SchemaError("UnsupportedType", f"unsupported type: {what}")


def invalid_predict_ref(ref: str) -> SchemaError:
    return SchemaError(
        "InvalidPredictRef",
        f"invalid predict reference '{ref}' — expected format: file.py:ClassName or "
        "file.py:function_name",
    )


def optional_output() -> SchemaError:
    return SchemaError(
        "OptionalOutput", "unsupported output type: Optional is not allowed as a return type"
    )


def concat_iterator_not_str(got: str) -> SchemaError:
    return SchemaError(
        "ConcatIteratorNotStr", f"ConcatenateIterator element type must be str, got {got}"
    )


def unresolvable_imported(name: str, module: str) -> SchemaError:
    return SchemaError(
        "UnresolvableType",
        f"cannot resolve type '{name}' (imported from '{module}') - external types cannot be "
        "statically analyzed. If this is a JSON-shaped third-party type, mark it opaque with "
        "`from typing import Annotated`, `from cog import Opaque`, and "
        f"`field: Annotated[{name}, Opaque]`. Otherwise define it as a BaseModel subclass in "
        "your predict file, or provide a .pyi stub",
    )


def unresolvable(name: str) -> SchemaError:
    return SchemaError(
        "UnresolvableType",
        f"cannot resolve type '{name}' - it is not a primitive type (str, int, float, bool, "
        "Path) and no BaseModel definition was found in the predict file",
    )


def prefixed(prefix: str, error: SchemaError) -> SchemaError:
    """Go's `fmt.Errorf("prefix: %w", err)`: the same error, its text prefixed."""
    return SchemaError(error.kind, f"{prefix}: {error.message}")

"""JSON as Go's encoding/json writes it: a plain map's keys sorted, an ordered map's
(`Ordered`) in insertion order, floats in Go's shortest form, `<`, `>`, `&`, U+2028 and
U+2029 escaped, so that a document is byte for byte the label Cog writes."""

from __future__ import annotations

import json
import math
from typing import Any

from cog.project.static_schema.errors import SchemaError
from cog.project.static_schema.literals import go_float, go_print


class Ordered(dict):  # type: ignore[type-arg]
    """A map whose keys keep their order (Cog's orderedMapAny)."""


def encode(value: Any, indent: str | None = None, level: int = 0) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            text = "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
            raise SchemaError("Other", f"json: unsupported value: {text}")
        return go_float(value)
    if isinstance(value, str):
        return string(value)
    inner = "" if indent is None else "\n" + indent * (level + 1)
    close = "" if indent is None else "\n" + indent * level
    colon = ":" if indent is None else ": "
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        items = [encode(v, indent, level + 1) for v in value]
        return "[" + inner + ("," + inner).join(items) + close + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        keys = list(value) if isinstance(value, Ordered) else sorted(value)
        items = [string(k) + colon + encode(value[k], indent, level + 1) for k in keys]
        return "{" + inner + ("," + inner).join(items) + close + "}"
    raise TypeError(f"cannot encode {type(value).__name__}: {go_print(value)}")


def string(text: str) -> str:
    encoded = json.dumps(text, ensure_ascii=False)
    for raw, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        encoded = encoded.replace(raw, escaped)
    return encoded


def round_trip(value: Any) -> Any:
    """What Go's json.Unmarshal into `any` makes of a document: plain maps, float64s."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list | tuple):
        return [round_trip(v) for v in value]
    return {k: round_trip(v) for k, v in value.items()}

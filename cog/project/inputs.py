"""A prediction's inputs checked against the model's OpenAPI schema as Cog's CLI checks them
(stricter than the server, before anything is sent), and `-i` values typed as the schema says,
as Cog's CLI types them (pkg/predict/input.go at the version docs/conformance/cli.md names).

Two choices differ from Cog on purpose: a number is read whole (Cog's CLI reads an integer as
an int32, so `-i seed=4294967296` is refused there, and a real as a float32, which rounds what
it sends), and one `@file` given to a list input is a list of that file (Cog sends the file
alone, which its own check of the list then refuses).
"""

from __future__ import annotations

import json
import math
import re
import struct
from typing import Any

from cog.project.errors import UsageError
from cog.project.input_schema import Schema, Schemas


class FileInput(str):
    """An `-i name=@path` value: the file as a data URL, sent as it is whatever the schema."""


def check_inputs(
    inputs: dict[str, Any], schema: dict[str, Any], training: bool, from_flags: bool
) -> None:
    """Cog's CLI checks, before the prediction is sent: every name declared, no null the
    server refuses, then every value against its schema and every required one given (all
    failures said at once); `-i` values are typed first, in place, as the schema says."""
    components = schema.get("components", {}).get("schemas", {})
    component = components.get("TrainingInput" if training else "Input") or components.get("Input")
    if component is None:
        return
    schemas = Schemas(components)
    component = schemas.resolve(component)
    properties: dict[str, Any] = component.get("properties") or {}
    _check_names(inputs, properties)
    if from_flags:
        for name, value in inputs.items():
            inputs[name] = _typed(name, value, properties[name], schemas)
    _check_finite(inputs)
    for name in sorted(inputs):
        for problem in schemas.explicit_nulls(inputs[name], properties[name], (name,)):
            raise UsageError(problem)
    problems = [failure.words() for failure in schemas.check(inputs, component, ())]
    if len(problems) == 1:
        raise UsageError(problems[0])
    if problems:
        raise UsageError("input validation failed:\n- " + "\n- ".join(problems))


def _check_names(inputs: dict[str, Any], properties: dict[str, Any]) -> None:
    valid = sorted(properties)
    unknown = sorted(name for name in inputs if name not in properties)
    suffix = f"valid inputs are: {', '.join(valid)}" if valid else "model does not accept inputs"
    if len(unknown) == 1:
        raise UsageError(f"unknown input {json.dumps(unknown[0])}; {suffix}")
    if unknown:
        raise UsageError(f"unknown inputs {', '.join(map(json.dumps, unknown))}; {suffix}")


def _check_finite(value: Any) -> None:
    """JSON has no infinities or NaN (`-i x=inf` reads as one, as in Go)."""
    if isinstance(value, float) and not math.isfinite(value):
        shown = "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
        raise UsageError(
            f"failed to encode inputs for validation: json: unsupported value: {shown}"
        )
    for item in (
        value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    ):
        _check_finite(item)


# --- `-i` values typed by the schema (Cog's NewInputsForMode) -------------------------------


def _typed(name: str, value: Any, prop: Schema, schemas: Schemas) -> Any:
    """The JSON value an `-i` text (or the texts of a repeated `-i`) is sent as; a value typed
    already is kept (an image's inputs are checked against its label before it starts, then
    against the started server's schema)."""
    if not _as_given(value):
        return value
    if isinstance(value, list):  # the flag given more than once: each an item of the list
        item = schemas.item_schema(prop)
        return [str(v) if isinstance(v, FileInput) else _scalar(v, item, schemas) for v in value]
    kind = schemas.resolved_type(prop)
    if isinstance(value, FileInput):
        return [str(value)] if kind == ["array"] else str(value)
    if kind == ["object"]:  # the text is the JSON object
        try:
            return json.loads(value, parse_constant=_no_constant)
        except ValueError as e:
            raise UsageError(
                f"failed to encode inputs for validation: input {json.dumps(name)} is not JSON "
                f"({e.msg if isinstance(e, json.JSONDecodeError) else e})",
                hint=f"""e.g. -i '{name}={{"key": "value"}}'""",
            ) from None
    if kind == ["array"]:
        return _array(value, prop, schemas)
    return _scalar(value, prop, schemas)


def _as_given(value: Any) -> bool:
    """Whether `value` is as `-i` gives it: a text, a file, or a list of those."""
    if isinstance(value, list):
        return all(isinstance(v, str | FileInput) for v in value)
    return isinstance(value, str | FileInput)


def _array(value: str, prop: Schema, schemas: Schemas) -> Any:
    """One `-i` text for a list input: a JSON list as given; the text itself where the schema
    also takes a string that it fits; else a list of the one value (Cog's
    newSingleArrayInput)."""
    try:
        parsed = json.loads(value, parse_constant=_no_constant)
    except ValueError:
        parsed = None
    if isinstance(parsed, list):
        return parsed
    takes_text = schemas.accepts(prop, "string")
    if takes_text and schemas.valid(value, prop):
        return value
    one = [_scalar(value, schemas.item_schema(prop), schemas)]
    return value if takes_text and not schemas.valid(one, prop) else one


def _scalar(value: str, schema: Schema | None, schemas: Schemas) -> Any:
    """`true`/`false` as a boolean, then an integer, then a real, each only where the schema
    takes one and, where it takes a string too, where the value then fits it; else the text
    (Cog's coerceScalarValue)."""
    if schema is None:
        return value

    def fits(candidate: Any) -> bool:
        return not schemas.accepts(schema, "string") or schemas.valid(candidate, schema)

    if value in ("true", "false") and schemas.accepts(schema, "boolean") and fits(value == "true"):
        return value == "true"
    if not schemas.accepts(schema, "number", "integer"):
        return value
    if _INTEGER.fullmatch(value) and fits(number := int(value)):
        return number
    if not schemas.accepts(schema, "number"):
        return value
    real = go_float(value)
    return real if real is not None and fits(real) else value


def _no_constant(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


# Go's strconv syntax: ParseInt base 10 (no digit separators, no spaces) and ParseFloat (decimal,
# hexadecimal with a p exponent, Inf and NaN in any case).
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_HEXADECIMAL = re.compile(
    r"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)[pP][+-]?[0-9]+"
)
_SPECIAL = re.compile(r"[+-]?(?:inf|infinity)|nan", re.IGNORECASE)


def go_float(text: str) -> float | None:
    """A real as Go's strconv.ParseFloat(text, 32) reads it, or None where it refuses it (a
    value beyond a float32's range included)."""
    if _DECIMAL.fullmatch(text) or _SPECIAL.fullmatch(text):
        number = float(text)
    elif _HEXADECIMAL.fullmatch(text):
        number = float.fromhex(text)
    else:
        return None
    try:
        struct.pack("f", number)
    except OverflowError:
        return None
    return number

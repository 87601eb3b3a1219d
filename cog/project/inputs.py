"""A prediction's inputs checked against the model's OpenAPI schema as Cog's CLI checks them
(stricter than the server, before anything is sent), and typed as the schema says."""

from __future__ import annotations

import json
import re
from typing import Any

from cog.project.errors import UsageError


def check_inputs(
    inputs: dict[str, Any], schema: dict[str, Any], training: bool, from_flags: bool
) -> None:
    """Cog's CLI checks, stricter than the server's, before the prediction is sent: every name
    declared, every required one given, each value of its type and within its bounds; `-i`
    values typed as the schema says (a single one for a list input becomes a list)."""
    components = schema.get("components", {}).get("schemas", {})
    component = components.get("TrainingInput" if training else "Input") or components.get("Input")
    if component is None:
        return
    properties: dict[str, Any] = component.get("properties") or {}
    valid = sorted(properties)
    unknown = sorted(name for name in inputs if name not in valid)
    suffix = f"valid inputs are: {', '.join(valid)}" if valid else "model does not accept inputs"
    if len(unknown) == 1:
        raise UsageError(f'unknown input "{unknown[0]}"; {suffix}')
    if unknown:
        raise UsageError(f"unknown inputs {', '.join(map(json.dumps, unknown))}; {suffix}")
    missing = [name for name in component.get("required") or [] if name not in inputs]
    if missing:
        raise UsageError(f'missing required input "{missing[0]}"')
    for name, value in inputs.items():
        prop = _resolved(properties[name], components)
        if from_flags:
            if prop.get("type") == "array" and not isinstance(value, list):
                value = [value]
            value = inputs[name] = _typed(value, prop)
        problem = _problem(value, prop, components)
        if problem:
            raise UsageError(f'invalid input "{name}": {problem}')


# A value's JSON type by its Python type (exact: a bool is not an integer here).
_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array"}


def _resolved(prop: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """An input's schema with its `allOf`/`$ref` (how choices are written) merged in."""
    merged = {k: v for k, v in prop.items() if k != "allOf"}
    for part in prop.get("allOf", []):
        ref = part.get("$ref", "")
        merged |= components.get(ref.rsplit("/", 1)[-1], {}) if ref else part
    return merged


def _typed(value: Any, prop: dict[str, Any]) -> Any:
    """A `-i` string as the JSON value its input's type wants, as Cog's CLI sends it; a value
    that does not parse stays a string (and is reported as one)."""
    if isinstance(value, list):
        return [_typed(v, prop.get("items", {})) for v in value]
    kind = prop.get("type")
    if not isinstance(value, str) or kind not in ("integer", "number", "boolean"):
        return value
    try:
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value)
    except ValueError:
        return value
    return {"true": True, "false": False}.get(value.lower(), value)


def _problem(value: Any, prop: dict[str, Any], components: dict[str, Any]) -> str | None:
    """What is wrong with one input value, in Cog's words (its CLI checks the schema before
    anything runs); None when the server may have it."""
    if value is None:
        return "must not be null (omit the input to use its default)"
    kind = prop.get("type")
    got = _JSON_TYPES.get(type(value), "object")
    fits = {
        "integer": got == "integer",
        "number": got in ("integer", "number"),
        "string": got == "string",
        "boolean": got == "boolean",
        "array": got == "array",
    }.get(kind or "", True)
    if not fits:
        return f"expected {kind}, got {'number' if got == 'integer' else got}"
    if kind == "array":
        items = _resolved(prop.get("items", {}), components)
        return next((p for v in value if (p := _problem(v, items, components))), None)
    if "enum" in prop and value not in prop["enum"]:
        return f"must be one of: {', '.join(str(v) for v in prop['enum'])}"
    if kind in ("integer", "number"):
        if "minimum" in prop and value < prop["minimum"]:
            return f"number must be at least {prop['minimum']}"
        if "maximum" in prop and value > prop["maximum"]:
            return f"number must be at most {prop['maximum']}"
    if kind == "string":
        if "minLength" in prop and len(value) < prop["minLength"]:
            return f"minimum string length is {prop['minLength']}"
        if "maxLength" in prop and len(value) > prop["maxLength"]:
            return f"maximum string length is {prop['maxLength']}"
        if "pattern" in prop and not re.search(prop["pattern"], value):
            return f'string doesn\'t match the regular expression "{prop["pattern"]}"'
    return None

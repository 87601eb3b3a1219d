"""What Cog's CLI makes of `-i name=value` flags, reproduced from its source (pkg/cli/predict.go
parseInputFlags, pkg/predict/input.go NewInputsForMode and materialize, at the commit
cog_cli.json records): the JSON value each input is sent as, given the input's OpenAPI schema,
and whether Cog's own check of the schema (kin-openapi's VisitJSON, as far as input schemas use
it) lets it through.

Cog's rules, in order: a value in double quotes loses them; a value given more than once is a
list, each item coerced to the list's item type; `@path` is that file as a data URL; an object
input is the value as raw JSON; a list input is the value as a JSON list where it is one, else
a list of the one coerced value (or the string, where the schema takes a string and the list
would not fit); anything else is coerced: `true`/`false` to a boolean where the schema takes
one, then a base-10 int32 where it takes a number, then a float32 where it takes a float, each
only where the schema takes no string or the candidate fits it, else the string as given.
"""

from __future__ import annotations

import base64
import json
import math
import mimetypes
import struct
from pathlib import Path
from typing import Any

# Input properties as Cog's schema generator writes them (pkg/schema), one per input type.
COMPONENTS: dict[str, Any] = {
    "size": {"title": "size", "type": "integer", "enum": [1, 2, 3]},
    "color": {"title": "color", "type": "string", "enum": ["red", "green"]},
}
TYPES: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "Path": {"type": "string", "format": "uri"},
    "Secret": {"type": "string", "format": "password", "writeOnly": True, "x-cog-secret": True},
    "int (ge=1, le=10)": {"type": "integer", "minimum": 1, "maximum": 10},
    "str (choices)": {"allOf": [{"$ref": "#/components/schemas/color"}]},
    "int (choices)": {"allOf": [{"$ref": "#/components/schemas/size"}]},
    "Optional[int]": {"type": "integer", "nullable": True},
    "dict": {"type": "object"},
    "list[str]": {"type": "array", "items": {"type": "string"}},
    "list[int]": {"type": "array", "items": {"type": "integer"}},
    "list[float]": {"type": "array", "items": {"type": "number"}},
    "list[bool]": {"type": "array", "items": {"type": "boolean"}},
    "list[Path]": {"type": "array", "items": {"type": "string", "format": "uri"}},
    "int | str": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
    "str | int": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
    "float | str": {"anyOf": [{"type": "number"}, {"type": "string"}]},
    "int | float": {"anyOf": [{"type": "integer"}, {"type": "number"}]},
    "bool | int": {"anyOf": [{"type": "boolean"}, {"type": "integer"}]},
}


def schema_for(kind: str) -> dict[str, Any]:
    """A model's OpenAPI document with one input, `x`, of the given type (required)."""
    component = {"type": "object", "properties": {"x": TYPES[kind]}, "required": ["x"]}
    return {"components": {"schemas": {"Input": component, **COMPONENTS}}}


class Refused(Exception):
    """Cog's CLI refuses the flags before anything is sent."""


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return COMPONENTS[ref.rsplit("/", 1)[-1]] if ref else schema


def _types(schema: dict[str, Any]) -> list[str]:
    kind = schema.get("type")
    return [] if kind is None else [kind] if isinstance(kind, str) else list(kind)


def _accepts(schema: dict[str, Any] | None, *types: str) -> bool:
    """input.go schemaAcceptsTypes: the schema or any anyOf/allOf/oneOf member takes one."""
    if schema is None:
        return False
    schema = _resolve(schema)
    if any(t in _types(schema) for t in types):
        return True
    members = schema.get("anyOf", []) + schema.get("allOf", []) + schema.get("oneOf", [])
    return any(_accepts(m, *types) for m in members)


def valid(value: Any, schema: dict[str, Any]) -> bool:
    """kin-openapi's VisitJSON, for what input schemas hold: type (integer takes a float with
    nothing after the point), nullable, enum, bounds, items, and anyOf/allOf/oneOf."""
    schema = _resolve(schema)
    if value is None:
        return bool(schema.get("nullable")) or not (_types(schema) or _composed(schema))
    if not all(valid(value, m) for m in schema.get("allOf", [])):
        return False
    if "anyOf" in schema and not any(valid(value, m) for m in schema["anyOf"]):
        return False
    if "oneOf" in schema and sum(valid(value, m) for m in schema["oneOf"]) != 1:
        return False
    types = _types(schema)
    if types and not any(_is(value, t) for t in types):
        return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and not schema.get("minimum", -math.inf) <= value <= schema.get("maximum", math.inf):
        return False
    if isinstance(value, list) and "items" in schema:
        return all(valid(v, schema["items"]) for v in value)
    return True


def _composed(schema: dict[str, Any]) -> bool:
    return any(k in schema for k in ("anyOf", "allOf", "oneOf"))


def _is(value: Any, kind: str) -> bool:
    if kind == "integer":
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return number and float(value).is_integer()
    return {
        "number": isinstance(value, (int, float)) and not isinstance(value, bool),
        "string": isinstance(value, str),
        "boolean": isinstance(value, bool),
        "array": isinstance(value, list),
        "object": isinstance(value, dict),
    }[kind]


def _float32(value: float) -> float:
    return float(struct.unpack("f", struct.pack("f", value))[0])


def _int32(text: str) -> int | None:
    """Go's strconv.ParseInt(text, 10, 32)."""
    digits = text[1:] if text[:1] in "+-" else text
    if not digits.isascii() or not digits.isdigit():
        return None
    number = int(text)
    return number if -(2**31) <= number < 2**31 else None


def _float(text: str) -> float | None:
    """Go's strconv.ParseFloat(text, 32), for what a CLI value can be."""
    if "_" in text or text.strip() != text or not text:
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return None if math.isinf(_float32(number)) and not math.isinf(number) else number


def coerce_scalar(value: str, schema: dict[str, Any] | None) -> Any:
    """input.go coerceScalarValue."""
    if schema is None:
        return value

    def fits(candidate: Any) -> bool:
        return not _accepts(schema, "string") or valid(candidate, schema)

    if value in ("true", "false") and _accepts(schema, "boolean") and fits(value == "true"):
        return value == "true"
    if not _accepts(schema, "number", "integer"):
        return value
    number = _int32(value)
    if number is not None and fits(number):
        return number
    if not _accepts(schema, "number"):
        return value
    real = _float(value)
    if real is not None and fits(_float32(real)):
        return _float32(real)
    return value


def _item_schema(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """input.go arrayItemSchema."""
    if schema is None:
        return None
    schema = _resolve(schema)
    if "items" in schema:
        return schema["items"]
    items = [i for m in schema.get("anyOf", []) + schema.get("oneOf", []) if (i := _item_schema(m))]
    if items:
        return {"anyOf": items}
    for member in schema.get("allOf", []):
        item = _item_schema(member)
        if item is not None:
            return item
    return None


def _resolved_type(schema: dict[str, Any]) -> list[str]:
    """input.go resolveSchemaType: the first of the schema, its allOf, its anyOf with a type."""
    if _types(schema):
        return _types(schema)
    for key in ("allOf", "anyOf"):
        for member in schema.get(key, []):
            if _types(_resolve(member)):
                return _types(_resolve(member))
    return []


def _single(value: str, schema: dict[str, Any] | None) -> Any:
    if value.startswith("@"):
        return _file(value[1:])
    if schema is None:
        return value
    kind = _resolved_type(schema)
    if "object" in kind:
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise Refused("the value is not JSON") from None
    if "array" in kind:
        try:
            array = json.loads(value)
        except json.JSONDecodeError:
            array = None
        if isinstance(array, list):
            return array
        if _accepts(schema, "string") and valid(value, schema):
            return value
        one = [coerce_scalar(value, _item_schema(schema))]
        if _accepts(schema, "string") and not valid(one, schema):
            return value
        return [_file(v[1:]) if isinstance(v, str) and v.startswith("@") else v for v in one]
    return coerce_scalar(value, schema)


def _file(path: str) -> str:
    data = Path(path).expanduser().read_bytes()
    mime = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def cog_inputs(flags: list[str], kind: str) -> Any:
    """The value Cog's CLI sends as input `x` for `-i` flags (each `x=VALUE`); Refused where it
    refuses them."""
    schema = TYPES[kind]
    values = []
    for flag in flags:
        if "=" not in flag:
            raise Refused(f"Failed to parse input '{flag}', expected format is 'name=value'")
        _, value = flag.split("=", 1)
        if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
            value = value[1:-1]
        values.append(value)
    if len(values) > 1:
        item = _item_schema(schema)
        sent: Any = [_file(v[1:]) if v.startswith("@") else coerce_scalar(v, item) for v in values]
    else:
        sent = _single(values[0], schema)
    if sent is None or not valid(sent, schema):
        raise Refused(f"invalid input for {kind}")
    return sent

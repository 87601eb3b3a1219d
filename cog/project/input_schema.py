"""A model's input schema as Cog's CLI checks values against it: the check of kin-openapi's
`VisitJSON` (the OpenAPI library Cog's CLI uses, as a request, every failure collected) for what
input schemas hold, and each failure in the words Cog's `formatSchemaValidationError` gives it.

Values are JSON as Python reads it: numbers are compared as numbers whatever their Python
type, and a bool is never a number.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

Schema = dict[str, Any]

# Keys that make a schema more than `{}` (kin-openapi's IsEmpty), besides nested schemas.
_CONSTRAINTS = (
    *("type", "format", "enum", "uniqueItems", "exclusiveMinimum", "exclusiveMaximum"),
    *("nullable", "readOnly", "writeOnly", "minimum", "maximum", "multipleOf", "minLength"),
    *("maxLength", "pattern", "minItems", "maxItems", "required", "minProperties"),
    *("maxProperties", "const", "examples"),
)


@dataclass
class Failure:
    """One failed check: where (the input's name, then keys and indexes), which keyword,
    kin-openapi's reason, and the failures under it (an allOf's)."""

    path: tuple[str, ...]
    keyword: str
    reason: str
    schema: Schema
    value: Any
    causes: list[Failure] = field(default_factory=list)

    def words(self) -> str:
        """As Cog says it (formatSchemaValidationError)."""
        where = ".".join(self.path)
        if self.keyword == "required":
            return f"missing required input {json.dumps(where)}"
        if not where:
            return self.reason
        if (
            self.keyword == "type"
            and "type" in self.schema
            and self.reason.startswith("value must be ")
        ):
            expected = _types(self.schema)
            wanted = (
                expected[-1]
                if len(expected) == 1
                else ", ".join(expected[:-1]) + " or " + expected[-1]
            )
            return (
                f"invalid input {json.dumps(where)}: expected {wanted}, got {type_name(self.value)}"
            )
        choices = self._enum()
        if choices is not None:
            shown = ", ".join(go_value(v) for v in choices)
            return f"invalid input {json.dumps(where)}: must be one of: {shown}"
        return f"invalid input {json.dumps(where)}: {self.reason}"

    def _enum(self) -> list[Any] | None:
        if self.keyword == "enum" and self.schema.get("enum"):
            return list(self.schema["enum"])
        return next((found for c in self.causes if (found := c._enum()) is not None), None)


class Schemas:
    """The schemas of one OpenAPI document's components, for `$ref`s into them."""

    def __init__(self, components: dict[str, Any]) -> None:
        self.components = components

    def resolve(self, schema: Schema | None) -> Schema:
        seen = 0
        while schema is not None and "$ref" in schema and seen < 32:
            schema, seen = self.components.get(str(schema["$ref"]).rsplit("/", 1)[-1]), seen + 1
        return schema if schema is not None else {}

    def members(self, schema: Schema, key: str) -> list[Schema]:
        return [self.resolve(m) for m in schema.get(key) or []]

    def accepts(self, schema: Schema | None, *types: str) -> bool:
        """Whether the schema or any member of its anyOf/allOf/oneOf takes one of `types`
        (Cog's schemaAcceptsTypes)."""
        if schema is None:
            return False
        schema = self.resolve(schema)
        if any(t in _types(schema) for t in types):
            return True
        return any(
            self.accepts(m, *types)
            for key in ("anyOf", "allOf", "oneOf")
            for m in self.members(schema, key)
        )

    def valid(self, value: Any, schema: Schema) -> bool:
        return not self.check(value, schema, ())

    def check(self, value: Any, schema: Schema, path: tuple[str, ...]) -> list[Failure]:
        """Every failure of `value` against `schema`, in kin-openapi's order."""
        schema = self.resolve(schema)
        if value is None and (schema.get("nullable") or "null" in _types(schema)):
            return []
        if self._empty(schema):
            return (
                []
                if value is not None
                else [Failure(path, "nullable", "Value is not nullable", schema, value)]
            )
        failed, composed = self._composed(value, schema, path)
        if failed or (composed and value is None):
            return failed
        if "enum" in schema and not any(same_json(value, v) for v in schema["enum"]):
            allowed = json.dumps(schema["enum"], separators=(",", ":"))
            reason = f"value is not one of the allowed values {allowed}"
            return [Failure(path, "enum", reason, schema, value)]
        if value is None:
            return [Failure(path, "nullable", "Value is not nullable", schema, value)]
        if isinstance(value, bool):
            return [] if _permits(schema, "boolean") else [_expected(schema, value, path)]
        if isinstance(value, (int, float)):
            return self._number(value, schema, path)
        if isinstance(value, str):
            return self._string(value, schema, path)
        if isinstance(value, list):
            return self._array(value, schema, path)
        if isinstance(value, dict):
            return self._object(value, schema, path)
        return [
            Failure(path, "type", f"unhandled value of type {type(value).__name__}", schema, value)
        ]

    def _empty(self, schema: Schema) -> bool:
        if any(key in schema for key in _CONSTRAINTS):
            return False
        if schema.get("additionalProperties") is False:
            return False
        nested = [schema.get("items"), schema.get("not"), schema.get("additionalProperties")]
        nested += list((schema.get("properties") or {}).values())
        nested += [m for key in ("oneOf", "anyOf", "allOf") for m in schema.get(key) or []]
        return all(not isinstance(n, dict) or self._empty(self.resolve(n)) for n in nested)

    def _composed(
        self, value: Any, schema: Schema, path: tuple[str, ...]
    ) -> tuple[list[Failure], bool]:
        """oneOf, anyOf and allOf: what failed, and whether any was there."""
        composed = False
        if one_of := self.members(schema, "oneOf"):
            matched = [i for i, m in enumerate(one_of) if not self.check(value, m, path)]
            if len(matched) != 1:
                reason = (
                    'value matches more than one schema from "oneOf" '
                    f"(matches schemas at indices [{' '.join(map(str, matched))}])"
                    if matched
                    else 'value doesn\'t match any schema from "oneOf"'
                )
                return [Failure(path, "oneOf", reason, schema, value)], True
            composed = True
        if any_of := self.members(schema, "anyOf"):
            if all(self.check(value, m, path) for m in any_of):
                reason = 'doesn\'t match any schema from "anyOf"'
                return [Failure(path, "anyOf", reason, schema, value)], True
            composed = True
        causes = [f for m in self.members(schema, "allOf") for f in self.check(value, m, path)]
        if causes:
            reason = 'doesn\'t match all schemas from "allOf"'
            return [Failure(path, "allOf", reason, schema, value, causes)], True
        return [], composed or bool(schema.get("allOf"))

    def _number(self, value: float, schema: Schema, path: tuple[str, ...]) -> list[Failure]:
        if not math.isfinite(value):
            return [Failure(path, "value", "value is not a finite number", schema, value)]
        failed = []
        if _permits(schema, "integer") and not _permits(schema, "number"):
            if not float(value).is_integer():
                failed.append(Failure(path, "type", "value must be an integer", schema, value))
        elif not (_permits(schema, "integer") or _permits(schema, "number")):
            return [_expected(schema, value, path)]
        low, high = schema.get("minimum"), schema.get("maximum")
        for keyword, bound, words, below in (
            ("exclusiveMinimum", low, "more than", True),
            ("exclusiveMaximum", high, "less than", False),
            ("minimum", None, "at least", True),
            ("maximum", None, "at most", False),
        ):
            given = schema.get(keyword)
            if isinstance(given, bool):  # OpenAPI 3.0: a flag on minimum/maximum
                given = bound if given else None
            if given is None:
                continue
            strict = keyword.startswith("exclusive")
            if below:
                ok = value > given if strict else value >= given
            else:
                ok = value < given if strict else value <= given
            if not ok:
                reason = f"number must be {words} {go_g(given)}"
                failed.append(Failure(path, keyword, reason, schema, value))
        step = schema.get("multipleOf")
        if step and (Fraction(f"{value:.10f}") / Fraction(f"{step:.10f}")).denominator != 1:
            reason = f"number must be a multiple of {go_g(step)}"
            failed.append(Failure(path, "multipleOf", reason, schema, value))
        return failed

    def _string(self, value: str, schema: Schema, path: tuple[str, ...]) -> list[Failure]:
        if not _permits(schema, "string"):
            return [_expected(schema, value, path)]
        failed = []
        length = len(value.encode("utf-16-le")) // 2  # JSON Schema counts UTF-16 units
        if length < schema.get("minLength", 0):
            reason = f"minimum string length is {schema['minLength']}"
            failed.append(Failure(path, "minLength", reason, schema, value))
        if "maxLength" in schema and length > schema["maxLength"]:
            reason = f"maximum string length is {schema['maxLength']}"
            failed.append(Failure(path, "maxLength", reason, schema, value))
        pattern = schema.get("pattern")
        if pattern is not None and re.search(pattern, value) is None:
            reason = f'string doesn\'t match the regular expression "{pattern}"'
            failed.append(Failure(path, "pattern", reason, schema, value))
        return failed

    def _array(self, value: list[Any], schema: Schema, path: tuple[str, ...]) -> list[Failure]:
        if not _permits(schema, "array"):
            return [_expected(schema, value, path)]
        failed = []
        if len(value) < schema.get("minItems", 0):
            reason = f"minimum number of items is {schema['minItems']}"
            failed.append(Failure(path, "minItems", reason, schema, value))
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            reason = f"maximum number of items is {schema['maxItems']}"
            failed.append(Failure(path, "maxItems", reason, schema, value))
        if schema.get("uniqueItems") and len({json.dumps(v, sort_keys=True) for v in value}) < len(
            value
        ):
            failed.append(Failure(path, "uniqueItems", "duplicate items found", schema, value))
        if isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                failed += self.check(item, schema["items"], (*path, str(i)))
        return failed

    def _object(
        self, value: dict[str, Any], schema: Schema, path: tuple[str, ...]
    ) -> list[Failure]:
        if not _permits(schema, "object"):
            return [_expected(schema, value, path)]
        failed = []
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key in sorted(value):
            if key in properties:
                failed += self.check(value[key], properties[key], (*path, key))
            elif isinstance(extra, dict):
                failed += self.check(value[key], extra, (*path, key))
            elif extra is False:
                reason = f"property {json.dumps(key)} is unsupported"
                failed.append(Failure(path, "properties", reason, schema, value))
        for key in schema.get("required") or []:
            if key not in value:
                reason = f"property {json.dumps(key)} is missing"
                failed.append(Failure((*path, key), "required", reason, schema, value))
        return failed

    def null_allowed(self, schema: Schema | None) -> bool:
        """Whether JSON null passes the schema as plain JSON Schema reads it, `nullable`
        ignored, as the server reads it (Cog's schemaAllowsNullWithoutNullable)."""
        if schema is None:
            return True
        schema = self.resolve(schema)
        allowed = "type" not in schema or "null" in _types(schema)
        if schema.get("enum"):
            allowed = allowed and None in schema["enum"]
        allowed = allowed and all(self.null_allowed(m) for m in self.members(schema, "allOf"))
        if any_of := self.members(schema, "anyOf"):
            allowed = allowed and any(self.null_allowed(m) for m in any_of)
        if one_of := self.members(schema, "oneOf"):
            allowed = allowed and sum(self.null_allowed(m) for m in one_of) == 1
        if isinstance(schema.get("not"), dict):
            allowed = allowed and not self.null_allowed(schema["not"])
        return allowed and "const" not in schema

    def explicit_nulls(
        self, value: Any, schema: Schema | None, path: tuple[str, ...]
    ) -> Iterator[str]:
        """Where a null is given that the server refuses (Cog's rejectExplicitNulls)."""
        if value is None:
            if not self.null_allowed(schema):
                where = json.dumps(".".join(path))
                yield f"invalid input {where}: must not be null (omit the input to use its default)"
            return
        if schema is None:
            return
        schema = self.resolve(schema)
        if isinstance(value, dict):
            properties = schema.get("properties") or {}
            for key in sorted(value):
                if key in properties:
                    yield from self.explicit_nulls(value[key], properties[key], (*path, key))
        elif isinstance(value, list) and (items := self.item_schema(schema)) is not None:
            for i, item in enumerate(value):
                yield from self.explicit_nulls(item, items, (*path, str(i)))

    def item_schema(self, schema: Schema | None) -> Schema | None:
        """An array schema's items, through anyOf/oneOf (any of theirs) and allOf (the first
        that has some): Cog's arrayItemSchema."""
        if schema is None:
            return None
        schema = self.resolve(schema)
        if isinstance(schema.get("items"), dict):
            return self.resolve(schema["items"])
        found = [
            i
            for key in ("anyOf", "oneOf")
            for m in self.members(schema, key)
            if (i := self.item_schema(m)) is not None
        ]
        if found:
            return {"anyOf": found}
        for member in self.members(schema, "allOf"):
            if (item := self.item_schema(member)) is not None:
                return item
        return None

    def resolved_type(self, schema: Schema) -> list[str]:
        """The schema's type, else that of its first allOf, then anyOf, member that has one
        (Cog's resolveSchemaType)."""
        schema = self.resolve(schema)
        if _types(schema):
            return _types(schema)
        for key in ("allOf", "anyOf"):
            for member in self.members(schema, key):
                if _types(member):
                    return _types(member)
        return []


def _types(schema: Schema) -> list[str]:
    kind = schema.get("type")
    return [] if kind is None else [kind] if isinstance(kind, str) else list(kind)


def _permits(schema: Schema, kind: str) -> bool:
    return "type" not in schema or kind in _types(schema)


def _expected(schema: Schema, value: Any, path: tuple[str, ...]) -> Failure:
    types = _types(schema)
    if len(types) == 1:
        article = "an" if types[0] in ("array", "object", "integer") else "a"
        reason = f"value must be {article} {types[0]}"
    else:
        reason = f"value must be one of {', '.join(types)}"
    return Failure(path, "type", reason, schema, value)


def same_json(a: Any, b: Any) -> bool:
    """JSON equality: 1 and 1.0 are one number, and true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def type_name(value: Any) -> str:
    """A value's JSON type, as Cog names it in `expected X, got Y`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    names: dict[type, str] = {str: "string", list: "array", dict: "object"}
    return names.get(type(value), type(value).__name__)


def go_g(number: float) -> str:
    """A number as Go's `%g` writes it: the shortest digits, in exponent form below 1e-4 or
    from 1e6 (1, 0.5, 1.234567e+06)."""
    if isinstance(number, int) and abs(number) < 10**6:
        return str(number)
    return _go_float(float(number), 6)


def go_value(value: Any) -> str:
    """A JSON value as Go's `%v` writes it (the values of an enum)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "<nil>"
    if isinstance(value, (int, float)):
        return _go_float(float(value), 21)
    return str(value)


def _go_float(number: float, exponent_from: int) -> str:
    if number == 0:
        return "0"
    sign, digits, exponent = Decimal(repr(number)).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    point = len(text) + exponent  # where the decimal point falls in the digits
    power = point - 1
    minus = "-" if sign else ""
    if power < -4 or power >= exponent_from:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{minus}{mantissa}e{'-' if power < 0 else '+'}{abs(power):02d}"
    if point <= 0:
        return f"{minus}0.{'0' * -point}{text}"
    if point >= len(text):
        return minus + text + "0" * (point - len(text))
    return f"{minus}{text[:point]}.{text[point:]}"

"""The errors a JSON Schema reports for an instance, worded and ordered as coglet's validator
(the Rust `jsonschema` crate 0.29, draft 2020-12) reports them.

Only the keywords Cog's input schemas use are checked: `type`, `enum`, `minimum`, `maximum`,
`minLength`, `maxLength`, `pattern`, `items`, `properties`, `required`, `anyOf`, `allOf` and
`$ref` into `#/components/schemas/`. Annotations (`format`, `nullable`, `title`, `default`,
`x-*` ...) are not checked, as there. Keywords are applied in sorted order, as serde_json's maps
hold them, and each error names where it is by a JSON pointer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from runtime.jsonbody import dumps

Error = tuple[str, str]  # (JSON pointer of the instance, message)

_TYPES = {
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "number": lambda v: _is_number(v),
    # A float with no fractional part is an integer since draft 6.
    "integer": lambda v: _is_number(v) and (isinstance(v, int) or float(v).is_integer()),
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _show(value: Any) -> str:
    """A value as serde_json's Display writes it: compact JSON, keys sorted."""
    return dumps(value)


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value (1 == 1.0), a boolean never a number."""
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if type(a) is not type(b) and not (_is_number(a) and _is_number(b)):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return bool(a == b)


def _pointer(path: tuple[str | int, ...]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


class Validator:
    """A schema, with the `components.schemas` its `$ref`s point into."""

    def __init__(self, schema: dict[str, Any], components: dict[str, Any]) -> None:
        self.schema = schema
        self.components = components

    def errors(self, instance: Any) -> list[Error]:
        return list(self._errors(self.schema, instance, ()))

    def _errors(self, schema: Any, instance: Any, path: tuple[str | int, ...]) -> Iterator[Error]:
        if schema is True or not isinstance(schema, dict):
            return
        for keyword in sorted(schema):
            check = _KEYWORDS.get(keyword)
            if check is not None:
                yield from check(self, schema[keyword], instance, path)

    # --- the keywords, each given (its value in the schema, the instance, where it is) -----

    def _type(self, expected: Any, instance: Any, path: tuple[str | int, ...]) -> Iterator[Error]:
        names = expected if isinstance(expected, list) else [expected]
        if any(_TYPES[name](instance) for name in names if name in _TYPES):
            return
        if isinstance(expected, list):
            listed = ", ".join(f'"{name}"' for name in names)
            yield _pointer(path), f"{_show(instance)} is not of types {listed}"
        else:
            yield _pointer(path), f'{_show(instance)} is not of type "{expected}"'

    def _enum(self, options: Any, instance: Any, path: tuple[str | int, ...]) -> Iterator[Error]:
        if not any(_equal(instance, option) for option in options):
            yield _pointer(path), f"{_show(instance)} is not one of {_show(options)}"

    def _minimum(self, limit: Any, instance: Any, path: tuple[str | int, ...]) -> Iterator[Error]:
        if _is_number(instance) and instance < limit:
            yield _pointer(path), f"{_show(instance)} is less than the minimum of {_show(limit)}"

    def _maximum(self, limit: Any, instance: Any, path: tuple[str | int, ...]) -> Iterator[Error]:
        if _is_number(instance) and instance > limit:
            message = f"{_show(instance)} is greater than the maximum of {_show(limit)}"
            yield _pointer(path), message

    def _min_length(
        self, limit: Any, instance: Any, path: tuple[str | int, ...]
    ) -> Iterator[Error]:
        if isinstance(instance, str) and len(instance) < limit:
            plural = "" if limit == 1 else "s"
            yield _pointer(path), f"{_show(instance)} is shorter than {limit} character{plural}"

    def _max_length(
        self, limit: Any, instance: Any, path: tuple[str | int, ...]
    ) -> Iterator[Error]:
        if isinstance(instance, str) and len(instance) > limit:
            plural = "" if limit == 1 else "s"
            yield _pointer(path), f"{_show(instance)} is longer than {limit} character{plural}"

    def _pattern(self, pattern: Any, instance: Any, path: tuple[str | int, ...]) -> Iterator[Error]:
        if isinstance(instance, str) and not _regex(pattern).search(instance):
            yield _pointer(path), f'{_show(instance)} does not match "{pattern}"'

    def _items(self, items: Any, instance: Any, path: tuple[str | int, ...]) -> Iterator[Error]:
        if isinstance(instance, list):
            for index, item in enumerate(instance):
                yield from self._errors(items, item, (*path, index))

    def _properties(
        self, properties: Any, instance: Any, path: tuple[str | int, ...]
    ) -> Iterator[Error]:
        if isinstance(instance, dict):
            for name in sorted(properties):
                if name in instance:
                    yield from self._errors(properties[name], instance[name], (*path, name))

    def _required(self, names: Any, instance: Any, path: tuple[str | int, ...]) -> Iterator[Error]:
        if isinstance(instance, dict):
            for name in names:
                if name not in instance:
                    yield _pointer(path), f"{_show(name)} is a required property"

    def _any_of(self, schemas: Any, instance: Any, path: tuple[str | int, ...]) -> Iterator[Error]:
        if not any(not any(True for _ in self._errors(s, instance, path)) for s in schemas):
            message = (
                f"{_show(instance)} is not valid under any of the schemas listed in the "
                "'anyOf' keyword"
            )
            yield _pointer(path), message

    def _all_of(self, schemas: Any, instance: Any, path: tuple[str | int, ...]) -> Iterator[Error]:
        for schema in schemas:
            yield from self._errors(schema, instance, path)

    def _ref(self, reference: Any, instance: Any, path: tuple[str | int, ...]) -> Iterator[Error]:
        name = str(reference).removeprefix("#/components/schemas/")
        yield from self._errors(self.components.get(name, True), instance, path)


_KEYWORDS = {
    "$ref": Validator._ref,
    "allOf": Validator._all_of,
    "anyOf": Validator._any_of,
    "enum": Validator._enum,
    "items": Validator._items,
    "maxLength": Validator._max_length,
    "maximum": Validator._maximum,
    "minLength": Validator._min_length,
    "minimum": Validator._minimum,
    "pattern": Validator._pattern,
    "properties": Validator._properties,
    "required": Validator._required,
    "type": Validator._type,
}

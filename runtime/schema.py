"""Input validation, built once from the worker's description of the predictor's signature.

The worker describes the signature as plain JSON; this module turns it into a pydantic model,
so that the server refuses a bad request before it reaches the model. The OpenAPI document
made from the same description is runtime/openapi.py's.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model

from runtime.openapi import omittable

_PYTHON: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "any": Any,
    "path": str,  # a URL or a data URI; downloaded before the worker sees it
    "file": str,
    "url": str,
    "secret": str,
    "dict": dict[str, Any],
}


def _member(value: Any, kind: dict[str, Any]) -> bool:
    """Whether a JSON value is of a union member's type, exactly (no coercion), as Cog's
    JSON Schema validation decides it: an integer is a number, a boolean is not."""
    k = kind["kind"]
    if k == "list":
        return isinstance(value, list) and all(_member(v, kind["items"]) for v in value)
    if k in ("dict", "any"):
        return isinstance(value, dict)
    if k == "float":
        return type(value) in (int, float)
    return type(value) is {"str": str, "int": int, "bool": bool}.get(k)


def _union_check(variants: list[dict[str, Any]]) -> Any:
    names = " | ".join(_python_name(v) for v in variants)

    def check(value: Any) -> Any:
        if not any(_member(value, v) for v in variants):  # null too, as in Cog
            raise ValueError(f"value is not of type {names}")
        return value  # as given: an integer stays an integer for `str | float`

    return check


def _python_name(kind: dict[str, Any]) -> str:
    if kind["kind"] == "list":
        return f"list[{_python_name(kind['items'])}]"
    return "dict" if kind["kind"] == "any" else str(kind["kind"])


def _annotation(kind: dict[str, Any], choices: list[Any] | None = None) -> Any:
    if kind["kind"] == "list":
        base: Any = list[_annotation(kind["items"])]  # type: ignore[misc]
    elif kind["kind"] == "object":
        base = dict[str, Any]
    elif kind["kind"] == "union":
        base = Annotated[Any, AfterValidator(_union_check(kind["variants"]))]
    elif choices:
        base = Literal[tuple(choices)]
    else:
        base = _PYTHON[kind["kind"]]
    # A nullable input may be left out (it is then None) but, as in Cog, an explicit null is
    # checked against its type like any other value: only an untyped (Any) input takes it.
    return Optional[base] if kind["kind"] == "any" else base  # noqa: UP045 (runtime-built)


class Inputs:
    """The validator of one predictor's inputs."""

    def __init__(self, signature: dict[str, Any]) -> None:
        self.signature = signature
        fields: dict[str, Any] = {}
        for item in signature["inputs"]:
            constraints = {
                key: item[src]
                for key, src in (
                    ("ge", "ge"),
                    ("le", "le"),
                    ("min_length", "min_length"),
                    ("max_length", "max_length"),
                    ("pattern", "regex"),
                )
                if src in item
            }
            default = item.get("default", ...)
            if default is ... and omittable(item["type"]):
                default = None
            annotation = _annotation(item["type"], item.get("choices"))
            fields[item["name"]] = (annotation, Field(default, **constraints))
        self.model: type[BaseModel] = create_model(
            "Input", __config__=ConfigDict(extra="ignore", strict=False), **fields
        )
        self.kinds = {i["name"]: i["type"] for i in signature["inputs"]}  # name -> type

    def validate(self, data: Any) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """(the values, no errors) or (None, Cog's 422 `detail` entries)."""
        if not isinstance(data, dict):
            msg = f'{json.dumps(data)} is not of type "object"'
            return None, [{"loc": ["body", "input", "__root__"], "msg": msg, "type": "value_error"}]
        try:
            return self.model.model_validate(data).model_dump(), []
        except ValidationError as e:
            return None, [
                {
                    "loc": ["body", "input", *map(str, err["loc"])],
                    "msg": err["msg"],
                    # as Cog: every input error is a value_error, a missing one .missing
                    "type": "value_error.missing" if err["type"] == "missing" else "value_error",
                }
                for err in e.errors(include_url=False)
            ]

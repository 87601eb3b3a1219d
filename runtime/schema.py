"""Input validation, built once from the worker's description of the predictor's signature.

As coglet does: unknown inputs are dropped, and what is left is checked against the `Input`
schema of the OpenAPI document (runtime/openapi.py) made from the same description; a bad
request is refused with coglet's 422 `detail`, in the words and order of its JSON Schema
validator (runtime/jsonschema_errors.py). Values are passed on as they were sent (no coercion:
an integer given for a float input stays an integer, as in Cog), with the declared defaults
for those left out.
"""

from __future__ import annotations

import copy
from typing import Any

from runtime.jsonschema_errors import Validator
from runtime.openapi import input_schema, omittable

REQUIRED = "is a required property"


class Inputs:
    """The validator of one predictor's inputs."""

    def __init__(self, signature: dict[str, Any]) -> None:
        self.signature = signature
        schema, enums = input_schema(signature)
        self.validator = Validator(schema, enums)
        self.required: list[str] = list(schema.get("required", []))
        self.kinds = {i["name"]: i["type"] for i in signature["inputs"]}  # name -> type
        # What an input left out is: its default, or None where it may be left out without one.
        self.defaults = {
            item["name"]: item.get("default")
            for item in signature["inputs"]
            if "default" in item or omittable(item["type"])
        }

    def validate(self, data: Any) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """(the values, no errors) or (None, Cog's 422 `detail` entries)."""
        known = (
            {k: v for k, v in data.items() if k in self.kinds} if isinstance(data, dict) else data
        )
        errors = self._detail(known)
        if errors:
            return None, errors
        values = {name: copy.deepcopy(value) for name, value in self.defaults.items()}
        values.update(known)
        return values, []

    def _detail(self, data: Any) -> list[dict[str, Any]]:
        """coglet's entries for the validator's errors: every missing required input at the
        first `required` error (`value_error.missing`), then the others by input."""
        detail: list[dict[str, Any]] = []
        missing_seen = False
        for pointer, message in self.validator.errors(data):
            if REQUIRED in message:  # coglet tells them apart by their words
                if not missing_seen:
                    missing_seen = True
                    present = data if isinstance(data, dict) else {}
                    detail += [
                        _entry(name, "Field required", "value_error.missing")
                        for name in self.required
                        if name not in present
                    ]
                continue
            field = pointer.lstrip("/") or "__root__"  # `numbers/1` for an item of a list
            detail.append(_entry(field, message, "value_error"))
        return detail


def _entry(field: str, message: str, kind: str) -> dict[str, Any]:
    return {"loc": ["body", "input", field], "msg": message, "type": kind}

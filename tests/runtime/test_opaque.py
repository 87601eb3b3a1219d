"""`Annotated[T, cog.Opaque]`: a type Cog cannot read becomes an opaque object in the schema,
keeping its list/optional shape, and its values pass through the server as sent and returned.
The runtime's schema is the same as Cog's static generator's (cog.project.static_schema, which
follows pkg/schema); coglet's own answers for the fixture are compared in
tests/runtime/test_runtime_errors.py (the `opaque/` cases)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import pytest

from cog import BasePredictor, Opaque
from cog.project.static_schema.generate import generate_combined
from cog.server.signature import PredictorError, describe, entry_point
from tests.runtime_server import FIXTURES, serve


class Msg:
    """A class Cog cannot describe (no BaseModel, no TypedDict)."""


def _kinds(predictor: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    found = describe(predictor, entry_point(predictor, "predict"))
    return {i["name"]: i["type"] for i in found["inputs"]}, found["output"]


def test_an_opaque_type_is_an_object_in_every_shape_cog_keeps() -> None:
    class Shapes(BasePredictor):
        def predict(
            self,
            one: Annotated[Msg, Opaque],
            many: Annotated[list[Msg], Opaque],
            maybe: Annotated[Msg | None, Opaque],
            maybe_many: Annotated[list[Msg] | None, Opaque],
            each: list[Annotated[Msg, Opaque]],
            each_maybe: list[Annotated[Msg, Opaque]] | None,
            outer_maybe: Annotated[Msg, Opaque] | None,
            nested_each: list[Annotated[list[Msg], Opaque]],
        ) -> list[Annotated[Msg, Opaque]]:
            return []

    inputs, output = _kinds(Shapes())
    obj, objects = {"kind": "dict"}, {"kind": "list", "items": {"kind": "dict"}}
    assert inputs == {
        "one": obj,
        "many": objects,
        "maybe": {**obj, "nullable": True},
        "maybe_many": {**objects, "nullable": True},
        "each": objects,
        "each_maybe": {**objects, "nullable": True},
        "outer_maybe": {**obj, "nullable": True},
        "nested_each": objects,  # as Cog: each item is an object, whatever is inside
    }
    assert output == objects


def test_without_opaque_the_type_is_refused_and_an_optional_opaque_output_too() -> None:
    class Unmarked(BasePredictor):
        def predict(self, message: Annotated[Msg, "some other metadata"]) -> str:
            return ""

    with pytest.raises(PredictorError, match="unsupported type 'Msg'"):
        _kinds(Unmarked())

    class MaybeOut(BasePredictor):
        def predict(self) -> Annotated[Msg | None, Opaque]:
            return None

    with pytest.raises(PredictorError, match="Optional is not allowed as a return type"):
        _kinds(MaybeOut())


def test_the_schema_is_cogs_and_values_pass_through() -> None:
    static = json.loads(generate_combined(FIXTURES, "opaque.py:Predictor", None, "0.23.1"))
    with serve("opaque.py:Predictor") as server:
        live = server.http.get("/openapi.json").json()
        message = {"role": "user", "content": "hi", "parts": [{"type": "text"}]}
        answer = server.predict(
            {"input": {"message": message, "history": [message, {}], "extra": {"n": 1}}}
        ).json()
        refused = server.predict({"input": {"message": [message], "history": [1]}})
    schemas = live["components"]["schemas"]
    assert schemas["Input"] == static["components"]["schemas"]["Input"]
    assert schemas["Output"] == static["components"]["schemas"]["Output"]
    assert schemas["Input"]["properties"]["message"] == {
        "title": "Message",
        "type": "object",
        "x-order": 0,
    }
    assert schemas["Input"]["properties"]["history"]["items"] == {"type": "object"}
    assert schemas["Input"]["required"] == ["message", "history"]
    assert schemas["Output"] == {"title": "Output", "type": "object"}
    assert answer["status"] == "succeeded", answer
    assert answer["output"] == {
        "echo": message,
        "turns": 2,
        "first": message,
        "extra": {"n": 1},
        "tagged": None,
    }
    assert refused.status_code == 422
    assert [(d["loc"][2], d["msg"]) for d in refused.json()["detail"]] == [
        ("history/0", '1 is not of type "object"'),
        ("message", '[{"content":"hi","parts":[{"type":"text"}],"role":"user"}] is not of type '
         '"object"'),
    ]  # fmt: skip

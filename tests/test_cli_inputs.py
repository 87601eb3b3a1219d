"""`cog run`'s input checks, in Cog's words, against the schema our server serves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cog.cli.values import parse_inputs
from cog.project.errors import UsageError
from cog.project.inputs import check_inputs
from cog.server import signature
from runtime.openapi import openapi

PREDICTOR = """
from typing import Optional

from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def predict(
        self,
        prompt: str,
        count: int = Input(default=5, ge=1, le=10),
        size: str = Input(default="small", choices=["small", "medium", "large"]),
        title: str = Input(default="ok", max_length=5),
        slug: str = Input(default="ok", regex="^[a-z]+$"),
        note: Optional[str] = Input(default=None),
        scale: float = Input(default=1.0),
        tags: list[int] = Input(default=[]),
    ) -> str:
        return prompt
"""


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root: Path = tmp_path_factory.mktemp("model")
    (root / "predict.py").write_text(PREDICTOR)
    target = signature.load("predict.py:Predictor", root)
    return openapi(signature.describe(target, signature.entry_point(target, "predict")))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["count=0"], 'invalid input "count": number must be at least 1'),
        (["count=99"], 'invalid input "count": number must be at most 10'),
        (["count=lots"], 'invalid input "count": expected integer, got string'),
        (["size=huge"], 'invalid input "size": must be one of: small, medium, large'),
        (["title=toolong"], 'invalid input "title": maximum string length is 5'),
        (["slug=BAD"], 'invalid input "slug": string doesn\'t match the regular expression'),
        (["tags=x"], 'invalid input "tags": expected integer, got string'),
    ],
)
def test_flags_out_of_bounds_are_refused_before_the_prediction(
    schema: dict[str, Any], flags: list[str], message: str
) -> None:
    with pytest.raises(UsageError) as e:
        check_inputs(parse_inputs(["prompt=hi", *flags]), schema, False, True)
    assert str(e.value).startswith(message)


def test_flags_are_sent_as_the_types_the_schema_names(schema: dict[str, Any]) -> None:
    inputs = parse_inputs(["prompt=7", "count=3", "scale=2", "tags=4", "tags=5", "size=large"])
    check_inputs(inputs, schema, False, True)
    assert inputs == {
        "prompt": "7",
        "count": 3,
        "scale": 2.0,
        "tags": [4, 5],
        "size": "large",
    }


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"prompt": "hi", "count": None}, 'invalid input "count": must not be null'),
        ({"prompt": "hi", "note": None}, 'invalid input "note": must not be null'),
        ({"prompt": 3}, 'invalid input "prompt": expected string, got number'),
        ({"prompt": "hi", "count": 2.5}, 'invalid input "count": expected integer, got number'),
    ],
)
def test_json_inputs_are_checked_as_given(
    schema: dict[str, Any], inputs: dict[str, Any], message: str
) -> None:
    with pytest.raises(UsageError) as e:
        check_inputs(inputs, schema, False, False)
    assert str(e.value).startswith(message)

"""`cog run`'s input checks, in Cog's words, against the schema our server serves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cog.cli.values import parse_env, parse_inputs
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
        (["tags=x"], 'invalid input "tags.0": expected integer, got string'),
        (["count=5_000"], 'invalid input "count": expected integer, got string'),
        (["count=2.5"], 'invalid input "count": expected integer, got string'),
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
    assert inputs == {"prompt": "7", "count": 3, "scale": 2, "tags": [4, 5], "size": "large"}
    assert type(inputs["scale"]) is int  # Cog's CLI reads an integer first, for a float too
    # An image's inputs are checked against its label, then against the started server's
    # schema: typed values stay as they are (they were an internal error).
    again = parse_inputs(["prompt=7", "count=3", "scale=2.5", "tags=4", "size=large"])
    check_inputs(again, schema, False, True)
    typed = dict(again)
    check_inputs(again, schema, False, True)
    assert again == typed == {"prompt": "7", "count": 3, "scale": 2.5, "tags": [4], "size": "large"}


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


UNIONS = """
from typing import Any, Optional, Union

from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def predict(
        self,
        n: Union[int, str],
        r: Union[float, str] = Input(default=1.0),
        k: Union[int, float] = Input(default=1),
        flag: bool = Input(default=False),
        options: Optional[dict] = Input(default=None),
        words: list[str] = Input(default=[]),
    ) -> str:
        return str(n)
"""


@pytest.fixture(scope="module")
def unions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root: Path = tmp_path_factory.mktemp("unions")
    (root / "predict.py").write_text(UNIONS)
    target = signature.load("predict.py:Predictor", root)
    return openapi(signature.describe(target, signature.entry_point(target, "predict")))


@pytest.mark.parametrize(
    ("flags", "sent"),
    [
        (["n=5"], {"n": 5}),  # a union is typed by its members, the first that fits
        (["n=hello"], {"n": "hello"}),
        (["n=[1, 2]"], {"n": "[1, 2]"}),  # a list only where the input is a list
        (['n="quoted"'], {"n": "quoted"}),  # Cog drops the quotes around a whole value
        (["n=1", "r=2.5", "k=1e3"], {"n": 1, "r": 2.5, "k": 1000.0}),
        (["n=1", "r=inf"], {"n": 1, "r": "inf"}),  # not JSON, so the string member
        (["n=1", 'options={"a": [1]}'], {"n": 1, "options": {"a": [1]}}),  # an object, as JSON
        (["n=1", 'words=["a", "b"]'], {"n": 1, "words": ["a", "b"]}),
        (["n=1", "words=[not json"], {"n": 1, "words": ["[not json"]}),
    ],
)
def test_flags_are_typed_as_cogs_cli_types_them(
    unions: dict[str, Any], flags: list[str], sent: dict[str, Any]
) -> None:
    inputs = parse_inputs(flags)
    check_inputs(inputs, unions, False, True)
    assert inputs == sent
    assert [type(v) for v in inputs.values()] == [type(v) for v in sent.values()]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["n=1", "flag=True"], 'invalid input "flag": expected boolean, got string'),
        (["n=1", "k=5_000"], 'invalid input "k": doesn\'t match any schema from "anyOf"'),
        (["n=1", "options=hello"], 'input "options" is not JSON'),
        (["n=1", "options=[1]"], 'invalid input "options": expected object, got array'),
        (["n=1", "k=inf"], "json: unsupported value: +Inf"),
        (["n"], "Failed to parse input 'n', expected format is 'name=value'"),
        (
            ["k=x", "flag=2"],
            'input validation failed:\n- invalid input "flag": expected boolean, got string\n'
            '- invalid input "k": doesn\'t match any schema from "anyOf"\n'
            '- missing required input "n"',
        ),
    ],
)
def test_flags_cog_refuses_are_refused_in_its_words(
    unions: dict[str, Any], flags: list[str], message: str
) -> None:
    with pytest.raises(UsageError) as e:
        check_inputs(parse_inputs(flags), unions, False, True)
    assert message in str(e.value)


def test_env_without_a_value_is_taken_from_here_as_docker_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FROM_HERE", "yes")
    monkeypatch.delenv("NOT_HERE", raising=False)
    assert parse_env(["A=1=2", "FROM_HERE", "NOT_HERE", "B="]) == {
        "A": "1=2",
        "FROM_HERE": "yes",
        "B": "",
    }
    with pytest.raises(UsageError):
        parse_env(["=x"])

"""Names Cog's SDK retired but real models still import: they keep working, and say once, on
stderr, what to use instead."""

from __future__ import annotations

import datetime
import enum
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path as FsPath
from typing import (  # noqa: UP035 (as models spell them)
    Any,
    Dict,
    List,
    NotRequired,
    Optional,
    Required,
    TypedDict,
    Union,
)

import pytest
from pydantic import BaseModel as PydanticBaseModel

from cog import BaseModel, File, Input, Path, Secret
from cog.server.signature import PredictorError, describe, describe_output, entry_point, load
from runtime.openapi import openapi
from tests.conftest import REPO

MODEL = """
import warnings
import cog
from cog import ExperimentalFeatureWarning, emit_metric
from cog.scope import Scope, enter_scope

warnings.filterwarnings("ignore", category=ExperimentalFeatureWarning)
assert issubclass(ExperimentalFeatureWarning, Warning)
emit_metric("dropped", 1)  # outside a prediction, as in Cog: accepted and dropped
enter_scope(Scope())  # as the worker does for each prediction
emit_metric("output_tokens", 42)
cog.emit_metric("input_tokens", 10)
print(sorted(cog.current_scope().metrics.items()))
"""


def test_retired_names_still_import_and_record() -> None:
    result = subprocess.run(
        [sys.executable, "-c", MODEL], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[('input_tokens', 10), ('output_tokens', 42)]"
    assert result.stderr.count("emit_metric() is deprecated") == 1  # once, however often used
    assert "ExperimentalFeatureWarning is deprecated" in result.stderr


def test_unknown_names_still_fail_as_attribute_errors() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from cog import NoSuchThing"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 1 and "ImportError" in result.stderr


class _Files:
    def predict(
        self,
        image: Path = Input(accept="image/*"),  # noqa: B008 (how predictors declare inputs)
        clips: list[Path] = Input(accept="audio/wav,audio/mp3", default=[]),  # noqa: B008
        prompt: str = "x",
    ) -> str:
        return prompt


class _Wrong:
    def predict(self, name: str = Input(accept="text/plain")) -> str:
        return name


def test_accept_annotates_file_inputs_and_is_refused_elsewhere() -> None:
    schema = openapi(describe(_Files(), entry_point(_Files(), "predict")))
    properties = schema["components"]["schemas"]["Input"]["properties"]
    assert properties["image"]["x-cog-accept"] == "image/*"
    assert properties["image"]["format"] == "uri"
    assert properties["clips"]["x-cog-accept"] == "audio/wav,audio/mp3"
    assert "x-cog-accept" not in properties["prompt"]
    with pytest.raises(PredictorError, match="accept is only valid on Path or File inputs"):
        describe(_Wrong(), entry_point(_Wrong(), "predict"))


class _Payload(TypedDict):
    name: str
    count: int


class _Objects:
    def predict(
        self,
        data: Dict[str, Any],  # noqa: UP006
        items: List[Dict[str, Any]],  # noqa: UP006
        payload: _Payload,
        more: list[_Payload] | None = None,
    ) -> dict:  # type: ignore[type-arg]
        return {"data": len(data), "items": len(items), "name": payload["name"]}


def test_dicts_and_typeddicts_are_json_objects_as_in_cog() -> None:
    from runtime.schema import Inputs

    found = describe(_Objects(), entry_point(_Objects(), "predict"))
    label = json.dumps(openapi(found), sort_keys=True, separators=(",", ":"))
    # the bytes Cog's own label has for these inputs (its integration suite checks them)
    assert '"data":{"title":"Data","type":"object","x-order":0}' in label
    assert '"items":{"items":{"type":"object"},"title":"Items","type":"array","x-order":1}' in label
    assert (
        '"more":{"default":null,"items":{"type":"object"},"nullable":true,"title":"More",'
        '"type":"array","x-order":3}' in label
    )
    values, errors = Inputs(found).validate(
        {"data": {"a": 1}, "items": [{"id": 1}, {"id": 2}], "payload": {"name": "x", "count": 2}}
    )
    assert errors == [] and values is not None and values["items"] == [{"id": 1}, {"id": 2}]
    _, errors = Inputs(found).validate({"data": "not an object", "items": [], "payload": {}})
    assert [e["loc"] for e in errors] == [["body", "input", "data"]]


def test_init_makes_a_project_that_describes_itself(tmp_path: FsPath) -> None:
    from derivations.config import load_config

    def init() -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "COG_STORE_DIR": str(tmp_path / "store")}
        return subprocess.run(
            [sys.executable, "-m", "cog.cli.main", "init"],
            cwd=tmp_path,
            env=env | {"PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            check=False,
        )

    (tmp_path / "requirements.txt").write_text("numpy==2.1.3\n")  # the user's own: kept
    first = init()
    assert first.returncode == 0, first.stderr
    assert (
        "Creating cog.yaml" in first.stderr and "Skipped existing requirements.txt" in first.stderr
    )
    assert (tmp_path / "requirements.txt").read_text() == "numpy==2.1.3\n"
    config = load_config(tmp_path)
    assert config.predict == "run.py:Runner" and config.build.python_version == "3.13"  # Cog's
    sys.path.insert(0, str(tmp_path))
    try:
        runner = load("run.py:Runner", tmp_path)
        found = describe(runner, entry_point(runner, "run"))
    finally:
        sys.path.remove(str(tmp_path))
    assert [i["name"] for i in found["inputs"]] == ["image", "scale"]
    again = init()
    assert again.returncode == 0 and "Creating" not in again.stderr


class _Tags(PydanticBaseModel):
    names: List[str]  # noqa: UP006


class _Result(PydanticBaseModel):
    text: str
    score: float
    tags: _Tags
    note: Optional[str] = None  # noqa: UP045
    extra: list[int] = []


class _Leaf(BaseModel):
    x: int


class _Tree(BaseModel):
    segmented_image: Optional[Path]  # noqa: UP045
    leaves: list[_Leaf]
    scores: dict[str, list[float]]
    grid: list[list[int]]
    n: int = 3


class _Outputs:
    def pydantic(self, prompt: str) -> _Result:
        return _Result(text=prompt, score=1.0, tags=_Tags(names=[]))

    def tree(self) -> _Tree:
        raise NotImplementedError

    def stream(self) -> Iterator[_Leaf]:
        yield _Leaf(x=1)


def _label(fn: Any) -> str:
    return json.dumps(openapi(describe(_Outputs(), fn)), sort_keys=True, separators=(",", ":"))


def test_model_outputs_have_cogs_schema() -> None:
    """pydantic models and `cog.BaseModel`s, their fields nested to any depth: the bytes Cog's
    build puts in the image's label (no model names; `required` lists the fields with neither
    a default nor Optional; an Optional field is nullable)."""
    label = _label(_Outputs().pydantic)
    assert (
        '"Output":{"properties":{"extra":{"items":{"type":"integer"},"title":"Extra",'
        '"type":"array"},"note":{"nullable":true,"title":"Note","type":"string"},'
        '"score":{"title":"Score","type":"number"},"tags":{"properties":{"names":{"items":'
        '{"type":"string"},"title":"Names","type":"array"}},"required":["names"],'
        '"title":"Tags","type":"object"},"text":{"title":"Text","type":"string"}},'
        '"required":["text","score","tags"],"title":"Output","type":"object"}' in label
    )
    label = _label(_Outputs().tree)
    assert (
        '"Output":{"properties":{"grid":{"items":{"items":{"type":"integer"},"type":"array"},'
        '"title":"Grid","type":"array"},"leaves":{"items":{"properties":{"x":{"title":"X",'
        '"type":"integer"}},"required":["x"],"type":"object"},"title":"Leaves","type":"array"},'
        '"n":{"title":"N","type":"integer"},"scores":{"additionalProperties":{"items":'
        '{"type":"number"},"type":"array"},"title":"Scores","type":"object"},'
        '"segmented_image":{"format":"uri","nullable":true,"title":"Segmented Image",'
        '"type":"string"}},"required":["leaves","scores","grid"],"title":"Output",'
        '"type":"object"}' in label
    )
    assert (
        '"Output":{"items":{"properties":{"x":{"title":"X","type":"integer"}},"required":["x"],'
        '"type":"object"},"title":"Output","type":"array","x-cog-array-type":"iterator"}'
        in _label(_Outputs().stream)
    )


class _UnionInputs:
    def predict(
        self,
        value: str | float | None = Input(default=None),
        either: Union[int, str] = Input(description="d"),  # noqa: UP007
        shape: list[int] | dict | None = None,  # type: ignore[type-arg]
        path: Path | None = Input(default=None),  # noqa: B008
        files: List[File] | None = Input(default=None),  # noqa: B008, UP006
        bare: Optional[str] = None,  # noqa: UP045
    ) -> str:
        return ""


def test_union_and_optional_inputs_have_cogs_schema_and_validation() -> None:
    from runtime.schema import Inputs

    found = describe(_UnionInputs(), entry_point(_UnionInputs(), "predict"))
    label = json.dumps(openapi(found), sort_keys=True, separators=(",", ":"))
    assert (
        '"value":{"anyOf":[{"nullable":true,"type":"string"},{"nullable":true,"type":"number"}],'
        '"default":null,"nullable":true,"title":"Value","x-order":0}' in label
    )
    assert (
        '"either":{"anyOf":[{"type":"integer"},{"type":"string"}],"description":"d",'
        '"title":"Either","x-order":1}' in label
    )
    assert (
        '"shape":{"anyOf":[{"items":{"type":"integer"},"nullable":true,"type":"array"},'
        '{"nullable":true,"type":"object"}],"default":null,"nullable":true,"title":"Shape"' in label
    )
    assert (
        '"path":{"default":null,"format":"uri","nullable":true,"title":"Path","type":"string"'
        in label
    )
    assert (
        '"files":{"default":null,"items":{"format":"uri","type":"string"},"nullable":true,'
        '"title":"Files","type":"array"' in label
    )
    assert '"required":["either"],"title":"Input"' in label
    inputs = Inputs(found)
    for value in ("s", 1.5, 1):
        values, errors = inputs.validate({"either": "x", "value": value})
        assert errors == [] and values is not None and values["value"] == value
        assert type(values["value"]) is type(value)  # as sent: 1 stays an int
    values, errors = inputs.validate({"either": 2, "shape": {"a": 1}})
    assert errors == [] and values == {
        "value": None,
        "either": 2,
        "shape": {"a": 1},
        "path": None,
        "files": None,
        "bare": None,
    }
    for bad in (
        {"either": True},
        {"either": None},
        {"either": 1.5},
        {},
        {"either": 1, "value": None},  # explicit nulls are refused, as by Cog: omit instead
        {"either": 1, "bare": None},
        {"either": 1, "files": None},
        {"either": 1, "shape": [1, "a"]},
    ):
        _, errors = inputs.validate(bad)
        assert len(errors) == 1, bad


def _refusal(annotation: Any, output: bool = False) -> str:
    def fn(self: Any, x: Any) -> Any:
        return x

    fn.__annotations__ = {"x": str, "return": annotation} if output else {"x": annotation}
    fn.__annotations__.setdefault("return", str)
    with pytest.raises(PredictorError) as refused:
        describe(None, fn)
    return str(refused.value)


def test_signatures_cog_refuses_are_refused_with_cogs_reasons() -> None:
    assert "Path is not supported in union inputs" in _refusal(Path | str)
    assert "File is not supported in union inputs" in _refusal(Union[File, int])  # noqa: UP007
    assert "Secret is not supported in union inputs" in _refusal(Secret | str | None)
    assert "Path is not supported in union inputs" in _refusal(list[Path] | str)
    assert "nested generics like List[Optional[X]]" in _refusal(list[Optional[int]])  # noqa: UP045
    assert "_Leaf" in _refusal(_Leaf) and "output type" in _refusal(_Result)
    assert "Optional is not allowed as a return type" in _refusal(Optional[str], output=True)  # noqa: UP045
    assert "Optional is not allowed as a return type" in _refusal(_Result | None, output=True)
    assert "union types are not supported as output" in _refusal(int | str, output=True)


class _Color(enum.Enum):
    RED = "red"


def test_outputs_are_encoded_as_coglet_does(tmp_path: FsPath) -> None:
    from cog.server.worker import encode

    result = _Result(text="t", score=1, tags=_Tags(names=["a"]))
    assert encode(result, tmp_path) == {
        "text": "t",
        "score": 1.0,
        "tags": {"names": ["a"]},
        "note": None,
        "extra": [],
    }
    tree = _Tree(segmented_image=None, leaves=[_Leaf(x=1)], scores={"a": [0.5]}, grid=[[1]])
    assert encode([tree], tmp_path) == [
        {
            "segmented_image": None,
            "leaves": [{"x": 1}],
            "scores": {"a": [0.5]},
            "grid": [[1]],
            "n": 3,
        }
    ]
    when = datetime.datetime(2024, 1, 2, 3, 4, 5)
    assert encode({"c": _Color.RED, "t": when}, tmp_path) == {
        "c": "red",
        "t": "2024-01-02T03:04:05",
    }


def test_a_typeddicts_not_required_keys_are_optional_fields() -> None:
    """Cog's typeddict_output: `NotRequired[X]` is the field X, left out of `required`; a
    `Required[X]` in a `total=False` dict is required. (Once refused as a type 'NotRequired'.)"""

    class Output(TypedDict):
        name: str
        count: NotRequired[int]

    class Loose(TypedDict, total=False):
        key: Required[str]
        tags: list[str]

    assert describe_output(Output) == {
        "kind": "object",
        "name": "Output",
        "fields": {"name": {"kind": "str"}, "count": {"kind": "int"}},
        "required": ["name"],
    }
    assert describe_output(Loose)["required"] == ["key"]
    assert describe_output(Loose)["fields"]["tags"] == {
        "kind": "list",
        "items": {"kind": "str"},
    }


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("Input(default=1, ge=2, le=10)", "invalid default for input 'x': must be at minimum 2"),
        ("Input(default=11, ge=2, le=10)", "invalid default for input 'x': must be at maximum 10"),
        ("Input(default='long', max_length=3)", "default conflicts with max_length=3"),
        ("Input(default='ABC', regex='^[a-z]+$')", "default not a regex match for input 'x'"),
    ],
)
def test_defaults_their_constraints_refuse_are_errors_as_in_cog(
    field: str, message: str, tmp_path: FsPath
) -> None:
    kind = "int" if "ge=" in field else "str"
    (tmp_path / "predict.py").write_text(
        "from cog import BasePredictor, Input\n\n\n"
        "class Predictor(BasePredictor):\n"
        f"    def predict(self, x: {kind} = {field}) -> str:\n"
        "        return str(x)\n"
    )
    target = load("predict.py:Predictor", tmp_path)
    with pytest.raises(PredictorError) as e:
        describe(target, entry_point(target, "predict"))
    assert str(e.value).startswith(message)

"""Differential: the SDK's richer signatures (pydantic and `cog.BaseModel` outputs, nested
output types, unions and Optional inputs) served by this runtime and by Cog 0.23.1's coglet.

As in test_differential.py, coglet validates against `.cog/openapi_schema.json`, written from
our `/openapi.json`; and here coglet serves that very document back, so what is compared is
what a request sees: status codes, outputs, and where a 422 points. The schema itself is
checked against the bytes Cog's own build writes for these types (test_sdk_compat.py).

Cog's venv has no pydantic: the project folder (the predictor's import path in both servers)
gets links to this checkout's pydantic and its dependencies, the same files for both.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pydantic
import pytest

from tests.runtime.test_differential import REFERENCE, essentials, post
from tests.runtime_server import Server, serve

PREDICTORS = """
import datetime
import enum
from typing import Iterator, List, Optional, TypedDict, Union

from pydantic import BaseModel as PydanticBaseModel

from cog import BaseModel, BasePredictor, File, Input, Path


class Tags(PydanticBaseModel):
    names: List[str]


class Result(PydanticBaseModel):
    name: str
    score: float
    tags: Tags
    many: list[Tags] = []
    note: Optional[str] = None


class Leaf(BaseModel):
    x: int
    when: Optional[str] = None


class Tree(BaseModel):
    leaf: Leaf
    leaves: list[Leaf]
    grid: list[list[int]]
    scores: dict[str, list[float]]
    maybe: Optional[Leaf]
    image: Path


class Color(enum.Enum):
    RED = "red"


class Shape(TypedDict):
    a: int
    b: list[str]


class Pydantic(BasePredictor):
    def predict(self, name: str, score: float = 0.5) -> Result:
        return Result(name=name, score=score, tags=Tags(names=["default"]))


class Nested(BasePredictor):
    def predict(self, n: int = 1) -> Tree:
        image = Path("out.txt")
        image.write_text("hello")
        return Tree(
            leaf=Leaf(x=n),
            leaves=[Leaf(x=1, when="now")],
            grid=[[1, 2], []],
            scores={"a": [0.5]},
            maybe=None,
            image=image,
        )


class Many(BasePredictor):
    def predict(self) -> list[Result]:
        return [Result(name="a", score=1, tags=Tags(names=[]))]


class Stream(BasePredictor):
    def predict(self) -> Iterator[Leaf]:
        yield Leaf(x=1)
        yield Leaf(x=2, when="later")


class Typed(BasePredictor):
    def predict(self) -> Shape:
        return {"a": 1, "b": ["x"]}


class Values(BasePredictor):
    def predict(self) -> dict:
        return {"color": Color.RED, "at": datetime.datetime(2024, 1, 2, 3, 4, 5)}


class Unions(BasePredictor):
    def predict(
        self,
        value: str | float | None = Input(default=None),
        either: Union[int, str] = Input(description="required: a union has no implicit None"),
        shape: list[int] | str | None = None,
        text: str | None = Input(description="text", default=None),
        count: Optional[int] = None,
        bare: Optional[str] = Input(description="no default"),
        path: Path | None = Input(default=None),
        file: File | None = Input(default=None),
        paths: list[Path] | None = Input(default=None),
        files: list[File] | None = Input(default=None),
        greeting: Optional[str] = Input(default="hi"),
    ) -> str:
        seen = [value, either, shape, text, count, bare, greeting]
        shown = [f"{type(v).__name__}:{v}" for v in seen]
        if path is not None:
            shown.append("path:" + path.read_text())
        if file is not None:
            shown.append("file:" + file.read().decode())
        for p in paths or []:
            shown.append("paths:" + p.read_text())
        for f in files or []:
            shown.append("files:" + f.read().decode())
        return " ".join(shown)


class NoDefault(BasePredictor):
    def predict(self, value: Optional[str]) -> str:
        return f"type={type(value).__name__} value={value}"
"""

PYDANTIC = ("pydantic", "pydantic_core", "annotated_types", "typing_inspection")


@contextmanager
def both(name: str, tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    python = REFERENCE / "bin" / "python"
    if not python.exists():
        pytest.fail(f"Cog 0.23.1 is not installed at {REFERENCE}; run `make test-fixtures`")
    project = tmp_path / name
    project.mkdir()
    (project / "predict.py").write_text(PREDICTORS)
    site = Path(pydantic.__file__).parent.parent
    for package in PYDANTIC:
        (project / package).symlink_to(site / package)
    (project / "typing_extensions.py").symlink_to(site / "typing_extensions.py")
    ref = f"predict.py:{name}"
    with serve(ref, cwd=project) as ours:
        schema = ours.http.get("/openapi.json")
        assert schema.status_code == 200
        (project / ".cog").mkdir()
        (project / ".cog" / "openapi_schema.json").write_text(schema.text)
        env = {"PATH": f"{REFERENCE / 'bin'}:{os.environ['PATH']}"}
        with serve(ref, cwd=project, env=env, python=str(python), ours=False) as theirs:
            assert theirs.http.get("/openapi.json").json() == schema.json()
            yield ours, theirs


def same(ours: Server, theirs: Server, inputs: dict[str, object]) -> dict[str, object]:
    a = essentials(post(ours, {"input": inputs}))
    b = essentials(post(theirs, {"input": inputs}))
    assert a == b, f"for {inputs}: ours {a} != Cog's {b}"
    return a


def test_pydantic_models_are_encoded_with_model_dump(tmp_path: Path) -> None:
    with both("Pydantic", tmp_path) as (ours, theirs):
        out = same(ours, theirs, {"name": "alice", "score": 0.95})["output"]
        assert out == {
            "name": "alice",
            "score": 0.95,
            "tags": {"names": ["default"]},
            "many": [],
            "note": None,
        }
        assert same(ours, theirs, {"name": "alice", "score": "high"})["code"] == 422
    with both("Many", tmp_path) as (ours, theirs):
        assert same(ours, theirs, {})["output"] == [
            {"name": "a", "score": 1.0, "tags": {"names": []}, "many": [], "note": None}
        ]


def test_nested_outputs_typeddicts_enums_and_datetimes(tmp_path: Path) -> None:
    with both("Nested", tmp_path) as (ours, theirs):
        out = same(ours, theirs, {"n": 7})["output"]
        assert out == {
            "leaf": {"x": 7, "when": None},
            "leaves": [{"x": 1, "when": "now"}],
            "grid": [[1, 2], []],
            "scores": {"a": [0.5]},
            "maybe": None,
            "image": "data:text/plain;base64,aGVsbG8=",
        }
    with both("Stream", tmp_path) as (ours, theirs):
        out = same(ours, theirs, {})["output"]
        assert out == [{"x": 1, "when": None}, {"x": 2, "when": "later"}]
    with both("Typed", tmp_path) as (ours, theirs):
        assert same(ours, theirs, {})["output"] == {"a": 1, "b": ["x"]}
    with both("Values", tmp_path) as (ours, theirs):
        assert same(ours, theirs, {})["output"] == {"color": "red", "at": "2024-01-02T03:04:05"}


def test_union_and_optional_inputs(tmp_path: Path) -> None:
    data = "data:text/plain;base64,aGk="
    with both("Unions", tmp_path) as (ours, theirs):
        out = same(ours, theirs, {"either": 1})["output"]
        assert (
            out
            == "NoneType:None int:1 NoneType:None NoneType:None NoneType:None NoneType:None str:hi"
        )
        # JSON-native members, each as sent: an integer stays an integer for `str | float`
        for value, shown in (("hello", "str:hello"), (1.5, "float:1.5"), (1, "int:1")):
            assert str(same(ours, theirs, {"either": "x", "value": value})["output"]).startswith(
                shown
            )
        assert "list:[1, 2]" in str(same(ours, theirs, {"either": 2, "shape": [1, 2]})["output"])
        files = same(ours, theirs, {"either": 1, "path": data, "file": data, "paths": [data, data]})
        assert str(files["output"]).endswith("path:hi file:hi paths:hi paths:hi")
        assert str(same(ours, theirs, {"either": 1, "files": [data]})["output"]).endswith(
            "files:hi"
        )
        refused = [
            {"either": 1, "value": True},  # a boolean is not a member of str | float
            {"either": 1, "value": {"x": 1}},
            {"either": 1.5},
            {"either": None},  # an explicit null is refused, union or not ...
            {"either": 1, "value": None},
            {"either": 1, "text": None},
            {"either": 1, "count": None},
            {"either": 1, "bare": None},
            {"either": 1, "path": None},
            {"either": 1, "paths": None},
            {"either": 1, "greeting": None},
            {"either": 1, "shape": [1, "a"]},
            {"either": 1, "count": "many"},
            {},  # ... and a union without a default is required, even with None in it
        ]
        for inputs in refused:
            assert same(ours, theirs, inputs)["code"] == 422, inputs
    with both("NoDefault", tmp_path) as (ours, theirs):
        assert same(ours, theirs, {})["output"] == "type=NoneType value=None"
        assert same(ours, theirs, {"value": "x"})["output"] == "type=str value=x"
        assert same(ours, theirs, {"value": None})["code"] == 422

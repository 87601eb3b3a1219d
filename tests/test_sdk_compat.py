"""Names Cog's SDK retired but real models still import: they keep working, and say once, on
stderr, what to use instead."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path as FsPath
from typing import Any, Dict, List, TypedDict  # noqa: UP035 (the typing spellings models use)

import pytest

from cog import Input, Path
from cog.server.signature import PredictorError, describe, entry_point, load
from runtime.schema import openapi
from tests.conftest import REPO

MODEL = """
import warnings
import cog
from cog import ExperimentalFeatureWarning, emit_metric

warnings.filterwarnings("ignore", category=ExperimentalFeatureWarning)
assert issubclass(ExperimentalFeatureWarning, Warning)
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
    assert config.predict == "run.py:Runner" and config.build.python_version == "3.11"
    sys.path.insert(0, str(tmp_path))
    try:
        runner = load("run.py:Runner", tmp_path)
        found = describe(runner, entry_point(runner, "run"))
    finally:
        sys.path.remove(str(tmp_path))
    assert [i["name"] for i in found["inputs"]] == ["image", "scale"]
    again = init()
    assert again.returncode == 0 and "Creating" not in again.stderr

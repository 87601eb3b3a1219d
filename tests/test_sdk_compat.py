"""Names Cog's SDK retired but real models still import: they keep working, and say once, on
stderr, what to use instead."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cog import Input, Path
from cog.server.signature import PredictorError, describe, entry_point
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

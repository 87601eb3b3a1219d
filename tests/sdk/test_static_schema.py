"""Cog's static schema rules (COG_STATIC_SCHEMA=1): what `default=None` means per type."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cog.server import signature
from runtime.openapi import openapi, static_rules
from tests.conftest import REPO

PREDICTOR = """\
from typing import Optional

from cog import BasePredictor, Input, Secret


class Predictor(BasePredictor):
    def predict(
        self,
        prompt: str = Input(description="Text prompt"),
        api_key: Secret = Input(description="optional", default=None),
        api_key_required: Secret = Input(description="required"),
        seed: int = Input(description="Random seed", default=None),
        maybe: Optional[int] = Input(default=None),
        steps: int = Input(default=4),
    ) -> str:
        return prompt
"""


def _input_schema(tmp_path: Path, static: bool) -> dict[str, object]:
    (tmp_path / "predict.py").write_text(PREDICTOR)
    target = signature.load("predict.py:Predictor", tmp_path)
    described = signature.describe(target, signature.entry_point(target, "predict"))
    document = openapi(described)
    if static:
        document = static_rules(document)
    schema: dict[str, object] = document["components"]["schemas"]["Input"]
    return schema


def test_static_rules_make_seed_required_and_an_optional_secret_nullable(
    tmp_path: Path,
) -> None:
    schema = _input_schema(tmp_path, static=True)
    props = schema["properties"]
    assert isinstance(props, dict)
    assert schema["required"] == ["prompt", "api_key_required", "seed"]
    assert props["api_key"]["nullable"] is True and props["api_key"]["default"] is None
    assert "default" not in props["seed"] and "nullable" not in props["seed"]
    assert props["maybe"]["nullable"] is True and props["maybe"]["default"] is None
    assert props["steps"]["default"] == 4


def test_without_static_rules_the_runtime_schema_is_unchanged(tmp_path: Path) -> None:
    schema = _input_schema(tmp_path, static=False)
    props = schema["properties"]
    assert isinstance(props, dict)
    assert schema["required"] == ["prompt", "api_key_required"]
    assert props["seed"]["default"] is None and "nullable" not in props["api_key"]


def test_the_label_writer_needs_only_the_standard_library(tmp_path: Path) -> None:
    """Every build runs `python -I -m runtime.openapi` in the image's runtime environment; the
    server's validator (pydantic) is not needed there, and importing it cost most of the run."""
    sig = tmp_path / "signature.json"
    sig.write_text('{"inputs": [], "output": {"kind": "str"}}')
    probe = (
        "import runpy, sys; sys.argv = ['openapi', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('runtime.openapi', run_name='__main__')\n"
        "except SystemExit as e:\n    assert e.code == 0, e.code\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'cog')))"
    )
    out = tmp_path / "openapi.json"
    done = subprocess.run(
        [sys.executable, "-c", probe, str(sig), str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert json.loads(out.read_text())["components"]["schemas"]["Output"]["type"] == "string"

"""Names Cog's SDK retired but real models still import: they keep working, and say once, on
stderr, what to use instead."""

from __future__ import annotations

import subprocess
import sys

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

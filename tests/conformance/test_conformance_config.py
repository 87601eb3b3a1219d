"""cog.yaml, checked by difference with Cog: every case generated from Cog's JSON schema (every
field, every JSON type, null, the empty value, an unknown key) and from its rules is loaded by
our loader and answered as Cog answers it (tests/conformance/cog_config_oracle.py reproduces
Cog's decoder, its schema validator and validate.go from Cog's own data, cog_config.json):
accepted by both, or refused by both with one of Cog's own sentences. A difference is a failure
unless tests/conformance/config_allowlist.py explains it.

Cog's data: replicate/cog at the commit cog_config.json records (the mirror holds v0.22.0 and
five commits after it); `python -m tests.conformance.extract_cog GIT_DIR` refreshes it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conformance import config_compare, report
from tests.conformance.cog_config_oracle import DATA
from tests.conformance.config_cases import cases
from tests.conformance.config_compare import Row, compare, project_files
from tests.conftest import REPO

CASES = {case.id: case for case in cases()}


@pytest.fixture(scope="module")
def rows() -> dict[str, Row]:
    """Every case, loaded by Cog (the oracle) and by us, once."""
    return {row.case.id: row for row in config_compare.compare_all()}


@pytest.mark.parametrize("case_id", list(CASES))
def test_each_case_is_answered_as_cog_answers_it(rows: dict[str, Row], case_id: str) -> None:
    row = rows[case_id]
    assert row.outcome != "differs", (
        f"{case_id}\n{row.case.text}\nCog:  {row.cog.lines or 'accepted'}\nours: {row.ours_text}"
    )


def test_the_allowlist_holds_only_differences_that_exist(rows: dict[str, Row]) -> None:
    assert config_compare.stale_allowances(list(rows.values())) == []


def test_the_report_is_current(rows: dict[str, Row]) -> None:
    assert report.CONFIG_REPORT.read_text() == report.render_config(list(rows.values())), (
        "docs/conformance/cog-yaml.md is stale: run `python -m tests.conformance.report`"
    )


def test_a_case_is_loaded_from_its_own_project(tmp_path: Path) -> None:
    """The comparison is no artefact of the shared project: one case, compared again in a
    project of its own, gives the same answer."""
    project = project_files(tmp_path)
    row = compare(CASES["rule: python_requirements missing"], project)
    assert row.outcome == "same" and row.ours == (
        'invalid build.python_requirements "missing.txt": file does not exist'
    )


def test_the_cases_cover_every_field_of_cogs_schema() -> None:
    """Every property of the schema is a place some case puts values into."""
    places = {".".join(str(p) for p in c.path if not isinstance(p, int)) for c in CASES.values()}

    def properties(schema: dict, prefix: str = "") -> set[str]:
        found = set()
        if "$ref" in schema:
            schema = DATA["schema"]["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
        for name, sub in schema.get("properties", {}).items():
            found |= {prefix + name} | properties(sub, f"{prefix}{name}.")
        branches = [*([schema["items"]] if "items" in schema else []), *schema.get("oneOf", [])]
        branches += schema.get("anyOf", [])
        for branch in branches:
            found |= properties(branch, prefix)
        return found

    assert properties(DATA["schema"]) - places == set()
    assert DATA["cog"]["repository"] == "replicate/cog" and len(DATA["cog"]["commit"]) == 40


def test_the_command_line_says_what_the_loader_says(tmp_path: Path) -> None:
    """Through `cog debug` (which loads cog.yaml and builds nothing): a refusal is the
    loader's sentence with its hint, and what Cog's decoder reads leniently is accepted."""
    project_files(tmp_path)
    (tmp_path / "cog.yaml").write_text(CASES["rule: mount of type cache"].text)
    done = _cog_debug(tmp_path)
    assert (done.returncode, done.stderr) == (
        1,
        'error: cog.yaml: schema error in "build.run.1.mounts.0.type": '
        'build.run.1.mounts.0.type must be one of the following: "secret"\n'
        "hint: fix cog.yaml and retry\n",
    )
    (tmp_path / "cog.yaml").write_text(
        "build:\n  python_version: 3.10\n  gpu: no\n  system_packages: [~]\n"
        "image: 42\npredict: predict.py:Predictor\n"
    )
    done = _cog_debug(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "python3.10" in done.stdout or "3.10" in done.stdout


def _cog_debug(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cog.cli.main", "debug"],
        cwd=root,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin", "COG_STORE_DIR": str(root / "store")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

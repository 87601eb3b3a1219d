"""The build-time schema, checked by difference with Cog's static generator: every case made
from Cog's own data (tests/conformance/cog_schema.json: its integration scripts, its parser's
unit tests, every refusal sentence of its generator, every primitive type of its table) is
answered by ours (cog.project.static_schema, as `cog build` runs it) as Cog answers it:
accepted with a document that matches Cog's patterns and types, or refused with Cog's
sentence. A difference is a failure unless tests/conformance/schema_allowlist.py explains it.

Cog's data: replicate/cog at the commit cog_schema.json records;
`python -m tests.conformance.extract_surface GIT_DIR` refreshes it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cog.project.static_schema.generate import generate_combined
from tests.conformance import schema_allowlist, schema_compare, surface_report
from tests.conformance.schema_cases import DATA, cases, message_id, trigger_for

CASES = {case.id: case for case in cases()}


@pytest.fixture(scope="module")
def rows() -> dict[str, schema_compare.Row]:
    return {row.case.id: row for row in schema_compare.compare_all()}


@pytest.mark.parametrize("case_id", list(CASES))
def test_each_case_is_answered_as_cog_answers_it(
    rows: dict[str, schema_compare.Row], case_id: str
) -> None:
    row = rows[case_id]
    assert row.outcome != "differs", f"{case_id}\nCog:  {row.cog}\nours: {row.ours}"


def test_every_sentence_cog_can_refuse_with_has_a_case() -> None:
    """Each refusal Cog's generator raises is set off by a case, or no project reaches it
    (and the allowlist says why)."""
    missing = [
        message_id(m)
        for m in DATA["messages"]
        if m["raised"]
        and trigger_for(m) is None
        and schema_allowlist.unreachable(message_id(m)) is None
    ]
    assert missing == []
    assert len(DATA["messages"]) > 60 and len(DATA["unit_cases"]) > 150


def test_the_allowlist_holds_only_differences_that_exist(
    rows: dict[str, schema_compare.Row],
) -> None:
    assert schema_compare.stale_allowances(list(rows.values())) == []


def test_the_report_is_current(rows: dict[str, schema_compare.Row]) -> None:
    assert surface_report.SCHEMA_REPORT.read_text() == surface_report.render_schema(
        list(rows.values())
    ), "docs/conformance/schema.md is stale: run `python -m tests.conformance.surface_report`"


def test_the_document_is_cogs_byte_for_byte(tmp_path: Path) -> None:
    """Integration script build_openapi_schema's predictor: the label's bytes keep Cog's key
    order (its ordered maps in their order, its plain maps sorted) and Go's number forms."""
    (tmp_path / "predict.py").write_text(
        "from cog import BasePredictor, Input, Path\n\n"
        "class Predictor(BasePredictor):\n"
        "    def run(self, text: str, scale: float = Input(default=1.0, ge=0.0)) -> Path:\n"
        "        pass\n"
    )
    label = generate_combined(tmp_path, "predict.py:Predictor", None, "0.22.0")
    assert label.startswith('{"components":{"schemas":{"Input":{"properties":{"text":{')
    assert '"scale":{"default":1,"minimum":0,"title":"Scale","type":"number","x-order":1}' in label
    assert '"Output":{"format":"uri","title":"Output","type":"string"}' in label
    assert label.endswith('"summary":"Cancel"}}}}')
    assert json.loads(label)["info"]["version"] == "0.22.0"


def test_predict_and_train_merge_as_cogs_does(tmp_path: Path) -> None:
    """Both in cog.yaml: Cog merges the two documents and writes the result indented."""
    source = "from cog import BasePredictor\n\nclass P(BasePredictor):\n"
    (tmp_path / "predict.py").write_text(
        source + "    def run(self, a: int) -> int:\n        pass\n"
    )
    (tmp_path / "train.py").write_text(
        source + "    def train(self, b: str) -> str:\n        pass\n"
    )
    label = generate_combined(tmp_path, "predict.py:P", "train.py:P", "0.22.0")
    assert label.startswith('{\n  "components": {\n    "schemas": {\n')
    document = json.loads(label)
    assert {"Input", "TrainingInput", "Output", "TrainingOutput"} <= set(
        document["components"]["schemas"]
    )
    assert {"/predictions", "/trainings"} <= set(document["paths"])

"""The image's labels and config against Cog's: every label `cog build` sets and every config
item its Dockerfile generator writes (tests/conformance/cog_image.json, read from Cog's source
by tests/conformance/extract_surface.py) has a check of ours in
tests/conformance/image_compare.py, with the same meaning or a reason why not; one build of
examples/hello-world runs every check (slow tier), and docs/conformance/image.md is current."""

from __future__ import annotations

from pathlib import Path

from cog.project.static_schema.generate import generate_combined
from store.oci import Layout
from tests.conformance import image_compare, surface_report
from tests.projects import cog, project


def test_every_item_of_cogs_image_has_a_check() -> None:
    rows = image_compare.rows_from_saved()
    assert [r.item for r in rows if r.outcome == "differs"] == []
    labels = {r.item for r in rows if r.item.startswith("label ")}
    assert {
        "label run.cog.version",
        "label run.cog.openapi_schema",
        "label run.cog.config",
    } <= labels
    assert all(r.reason for r in rows if r.outcome == "allowed")


def test_the_report_is_current() -> None:
    assert surface_report.IMAGE_REPORT.read_text() == surface_report.render_image(
        image_compare.rows_from_saved()
    ), "docs/conformance/image.md is stale: run `python -m tests.conformance.surface_report`"


def test_a_built_image_holds_what_the_table_says(offline: dict[str, str], tmp_path: Path) -> None:
    root = project("hello-world", tmp_path)
    layout = tmp_path / "oci"
    built = cog(root, offline, "build", "--output", f"oci:{layout}")
    assert built.returncode == 0, built.stderr[-2000:]
    import cog as sdk

    image = image_compare.Built(
        config=Layout.open(layout).config(),
        project=root,
        cog_version=sdk.__version__,
        schema=generate_combined(root, "predict.py:Predictor", None, sdk.__version__),
        predict="predict.py:Predictor",
    )
    assert image_compare.failed_checks(image) == []

"""Progress on long builds: bytes done of a total and the time left, from the builder itself."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from builders import progress
from builders.image import layer_derivation
from builders.progress import PlainReporter, RichReporter
from builders.realise import realise
from derivations.model import SrcInput
from store.local import Store

BIG = 80 << 20  # above the floor below which a build gets no bar


def test_compressing_a_large_layer_reports_bytes_and_time_left(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = tmp_path / "weights"
    tree.mkdir()
    with open(tree / "model.bin", "wb") as f:
        f.truncate(BIG)  # zeros: compressed fast, counted in full
    path = store.add(tree, "weights")
    monkeypatch.setattr(progress, "PLAIN_EVERY", 0.0)  # every report becomes a line
    log = io.StringIO()
    drv = layer_derivation([(SrcInput(path=str(path)), "/weights")], "gzip", False)
    realise(store, [drv], reporter=PlainReporter(log))
    lines = re.findall(
        r"  oci-layer: ([\d.]+) MB of ([\d.]+) MB, about (\d+)s left", log.getvalue()
    )
    assert lines, log.getvalue()
    total = store.info(path).tar_size
    assert {float(t) for _, t, _ in lines} == {round(total / 1e6, 1)}
    done = [float(d) for d, _, _ in lines]
    assert done == sorted(done) and done[-1] == round(total / 1e6, 1)


def test_small_builds_get_no_progress_lines(store: Store, tmp_path: Path) -> None:
    tree = tmp_path / "code"
    tree.mkdir()
    (tree / "predict.py").write_text("x = 1\n")
    log = io.StringIO()
    drv = layer_derivation([(SrcInput(path=str(store.add(tree, "code"))), "/src")], "gzip", False)
    realise(store, [drv], reporter=PlainReporter(log))
    assert "left" not in log.getvalue() and "built oci-layer" in log.getvalue()


def test_the_terminal_shows_a_bar_of_bytes_while_a_build_runs() -> None:
    reporter = RichReporter()
    reporter.plan(2, 2)
    reporter.started("oci-layer")
    reporter.progress("oci-layer", 10 << 20, BIG)
    [bar] = [t for t in reporter.bars.tasks if t.id != reporter.task]
    assert (bar.completed, bar.total) == (10 << 20, BIG)
    assert bar.fields["amount"] == "10.5 MB of 83.9 MB"
    reporter.progress("oci-layer", BIG, BIG)
    assert bar.completed == BIG
    reporter.progress("small", 1, 1000)  # below the floor: no bar
    reporter.finished("oci-layer", 1.0)
    assert [t.fields["amount"] for t in reporter.bars.tasks] == ["1/2"]  # the bar is gone
    reporter.close()

"""Cog's own integration scripts, a fixed fast subset (tests/cogsuite/tests, see its NOTICE),
run by the conformance runner against this checkout's CLI, offline: the Debian channel on the
frozen mirror, PyPI replaced by the wheel cache (COG_PYPI_MIRROR). A script that passed and
now fails is a regression in what a Cog user sees. The whole suite (154 scripts, ~2 hours) is
run by hand: `python3 ../shared/cogsuite/run.py --cog .venv/bin/cog --mode B --dockerd`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, TEST_CACHE

SUITE = REPO / "tests" / "cogsuite"


def test_cogs_own_scripts_pass(offline: dict[str, str], tmp_path: Path) -> None:
    cog = tmp_path / "cog"  # the CLI as a user runs it; scripts get only the variables named
    cog.write_text(f'#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m cog.cli.main "$@"\n')
    cog.chmod(0o755)
    results, logs = tmp_path / "results.tsv", tmp_path / "logs"
    env = offline | {"COG_PYPI_MIRROR": str(TEST_CACHE / "wheels")}
    env.pop("DOCKER_HOST", None)  # these scripts need no engine
    argv = [sys.executable, str(SUITE / "run.py"), "--cog", str(cog), "--mode", "B"]
    argv += ["--store", env["COG_STORE_DIR"], "--results", str(results), "--logs", str(logs)]
    argv += ["--work-root", str(tmp_path / "work"), "--timeout", "300"]
    for name in ("COG_CHANNEL_PATH", "COG_PYPI_MIRROR", "UV_CACHE_DIR"):  # the offline sources
        argv += ["--pass-env", name]
    ran = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800, check=False)
    rows = [line.split("\t") for line in results.read_text().splitlines()[1:]]
    scripts = sorted(p.stem for p in (SUITE / "tests").glob("*.txtar"))
    assert sorted(row[0] for row in rows) == scripts, ran.stdout[-3000:] + ran.stderr[-3000:]
    failed = [row for row in rows if row[1] != "PASS"]
    details = [
        f"{row[0]}: {row[3]} {row[5]}\n{(logs / f'{row[0]}.log').read_text()[-2500:]}"
        for row in failed
    ]
    assert not failed, "\n\n".join(details)

"""Example projects run offline: copies whose requirements use the wheel cache, and the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, TEST_CACHE

EXAMPLES = REPO / "examples"
WHEELS = TEST_CACHE / "wheels"


def project(name: str, into: Path) -> Path:
    """A copy of the example whose requirements resolve from the wheel cache."""
    root = into / name
    shutil.copytree(EXAMPLES / name, root, ignore=shutil.ignore_patterns(".cog", "cog.lock"))
    requirements = root / "requirements.txt"
    if requirements.exists():
        requirements.write_text(f"--no-index\n--find-links {WHEELS}\n" + requirements.read_text())
    return root


def cog(
    root: Path, env: dict[str, str], *args: str, umask: int | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "cog.cli.main", *args]
    preexec = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.run(
        command,
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        preexec_fn=preexec,
    )

"""Example projects run offline: copies whose requirements use the wheel cache, and the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, TEST_CACHE
from tests.wheel_cache import check

EXAMPLES = REPO / "examples"
WHEELS = TEST_CACHE / "wheels"


def project(name: str, into: Path) -> Path:
    """A copy of the example whose Python packages, the runtime's included, resolve from the
    wheel cache alone. A project without requirements.txt gets the index options as its
    python_packages, since the runtime is resolved from the indexes the project names (and
    from PyPI when it names none, which would make the tests depend on the day)."""
    check(WHEELS)  # exactly the pinned wheels: an extra one would change what ranges resolve to
    root = into / name
    shutil.copytree(EXAMPLES / name, root, ignore=shutil.ignore_patterns(".cog", "cog.lock"))
    requirements = root / "requirements.txt"
    index = ["--no-index", f"--find-links {WHEELS}"]
    if requirements.exists():
        requirements.write_text("".join(f"{line}\n" for line in index) + requirements.read_text())
    else:  # the index options first in python_packages, a list of its own where there is none
        config = root / "cog.yaml"
        text = config.read_text()
        if "  python_packages:\n" in text:
            items = "".join(f"    - {json.dumps(line)}\n" for line in index)
            text = text.replace("  python_packages:\n", f"  python_packages:\n{items}", 1)
        else:
            packages = f"  python_packages: {json.dumps(index)}\n"
            text = text.replace("build:\n", f"build:\n{packages}", 1)
        config.write_text(text)
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

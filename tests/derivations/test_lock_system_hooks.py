"""Lock-time sdist hooks run over the project's root, as pip runs after apt under Cog.

An sdist whose metadata hook needs a system package (manimpango asks pkg-config for
pangocairo) locks when cog.yaml lists that package in `system_packages`, and fails in one
sentence that says where to add it when it does not. Offline: the package is libjq-dev from
the frozen Debian mirror (its jq.h, which this host does not have), the sdist is made here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.builders.test_sdist import sdist_project
from tests.conftest import TEST_CACHE
from tests.projects import cog
from tests.wheels import make_sdist

# As manimpango's setup.py fails without pangocairo: a header of the system package it needs.
SETUP = """\
import os
from setuptools import setup

if not os.path.isfile("/usr/include/jq.h"):
    raise RuntimeError("jq.h is required: install libjq-dev")
setup(name="jqbind", version="0.1", py_modules=["jqbind"])
"""


def jq_sdist(into: Path) -> Path:
    """jqbind 0.1: an sdist with no PKG-INFO, so its metadata is known only by running it."""
    make_sdist(into, "jqbind-0.1", {"setup.py": SETUP, "jqbind.py": "HEADER = 'jq.h'\n"})
    return into


def jq_project(tmp_path: Path, name: str, system_packages: list[str]) -> Path:
    links = jq_sdist(tmp_path / f"{name}-links")
    root = sdist_project(tmp_path, name, [f"--find-links {links}", "jqbind==0.1"])
    config = root / "cog.yaml"
    config.write_text(
        config.read_text().replace("build:\n", f"build:\n  system_packages: {system_packages}\n", 1)
    )
    return root


@pytest.fixture(scope="module")
def libjq_dev() -> None:
    """The mirror copy of an older `make test-fixtures` lacks libjq-dev: say so, not a 404."""
    pool = TEST_CACHE / "debian-mirror" / "debian-security" / "pool" / "updates" / "main" / "j"
    if not any(pool.glob("jq/libjq-dev_*.deb")):
        pytest.fail("the Debian test mirror has no libjq-dev; run `make test-fixtures`")


def test_a_hook_finds_what_system_packages_install(
    offline: dict[str, str], libjq_dev: None, tmp_path: Path
) -> None:
    assert not Path("/usr/include/jq.h").exists()  # so the host's root could not pass this
    root = jq_project(tmp_path, "with", ["libjq-dev"])
    locked = cog(root, offline, "lock")
    assert locked.returncode == 0, locked.stderr[-3000:]
    lock = json.loads((root / "cog.lock").read_text())
    [pin] = [p for p in lock["python_packages"] if p["name"] == "jqbind"]
    assert pin["url"].endswith("jqbind-0.1.tar.gz")
    # The backend's get_requires hook ran there too (it runs setup.py): its answer is pinned.
    assert {"setuptools", "wheel"} <= {w["name"] for w in pin["build_requires"]}
    assert "libjq-dev" in {p["name"] for p in lock["system"]["packages"]}
    assert "gcc" in {p["name"] for p in lock["system"]["toolchain"]}


def test_a_hook_without_its_system_package_says_where_to_add_it(
    offline: dict[str, str], tmp_path: Path
) -> None:
    root = jq_project(tmp_path, "without", [])
    locked = cog(root, offline, "lock")
    assert locked.returncode == 1
    error, hint = locked.stderr.strip().splitlines()[-2:]
    assert error.startswith("error: the Python requirements cannot be resolved")
    assert "Failed to build `jqbind==0.1`" in error
    assert "RuntimeError: jq.h is required: install libjq-dev" in error
    assert hint.startswith("hint: a package published only as a source distribution")
    assert "over the project's root" in hint and "build.system_packages" in hint
    assert len(error) < 800  # uv's words on one line, cut where they run long
    assert not (root / "cog.lock").exists()

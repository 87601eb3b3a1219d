"""Python versions: Cog's rules, and a Python 3.13 project on Debian trixie, end to end.

Offline: the trixie channel points at the frozen Debian mirror (`make test-fixtures` copies
trixie's signed indexes and the .debs of its Python 3.13 userland), the runtime's wheels come
from the wheel cache (its pins include the cp313 builds).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.projects import cog, project

VERSION_PREDICTOR = """\
import sys
import sysconfig

from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self, text: str) -> str:
        return f"{text} {sys.version.split()[0]} {sysconfig.get_config_var('MULTIARCH')}"
"""


def python313_project(tmp_path: Path) -> Path:
    root = project("hello-world", tmp_path)
    config = root / "cog.yaml"
    config.write_text(
        config.read_text().replace('python_version: "3.11"', 'python_version: "3.13"')
    )
    (root / "predict.py").write_text(VERSION_PREDICTOR)
    return root


def test_python_313_on_trixie_locks_builds_and_predicts(
    offline: dict[str, str], tmp_path: Path
) -> None:
    root = python313_project(tmp_path)
    locked = cog(root, offline, "lock")
    assert locked.returncode == 0, locked.stderr[-2000:]
    lock = json.loads((root / "cog.lock").read_text())
    # No channel asked for: the one whose Debian ships 3.13.
    assert lock["inputs"]["channel"]["name"] == "debian-trixie"
    assert lock["python"] == {"source": "debian", "version": "3.13"}
    assert lock["platform"]["glibc"] == "2.41"
    assert "python3.13" in {p["name"] for p in lock["system"]["python"]}
    assert any("cp313" in w["url"] for w in lock["runtime_packages"])  # pydantic-core's build
    # 3.12 stopped shipping setuptools, in Cog's images too.
    assert "setuptools" not in {p["name"] for p in lock["python_packages"]}

    ran = cog(root, offline, "run", "-i", "text=hi")
    assert ran.returncode == 0, ran.stderr[-2000:]
    version, multiarch = ran.stdout.split()[1:]
    assert version.startswith("3.13.") and multiarch == "x86_64-linux-gnu"

    built = cog(root, offline, "build", "-t", "py313", "--no-docker-load")
    assert built.returncode == 0, built.stderr[-2000:]
    again = cog(tmp_path, offline, "run", "py313", "-i", "text=image")
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.startswith("image 3.13.")


PKG_RESOURCES_PREDICTOR = """\
import pkg_resources  # as lightning 2.1 does, without naming setuptools

from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self) -> str:
        return pkg_resources.get_distribution("setuptools").version
"""


def test_setuptools_is_there_on_311_as_in_cogs_images(
    offline: dict[str, str], tmp_path: Path
) -> None:
    """Cog's Python 3.11 (python:3.11-slim, python-build-standalone) ships setuptools, so
    models import pkg_resources unnamed: it is locked beside the model's packages, at the
    last version that has pkg_resources, and a version the requirements name wins."""
    root = project("hello-world", tmp_path)
    (root / "predict.py").write_text(PKG_RESOURCES_PREDICTOR)
    ran = cog(root, offline, "run")
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.strip() == "81.0.0"
    config = yaml.safe_load((root / "cog.yaml").read_text())
    config["build"]["python_packages"].append("setuptools==84.2.1")
    (root / "cog.yaml").write_text(yaml.safe_dump(config))
    assert cog(root, offline, "lock").returncode == 0
    lock = json.loads((root / "cog.lock").read_text())
    assert [p["version"] for p in lock["python_packages"] if p["name"] == "setuptools"] == [
        "84.2.1"
    ]


def test_cog_words_for_python_versions(offline: dict[str, str], tmp_path: Path) -> None:
    root = python313_project(tmp_path)
    config = root / "cog.yaml"
    cases = {
        'python_version: "3.8"': 'invalid build.python_version "3.8": '
        "minimum supported Python version is 3.10",
        'python_version: "3"': "must include major and minor version (e.g., '3.11')",
        "gpu: false": "python_version is required. Add it to the build section of your "
        'cog.yaml, e.g. `python_version: "3.13"`',
        'python_version: "3.14"': "channel debian-bookworm has no Python 3.14",
    }
    for line, message in cases.items():
        config.write_text(f"build:\n  {line}\npredict: predict.py:Predictor\n")
        result = cog(root, offline, "build")
        assert result.returncode == 1, line
        assert message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr

"""`cog debug`: the build as a Dockerfile (Cog's hidden command), and derivations as data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from builders.command import command_derivation
from derivations import SrcInput, drv_path, output_path, write_drv
from store.local import Store
from store.paths import StorePath
from tests.conftest import CogResult, make_tree
from tests.derivations.test_lock import FULL_LOCK, text_of

Cog = Callable[..., CogResult]

COG_YAML = """\
build:
  python_version: "3.12"
  gpu: true
  system_packages: [ffmpeg, libgl1]
  python_requirements: requirements.txt
  run:
    - echo hello world
    - command: >-
        echo shh
      mounts:
        - type: secret
          id: foo
          target: secret.txt
    - |
      set -e
      echo two lines
predict: "predict.py:Predictor"
"""


def debug(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cog.cli.main", "debug", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_debug_prints_the_build_as_a_dockerfile(tmp_path: Path) -> None:
    project = make_tree(
        tmp_path / "p", {"cog.yaml": COG_YAML, "requirements.txt": "numpy==2.1.3\n"}
    )
    result = debug(project, "--use-cog-base-image")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "#syntax=docker/dockerfile:1.4"
    # CUDA comes as NVIDIA's wheels on a Python base image, as cog-hermetic builds it.
    assert "FROM python:3.12-slim" in lines and not any("nvidia/cuda" in x for x in lines)
    assert "ENV NVIDIA_DRIVER_CAPABILITIES=all" in lines
    assert "RUN apt-get update -qq && apt-get install -qqy ffmpeg libgl1" in lines
    assert "RUN pip install --no-cache-dir -r /tmp/requirements.txt" in lines
    assert "RUN pip install --no-cache-dir cog==0.23.1" in lines
    assert "RUN echo hello world" in lines
    assert "RUN --mount=type=secret,id=foo,target=secret.txt echo shh" in lines
    assert "RUN <<'EOF'\nset -e\necho two lines\nEOF" in result.stdout
    assert lines[-1] == "COPY . /src"
    assert "note: --use-cog-base-image" in result.stderr


def test_debug_without_a_project_is_one_sentence(tmp_path: Path) -> None:
    result = debug(tmp_path)
    assert result.returncode == 1
    assert (
        result.stderr.startswith("error: there is no cog.yaml") and "Traceback" not in result.stderr
    )


def test_debug_derivation_prints_plain_data(
    cog: Cog, store: Store, busybox: StorePath, tmp_path: Path
) -> None:
    drv = command_derivation(
        "greeting",
        [f"{busybox}/bin/busybox", "sh", "-c", "echo hi > $out/greeting"],
        {"busybox": SrcInput(path=str(busybox))},
    )
    drv_file = write_drv(store, drv)
    built = cog("store", "realise", str(drv_file))
    assert built.returncode == 0, built.stderr
    out = output_path(drv)
    # By the output it built, and by the .drv itself: the same document.
    by_output = cog("debug", "derivation", str(out))
    by_drv = cog("debug", "derivation", str(drv_file))
    assert by_output.returncode == 0, by_output.stderr
    assert by_output.stdout == by_drv.stdout
    document = json.loads(by_output.stdout)
    assert document["path"] == str(drv_path(drv))
    assert document["builder"] == "command" and document["name"] == "greeting"
    assert document["outputs"] == {"out": str(out)}
    assert document["inputs"] == {"busybox": {"path": str(busybox)}}
    added = cog("store", "add", str(make_tree(tmp_path / "t", {"a": "a"})))
    refused = cog("debug", "derivation", added.stdout.strip())
    assert refused.returncode == 1
    assert "was added, not built" in refused.stderr and "Traceback" not in refused.stderr
    assert os.listdir(store.tmp) == []


def test_debug_installs_exactly_what_the_lock_pins(tmp_path: Path) -> None:
    project = make_tree(
        tmp_path / "p",
        {
            "cog.yaml": COG_YAML,
            "requirements.txt": "torch\n",
            "cog.lock": text_of(FULL_LOCK),
        },
    )
    result = debug(project)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "RUN pip install --no-cache-dir --no-deps torch==1.0 spaced-pkg==1.0" in lines
    assert not any("requirements.txt" in line for line in lines)

"""Local image names: `cog build -t NAME` names the image in the store (a GC root), and every
command that takes an image finds the name before asking a registry, as Docker does."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.projects import cog, project


def test_a_built_name_runs_from_anywhere_and_survives_gc(
    offline: dict[str, str], tmp_path: Path
) -> None:
    root = project("hello-world", tmp_path)
    built = cog(root, offline, "build", "-t", "my-model")
    assert built.returncode == 0, built.stderr[-2000:]
    assert "Image built as my-model:latest" in built.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name in ("my-model", "my-model:latest"):
        run = cog(elsewhere, offline, "predict", name, "-i", "text=there")
        assert run.returncode == 0, run.stderr[-2000:]
        assert run.stdout.strip() == "hello there"
        assert "pulling" not in run.stderr  # found locally, no registry asked
    # The name keeps the image alive without the project.
    shutil.rmtree(root / ".cog")
    assert cog(elsewhere, offline, "store", "gc").returncode == 0
    again = cog(elsewhere, offline, "predict", "my-model", "-i", "text=again")
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.strip() == "hello again"


def test_a_name_moves_to_the_new_build(offline: dict[str, str], tmp_path: Path) -> None:
    root = project("hello-world", tmp_path)

    def says(tag: str) -> str:
        run = cog(tmp_path, offline, "predict", f"greeter:{tag}", "-i", "text=x")
        assert run.returncode == 0, run.stderr[-2000:]
        return run.stdout.strip()

    assert cog(root, offline, "build", "-t", "greeter:v1").returncode == 0
    predict = root / "predict.py"
    predict.write_text(predict.read_text().replace('"hello"', '"bonjour"'))
    assert cog(root, offline, "build", "-t", "greeter:v2").returncode == 0
    assert (says("v1"), says("v2")) == ("hello x", "bonjour x")
    assert cog(root, offline, "build", "-t", "greeter:v1").returncode == 0
    assert says("v1") == "bonjour x"


def test_a_bad_name_is_refused_before_building(offline: dict[str, str], tmp_path: Path) -> None:
    root = project("hello-world", tmp_path)
    result = cog(root, offline, "build", "-t", "My-Model")
    assert result.returncode == 1
    assert "'My-Model' is not a valid image name" in result.stderr
    assert "building " not in result.stderr and not (root / "cog.lock").exists()

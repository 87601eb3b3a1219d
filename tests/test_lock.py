"""cog lock: Python packages for the target platform, the runtime apart, drift named."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cuda_channels.channel import BUILTIN_DIR
from derivations.pylock import ResolveError, Wheel, resolve
from tests.conftest import REPO, TEST_CACHE
from tests.wheels import make_wheel

WHEELS = TEST_CACHE / "wheels"


@pytest.fixture
def index(tmp_path: Path) -> list[str]:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    make_wheel(wheels, "alpha", "1.0", requires=("beta>=1",))
    make_wheel(wheels, "beta", "1.0")
    make_wheel(wheels, "beta", "2.0")
    make_wheel(wheels, "gamma", "1.0", "cp311-cp311-manylinux_2_17_x86_64")
    make_wheel(wheels, "gamma", "1.0", "cp311-cp311-manylinux_2_17_aarch64")
    make_wheel(wheels, "muslonly", "1.0", "cp311-cp311-musllinux_1_2_x86_64")
    return ["--no-index", f"--find-links {wheels}"]


def test_resolution_is_for_the_target_and_keeps_previous_pins(index: list[str]) -> None:
    pins = resolve([*index, "alpha", "gamma"], "3.11", "amd64", "2.36")
    assert [(p.name, p.version) for p in pins] == [
        ("alpha", "1.0"),
        ("beta", "2.0"),
        ("gamma", "1.0"),
    ]
    assert pins[2].filename.endswith("manylinux_2_17_x86_64.whl")
    arm = resolve([*index, "gamma"], "3.11", "arm64", "2.36")
    assert arm[0].filename.endswith("manylinux_2_17_aarch64.whl")  # not the host's
    for pin in pins:
        data = Path(pin.url.removeprefix("file://")).read_bytes()
        assert pin.sha256 == hashlib.sha256(data).hexdigest() and pin.size == len(data)
    old_beta = Path(pins[1].url.removeprefix("file://")).with_name("beta-1.0-py3-none-any.whl")
    data = old_beta.read_bytes()
    previous = [
        Wheel("beta", "1.0", f"file://{old_beta}", hashlib.sha256(data).hexdigest(), len(data))
    ]
    kept = resolve([*index, "alpha"], "3.11", "amd64", "2.36", previous)
    assert [p.version for p in kept if p.name == "beta"] == ["1.0"]  # still fits: kept
    upgraded = resolve([*index, "alpha"], "3.11", "amd64", "2.36", previous, ["beta"])
    assert [p.version for p in upgraded if p.name == "beta"] == ["2.0"]


def test_unresolvable_requirements_are_clear_errors(index: list[str]) -> None:
    with pytest.raises(ResolveError, match="cannot be resolved for linux/amd64") as e:
        resolve([*index, "nosuch"], "3.11", "amd64", "2.36")
    assert "nosuch" in str(e.value)
    with pytest.raises(ResolveError, match="muslonly"):
        resolve([*index, "muslonly"], "3.11", "amd64", "2.36")


@pytest.fixture
def project(tmp_path: Path, debian_mirror: str) -> tuple[Path, dict[str, str]]:
    if not WHEELS.is_dir():
        pytest.fail(f"no wheel cache at {WHEELS}; run `make test-fixtures`")
    channels = tmp_path / "channels"
    channels.mkdir()
    data = json.loads((BUILTIN_DIR / "debian-bookworm.json").read_text())
    for archive in data["archives"]:
        archive["mirror"] = f"{debian_mirror}/{archive['name']}"
    (channels / "debian-bookworm.json").write_text(json.dumps(data))
    root = tmp_path / "project"
    root.mkdir()
    (root / "cog.yaml").write_text(
        'build:\n  python_version: "3.11"\n  python_requirements: requirements.txt\n'
        "predict: predict.py:Predictor\n"
    )
    (root / "requirements.txt").write_text(
        f"--no-index\n--find-links {WHEELS}\nnumpy==2.1.3\npillow\n"
    )
    (root / "predict.py").write_text("from cog import BasePredictor\n")
    env = os.environ | {
        "COG_CHANNEL_PATH": str(channels),
        "PYTHONPATH": str(REPO),
        "UV_CACHE_DIR": str(TEST_CACHE / "uv"),
    }
    return root, env


def cog(project: tuple[Path, dict[str, str]], *args: str) -> subprocess.CompletedProcess[str]:
    root, env = project
    return subprocess.run(
        [sys.executable, "-m", "cog.cli.main", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_cog_lock_pins_everything_deterministically(project: tuple[Path, dict[str, str]]) -> None:
    root, _ = project
    first = cog(project, "lock")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("wrote cog.lock")
    text = (root / "cog.lock").read_text()
    lock = json.loads(text)
    assert lock["version"] == 1 and lock["platform"] == {
        "os": "linux",
        "arch": "amd64",
        "glibc": "2.36",
    }
    assert lock["python"] == {"source": "debian", "version": "3.11"}
    assert {"libc6", "ca-certificates"} <= {p["name"] for p in lock["system"]["base"]}
    assert "python3.11" in {p["name"] for p in lock["system"]["python"]}
    model = {p["name"]: p for p in lock["python_packages"]}
    # The project's packages, and what Cog's SDK brings into a model's environment.
    sdk = {"requests", "pyyaml", "structlog", "typing-extensions", "urllib3"}
    assert {"numpy", "pillow"} | sdk <= set(model) and model["numpy"]["version"] == "2.1.3"
    assert model["pillow"]["url"].endswith("x86_64.whl") and len(model["pillow"]["sha256"]) == 64
    runtime = {p["name"] for p in lock["runtime_packages"]}
    assert {"trio", "h11", "pydantic", "httpx"} <= runtime
    assert "numpy" not in runtime  # the model's and the runtime's environments stay apart
    again = cog(project, "lock")
    assert again.stdout.startswith("unchanged") and (root / "cog.lock").read_text() == text
    (root / "cog.lock").unlink()
    assert cog(project, "lock").returncode == 0 and (root / "cog.lock").read_text() == text
    assert cog(project, "lock", "--check").returncode == 0


def test_lock_check_names_each_drift(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    missing = cog(project, "lock", "--check")
    assert missing.returncode == 1 and "there is no cog.lock" in missing.stderr
    assert cog(project, "lock").returncode == 0
    (root / "predict.py").write_text("from cog import BasePredictor  # edited\n")
    assert cog(project, "lock", "--check").returncode == 0  # code is not locked
    cases = [
        (
            "requirements.txt",
            f"--no-index\n--find-links {WHEELS}\nnumpy==2.1.3\n",
            "Python requirements changed: added nothing; removed pillow",
        ),
        (
            "cog.yaml",
            'build:\n  python_version: "3.12"\n  python_requirements: requirements.txt\n',
            "python_version changed from 3.11 to 3.12",
        ),
        (
            "cog.yaml",
            'build:\n  python_version: "3.11"\n  python_requirements: requirements.txt\n'
            "  system_packages: [ffmpeg]\n",
            "system_packages changed: added ffmpeg",
        ),
    ]
    for name, text, message in cases:
        original = (root / name).read_text()
        (root / name).write_text(text)
        stale = cog(project, "lock", "--check")
        assert stale.returncode == 1 and message in stale.stderr, stale.stderr
        (root / name).write_text(original)
    channel_file = Path(env["COG_CHANNEL_PATH"]) / "debian-bookworm.json"
    data = json.loads(channel_file.read_text())
    data["base_packages"].append("less")
    channel_file.write_text(json.dumps(data))
    stale = cog(project, "lock", "--check")
    assert stale.returncode == 1 and "channel debian-bookworm changed" in stale.stderr

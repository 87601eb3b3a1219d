"""The example projects: lock, build and predict, reproducibly, with drift named by --locked.

Offline: the channel points at the frozen Debian mirror and the requirements at the wheel
cache that `make test-fixtures` fills (the examples themselves name PyPI).
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.projects import WHEELS, cog, project


def test_hello_world(offline: dict[str, str], tmp_path: Path) -> None:
    root = project("hello-world", tmp_path)
    result = cog(root, offline, "predict", "-i", "text=world")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "hello world"
    assert (root / "cog.lock").is_file()  # locked on the way, since there was no lock


def test_numpy_pillow(offline: dict[str, str], tmp_path: Path) -> None:
    root = project("numpy-pillow", tmp_path)
    assert cog(root, offline, "lock").returncode == 0
    result = cog(root, offline, "predict", "-i", "size=4", "-o", str(tmp_path / "out.png"))
    assert result.returncode == 0, result.stderr[-2000:]
    png = (tmp_path / "out.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (4, 4)  # IHDR: width and height
    assert "numpy 2.1.3, tqdm 4.67.1" in result.stderr  # the console script ran


def test_system_deps(offline: dict[str, str], tmp_path: Path) -> None:
    root = project("system-deps", tmp_path)
    result = cog(root, offline, "predict", "-i", 'document={"greeting": "bonjour"}')
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "bonjour"
    lock = json.loads((root / "cog.lock").read_text())
    assert "jq" in {p["name"] for p in lock["system"]["packages"]}


def layer_paths(output: str) -> dict[str, str]:
    return {
        line.split()[0]: line.split()[1] for line in output.splitlines() if "/cog/store/" in line
    }


def test_two_empty_stores_build_identical_layers(offline: dict[str, str], tmp_path: Path) -> None:
    root = project("numpy-pillow", tmp_path)
    assert cog(root, offline, "lock").returncode == 0
    builds = []
    for i, (umask, tz) in enumerate(((0o022, "UTC"), (0o077, "Asia/Tokyo"))):
        env = offline | {"COG_STORE_DIR": str(tmp_path / f"store-{i}"), "TZ": tz}
        copy = tmp_path / f"copy-{i}" / "numpy-pillow"
        shutil.copytree(root, copy)
        result = cog(copy, env, "build", "--locked", umask=umask)
        assert result.returncode == 0, result.stderr[-2000:]
        digest = [
            line.split()[1] for line in result.stdout.splitlines() if line.startswith("digest")
        ]
        builds.append(layer_paths(result.stdout) | {"digest": digest[0]})
    assert builds[0] == builds[1]  # every layer, and the image digest, bit for bit
    assert {"rootfs-base", "rootfs-system", "model-env", "runtime-env", "code"} <= set(builds[0])


def test_locked_names_each_drift(offline: dict[str, str], tmp_path: Path) -> None:
    root = project("numpy-pillow", tmp_path)
    assert cog(root, offline, "lock").returncode == 0
    (root / "predict.py").write_text((root / "predict.py").read_text() + "\n# edited\n")
    edited = cog(root, offline, "build", "--locked")
    assert edited.returncode == 0, edited.stderr[-2000:]  # code is not locked
    config = (root / "cog.yaml").read_text()
    requirements = (root / "requirements.txt").read_text()
    cases = [
        (
            "cog.yaml",
            config.replace('"3.11"', '"3.12"'),
            "python_version changed from 3.11 to 3.12",
        ),
        (
            "requirements.txt",
            requirements.replace("tqdm==4.67.1", "tqdm==4.67.0"),
            "added tqdm==4.67.0; removed tqdm==4.67.1",
        ),
        (
            "cog.yaml",
            config.replace("requirements.txt", "other.txt"),
            "removed numpy==2.1.3, pillow==11.0.0",
        ),
        (
            "cog.yaml",
            config.replace("requirements.txt\n", "requirements.txt\n  system_packages: [jq]\n"),
            "system_packages changed: added jq",
        ),
    ]
    (root / "other.txt").write_text(f"--no-index\n--find-links {WHEELS}\n")
    for name, text, message in cases:
        (root / name).write_text(text)
        stale = cog(root, offline, "build", "--locked")
        assert stale.returncode == 1 and message in stale.stderr, (name, stale.stderr[-1000:])
        assert "Traceback" not in stale.stderr
        (root / "cog.yaml").write_text(config)
        (root / "requirements.txt").write_text(requirements)
    channel_file = Path(offline["COG_CHANNEL_PATH"]) / "debian-bookworm.json"
    original = channel_file.read_text()
    data = json.loads(original)
    data["base_packages"].append("less")
    channel_file.write_text(json.dumps(data))
    try:
        stale = cog(root, offline, "build", "--locked")
        assert stale.returncode == 1 and "channel debian-bookworm changed" in stale.stderr
    finally:
        channel_file.write_text(original)


def test_code_and_weights_layers(offline: dict[str, str], tmp_path: Path) -> None:
    root = project("hello-world", tmp_path)
    (root / "weights").mkdir()
    (root / "weights" / "model.bin").write_bytes(b"w" * 1000)
    with open(root / "big.bin", "wb") as f:  # over 64 MiB: a weight without being declared
        f.truncate(64 * 1024 * 1024)
    (root / "notes.tmp").write_text("ignored")
    (root / ".dockerignore").write_text("*.tmp\n")
    (root / "cog.yaml").write_text(
        (root / "cog.yaml").read_text() + "weights:\n  - source: weights/model.bin\n"
    )
    result = cog(root, offline, "build")
    assert result.returncode == 0, result.stderr[-2000:]
    paths = layer_paths(result.stdout)
    store = Path(offline["COG_STORE_DIR"])
    code = store / paths["code"].removeprefix("/cog/store/")
    assert sorted(p.name for p in code.iterdir()) == [".dockerignore", "cog.yaml", "predict.py"]
    weight = store / paths["weights:weights/model.bin"].removeprefix("/cog/store/")
    assert weight.read_bytes() == b"w" * 1000
    assert "weights:big.bin" in paths
    (root / "predict.py").write_text(
        "from pathlib import Path\nfrom cog import BasePredictor\n\n"
        "class Predictor(BasePredictor):\n"
        "    def predict(self) -> int:\n"
        "        return len(Path('/src/weights/model.bin').read_bytes())\n"
    )
    run = cog(root, offline, "predict")
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "1000"  # the weight is at its place under /src


def test_unbuildable_features_are_refused_not_ignored(
    offline: dict[str, str], tmp_path: Path
) -> None:
    root = project("hello-world", tmp_path)
    # build.run and gpu: true are built (tests/builders/test_run_steps.py and test_gpu.py);
    # a cuda: that torch's wheels cannot use is refused before anything is resolved or fetched.
    (root / "cog.yaml").write_text(
        'build:\n  python_version: "3.11"\n  gpu: true\n  cuda: "11.7"\n'
        '  python_packages: ["torch==2.5.1"]\npredict: predict.py:Predictor\n'
    )
    result = cog(root, offline, "build")
    assert result.returncode == 1, result.stderr
    assert "cog.yaml asks for CUDA 11.7, but torch==2.5.1 is built for CUDA" in result.stderr
    assert "resolv" not in result.stderr and not (root / "cog.lock").exists()


def test_cog_serve_runs_the_built_project(offline: dict[str, str], tmp_path: Path) -> None:
    import httpx

    from tests.runtime_server import free_port

    root = project("hello-world", tmp_path)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "cog.cli.main", "serve", "-p", str(port)],
        cwd=root,
        env=offline,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health-check").json()["status"] == "READY":
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        result = httpx.post(
            f"http://127.0.0.1:{port}/predictions", json={"input": {"text": "there"}}
        )
        assert result.json()["output"] == "hello there"
    finally:
        server.terminate()
        assert server.wait(timeout=30) is not None
    with pytest.raises(httpx.TransportError):  # the sandboxed server went with it
        httpx.get(f"http://127.0.0.1:{port}/health-check", timeout=2)


def test_cuda_gpu_on_cpu(offline: dict[str, str], tmp_path: Path) -> None:
    """examples/cuda-gpu (the device check's model) with no GPU: the CUDA runtime from NVIDIA's
    wheel is found through the image's LD_LIBRARY_PATH, the driver is absent, and the CPU
    computes the sum the GPU computes (bench/gpu/results/)."""
    root = project("cuda-gpu", tmp_path)
    result = cog(root, offline, "predict", "-i", "n=64")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "cuda=False device=cpu cudart=12.4 sum=16773120"
    lock = json.loads((root / "cog.lock").read_text())
    assert lock["cuda"] == {
        "version": "12.4",
        "cudnn": "9",
        "from": "nvidia-cuda-runtime-cu12==12.4.127",
        "wheels": [],
    }

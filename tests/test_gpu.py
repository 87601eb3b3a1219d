"""GPU projects on a CPU machine: NVIDIA's CUDA wheels in an environment, bytecode that does not
compile, `gpu: true` with CUDA chosen as Cog chooses it, and the image's NVIDIA environment.

Offline, like tests/test_examples.py: the channel on the frozen mirror, wheels from the cache
(two small real CUDA 12 wheels among them).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from cuda_channels.channel import BUILTIN_DIR
from cuda_channels.cuda import DEFAULT_CUDA_DATA, CudaError, load_cuda, select
from tests.projects import WHEELS, cog, project
from tests.wheels import make_wheel

INDEX = ["--no-index", f"--find-links {WHEELS}"]
NVIDIA = ["nvidia-cuda-runtime-cu12==12.4.127", "nvidia-nvtx-cu12==12.4.127"]

PREDICT = """\
from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self) -> str:
{body}
"""


def gpu_project(tmp_path: Path, build: str, body: str, packages: Sequence[str] = ()) -> Path:
    """hello-world with `build` lines, `packages` (after the wheel cache's index options) as
    its python_packages, and `body` as its predict()."""
    root = project("hello-world", tmp_path)
    listed = json.dumps([*INDEX, *packages])
    (root / "cog.yaml").write_text(
        f'build:\n  python_version: "3.11"\n  python_packages: {listed}\n{build}'
        'predict: "predict.py:Predictor"\n'
    )
    (root / "predict.py").write_text(PREDICT.format(body=body))
    return root


def test_namespace_package_shared_by_nvidia_wheels(offline: dict[str, str], tmp_path: Path) -> None:
    # Both wheels install nvidia/__init__.py; each one's bytecode of it names its own store path.
    root = gpu_project(
        tmp_path,
        "",
        "        import nvidia.cuda_runtime, nvidia.nvtx\n"
        "        lib = nvidia.cuda_runtime.__path__[0] + '/lib'\n"
        "        import os\n"
        "        return ' '.join(sorted(f for f in os.listdir(lib) if f.startswith('libcudart')))",
        NVIDIA,
    )
    result = cog(root, offline, "predict")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "libcudart.so.12"


def test_a_file_for_another_python_is_left_without_bytecode(
    offline: dict[str, str], tmp_path: Path
) -> None:
    # torch ships torch/testing/_internal/py312_intrinsics.py, which 3.11 cannot compile.
    local = tmp_path / "local-wheels"
    local.mkdir()
    make_wheel(
        local,
        "futurepkg",
        "1.0",
        files={
            "futurepkg/__init__.py": b"VALUE = 42\n",
            "futurepkg/py312_only.py": b"type Alias = int\n",
        },
    )
    root = gpu_project(
        tmp_path,
        "",
        "        import futurepkg, os\n"
        "        cache = os.listdir(os.path.dirname(futurepkg.__file__) + '/__pycache__')\n"
        "        return f'{futurepkg.VALUE} {sorted(cache)}'",
        [f"--find-links {local}", "futurepkg==1.0"],
    )
    result = cog(root, offline, "predict")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "42 ['__init__.cpython-311.pyc']"


# CUDA as Cog chooses it (cuda_channels.cuda over the built-in data).
@pytest.mark.parametrize(
    ("lines", "cuda", "expect"),
    [
        (["torch==2.5.1"], None, ("12.4", "9", "torch==2.5.1")),  # the highest in torch's row
        (["torch==2.5.1+cu121"], None, ("12.1", "8", "torch==2.5.1+cu121")),  # Cog: 12.1 has 8
        (
            ["--extra-index-url https://download.pytorch.org/whl/cu118", "torch==2.5.1"],
            None,
            ("11.8", "8", "torch==2.5.1"),
        ),
        (["numpy==2.1.3"], None, ("11.8", "8", "default")),  # Cog's default CUDA
        (
            ["--extra-index-url https://download.pytorch.org/whl/cu121"],
            None,
            ("12.1", "8", "the PyTorch index"),
        ),
        (["tensorflow==2.16.1"], None, ("12.3", "8", "tensorflow==2.16.1")),
        (["torch==2.5.1"], "12.1", ("12.1", "8", "cog.yaml")),
        ([], "12.4", ("12.4", "9", "cog.yaml")),
    ],
)
def test_cuda_selection(lines: list[str], cuda: str | None, expect: tuple[str, str, str]) -> None:
    choice = select(load_cuda(), lines, cuda)
    assert (choice.cuda, choice.cudnn, choice.reason) == expect


def test_cuda_contradicting_torch_is_one_sentence() -> None:
    with pytest.raises(CudaError) as e:
        select(load_cuda(), ["torch==2.5.1"], "11.7")
    assert (
        str(e.value)
        == "cog.yaml asks for CUDA 11.7, but torch==2.5.1 is built for CUDA 11.8, 12.1, 12.4"
    )
    with pytest.raises(CudaError, match=r"cuDNN 7 does not ship for CUDA 12\.4"):
        select(load_cuda(), [], "12.4", "7")


def test_cuda_data_names_its_source_and_wheel_sets() -> None:
    raw = json.loads((BUILTIN_DIR / f"{DEFAULT_CUDA_DATA}.json").read_text())
    assert raw["source"]["compatibility"]["commit"] and raw["source"]["compatibility"]["date"]
    data = load_cuda()
    wheels = data.wheel_set("12.4", "9")
    assert wheels is not None and "nvidia-cuda-runtime-cu12==12.4.127" in wheels
    assert "nvidia-cudnn-cu12==9.1.0.70" in wheels
    assert data.wheel_set("12.4", "8") is None


def image_config(layout: Path) -> dict[str, Any]:
    """The config of the one image in an OCI layout."""

    def blob(digest: str) -> dict[str, Any]:
        return json.loads((layout / "blobs" / "sha256" / digest.split(":")[1]).read_text())

    index = json.loads((layout / "index.json").read_text())
    manifest = blob(index["manifests"][0]["digest"])
    return blob(manifest["config"]["digest"])


def test_gpu_project_without_torch_builds_and_predicts_on_cpu(
    offline: dict[str, str], tmp_path: Path
) -> None:
    root = gpu_project(
        tmp_path,
        "  gpu: true\n",
        "        import numpy, nvidia.cuda_runtime\n        return str(numpy.ones(3).sum())",
        ["numpy==2.1.3", *NVIDIA],
    )
    locked = cog(root, offline, "lock")
    assert locked.returncode == 0, locked.stderr[-2000:]
    lock = json.loads((root / "cog.lock").read_text())
    assert lock["cuda"] == {"version": "11.8", "cudnn": "8", "from": "default"}
    assert lock["inputs"]["gpu"]["cuda"] is None
    assert lock["inputs"]["gpu"]["data"]["name"] == DEFAULT_CUDA_DATA
    layout = tmp_path / "oci"
    built = cog(root, offline, "build", "--locked", "--output", f"oci:{layout}")
    assert built.returncode == 0, built.stderr[-2000:]
    config = image_config(layout)
    env = dict(item.split("=", 1) for item in config["config"]["Env"])
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "all" and env["NVIDIA_VISIBLE_DEVICES"] == "all"
    paths = env["LD_LIBRARY_PATH"].split(":")
    assert "/usr/local/nvidia/lib64" in paths
    assert any(p.endswith("site-packages/nvidia/cuda_runtime/lib") for p in paths)
    label = json.loads(config["config"]["Labels"]["run.cog.config"])
    assert label["build"]["gpu"] is True and label["build"]["cuda"] == "11.8"
    predicted = cog(root, offline, "predict")
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert predicted.stdout.strip() == "3.0"
    # A cuda: is an input of the lock: --locked names it as drift.
    (root / "cog.yaml").write_text(
        (root / "cog.yaml").read_text().replace("  gpu: true\n", '  gpu: true\n  cuda: "12.4"\n')
    )
    stale = cog(root, offline, "build", "--locked")
    assert stale.returncode == 1 and "build.cuda or build.cudnn changed" in stale.stderr

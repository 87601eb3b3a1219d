"""The lock and the image's labels say the CUDA that is installed, not only the one chosen.

torch 2.8.0's row in Cog's matrix chooses CUDA 12.9 (PyTorch's cu129 build); when PyTorch's
index is out of reach, the torch pinned is PyPI's, built for 12.8, and the closure pins
`nvidia-cuda-runtime-cu12==12.8.*`. Offline: a tiny torch 2.8.0 whose metadata asks for
NVIDIA's 12.8 runtime and cuDNN 9, made here, beside the wheel cache.
"""

from __future__ import annotations

import json
from pathlib import Path

from cuda_channels.cuda import Choice, installed
from tests.builders.test_gpu import gpu_project, image_config
from tests.projects import cog
from tests.wheels import make_wheel

CHOSEN = Choice("12.9", "9", "torch==2.8.0")
READ = "nvidia-cuda-runtime-cu12==12.8.90 as locked, where torch==2.8.0 chose CUDA 12.9 + cuDNN 9"


def test_the_cuda_recorded_is_read_from_the_locked_pins() -> None:
    pypi = {"torch": "2.8.0", "nvidia-cuda-runtime-cu12": "12.8.90"} | {
        "nvidia-cudnn-cu12": "9.10.2.21"
    }
    found = installed(CHOSEN, pypi)
    assert (found.cuda, found.cudnn, found.reason) == ("12.8", "9", READ)
    # PyTorch's own build of the CUDA chosen: the choice as it was.
    assert installed(CHOSEN, {"torch": "2.8.0+cu129", "nvidia-cuda-runtime-cu12": "12.9.79"}) == (
        CHOSEN
    )
    # A torch that bundles its CUDA (no runtime wheel beside it): its `+cuXYZ`.
    old = installed(Choice("11.8", "8", "cog.yaml"), {"torch": "1.13.1+cu117"})
    assert (old.cuda, old.cudnn) == ("11.7", "8")
    assert old.reason == "torch==1.13.1+cu117 as locked, where cog.yaml chose CUDA 11.8 + cuDNN 8"
    # The cuDNN alone may differ; nothing NVIDIA's named leaves the choice.
    assert installed(Choice("12.1", "8", "x"), {"nvidia-cudnn-cu12": "9.1.0.70"}).cudnn == "9"
    assert installed(CHOSEN, {"numpy": "2.1.3"}) == CHOSEN


def fake_torch(into: Path) -> Path:
    """torch 2.8.0 as PyPI's wheel declares it (NVIDIA's CUDA 12.8 wheels), and those wheels."""
    into.mkdir()
    make_wheel(
        into,
        "torch",
        "2.8.0",
        requires=("nvidia-cuda-runtime-cu12==12.8.90", "nvidia-cudnn-cu12==9.10.2.21"),
        files={"torch/__init__.py": b"__version__ = '2.8.0'\n"},
    )
    for name, version, lib in (
        ("nvidia_cuda_runtime_cu12", "12.8.90", "cuda_runtime"),
        ("nvidia_cudnn_cu12", "9.10.2.21", "cudnn"),
    ):
        make_wheel(into, name, version, files={f"nvidia/{lib}/__init__.py": b""})
    return into


def test_torch_from_pypi_locks_and_labels_its_own_cuda(
    offline: dict[str, str], tmp_path: Path
) -> None:
    links = fake_torch(tmp_path / "links")
    root = gpu_project(
        tmp_path,
        "  gpu: true\n",
        "        import torch\n        return torch.__version__",
        [f"--find-links {links}", "torch==2.8.0"],
    )
    locked = cog(root, offline, "lock")
    assert locked.returncode == 0, locked.stderr[-2000:]
    lock = json.loads((root / "cog.lock").read_text())
    assert lock["cuda"] == {"version": "12.8", "cudnn": "9", "from": READ, "wheels": []}
    assert "the locked packages install CUDA 12.8 with cuDNN 9" in locked.stderr
    # Locking again keeps the bytes (the pins agree with what they install now).
    before = (root / "cog.lock").read_bytes()
    assert cog(root, offline, "lock").returncode == 0
    assert (root / "cog.lock").read_bytes() == before

    layout = tmp_path / "oci"
    built = cog(root, offline, "build", "--locked", "--output", f"oci:{layout}")
    assert built.returncode == 0, built.stderr[-2000:]
    label = json.loads(image_config(layout)["config"]["Labels"]["run.cog.config"])
    assert (label["build"]["cuda"], label["build"]["cudnn"]) == ("12.8", "9")

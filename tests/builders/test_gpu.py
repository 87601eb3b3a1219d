"""GPU projects on a CPU machine: NVIDIA's CUDA wheels in an environment, bytecode that does not
compile, `gpu: true` with CUDA chosen as Cog chooses it, and the image's NVIDIA environment.

Offline, like tests/cli/test_examples.py: the channel on the frozen mirror, wheels from the cache
(two small real CUDA 12 wheels among them).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from builders.sandbox.gpu import GpuUnavailable, HostGpu, discover, gpu_binds
from builders.sandbox.model import with_driver
from cuda_channels.channel import BUILTIN_DIR
from cuda_channels.cuda import (
    DEFAULT_CUDA_DATA,
    CudaError,
    load_cuda,
    pytorch_indexes,
    select,
    wheel_layer,
)
from derivations import lock
from tests.conftest import LoopbackServer, require_tool
from tests.projects import WHEELS, cog, project
from tests.services import free_port
from tests.wheels import index_page, make_wheel, simple_index

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
        # No torch or TensorFlow: a pinned NVIDIA runtime wheel says which CUDA the code loads.
        (
            ["nvidia-cuda-runtime-cu12==12.4.127"],
            None,
            ("12.4", "9", "nvidia-cuda-runtime-cu12==12.4.127"),
        ),
        (["nvidia-cuda-runtime-cu12==12.4.127"], "12.1", ("12.1", "8", "cog.yaml")),
    ],
)
def test_cuda_selection(lines: list[str], cuda: str | None, expect: tuple[str, str, str]) -> None:
    choice = select(load_cuda(), lines, cuda)
    assert (choice.cuda, choice.cudnn, choice.reason) == expect


# PyTorch's own builds, as Cog adds their index beside a pinned torch or torchvision.
@pytest.mark.parametrize(
    ("lines", "cuda", "expect"),
    [
        (["torch==2.5.1"], None, ["cpu"]),  # no GPU: the CPU build, not PyPI's CUDA one
        (["torch==2.5.1", "torchvision==0.20.1"], "12.4", ["cu124"]),
        (["torch==2.1.0"], "11.8", ["cu118"]),  # an older CUDA asked for: its build
        (["torch==2.8.0"], "12.9", ["cu129"]),  # PyPI's 2.8.0 is cu128: Cog's is not
        (["torch==2.5.1"], "12.2", ["cu121"]),  # the highest no higher than the CUDA
        (["torch==2.0.1"], "11.7", []),  # Cog's row for it is PyPI's own build
        (["torchvision==0.23.0"], None, ["cpu"]),
        (["torch==2.5.1+cu121"], "12.1", []),  # a local version says where it comes from
        (["--no-index", "torch==2.5.1"], None, []),
        (["torch>=2"], None, []),
    ],
)
def test_pytorch_index_as_cog_adds_it(
    lines: list[str], cuda: str | None, expect: list[str]
) -> None:
    assert pytorch_indexes(load_cuda(), lines, cuda) == expect


def pytorch_mirror(server: LoopbackServer, builds: dict[str, str], into: Path) -> str:
    """A loopback stand-in for download.pytorch.org/whl serving made-up torch wheels, one per
    index (`cpu` -> `2.5.1+cpu`), named as PyTorch names its builds."""
    for name, version in builds.items():
        (into / name).mkdir(parents=True)
        wheel = make_wheel(into / name, "torch", version)
        quoted = urllib.parse.quote(wheel.name)
        server.files[f"whl/{name}/torch/"] = index_page([wheel.name]).encode()
        server.types[f"whl/{name}/torch/"] = "text/html"
        server.files[f"whl/{name}/torch/{quoted}"] = wheel.read_bytes()
    return server.url("whl")


def test_torch_is_locked_from_pytorchs_own_build_as_in_cog(
    offline: dict[str, str], tmp_path: Path, http_server: LoopbackServer
) -> None:
    """A pinned torch gets the build Cog's pip would install: PyTorch's CPU build without a
    GPU, the build for the chosen CUDA with one, though the main index (PyPI's stand-in) has
    a plain 2.5.1 too. A mirror that does not answer is one sentence."""
    main = simple_index(tmp_path / "pypi", {"torch": ["2.5.1"]})
    mirror = pytorch_mirror(
        http_server, {"cpu": "2.5.1+cpu", "cu124": "2.5.1+cu124"}, tmp_path / "wheels"
    )
    env = offline | {"COG_PYTORCH_MIRROR": mirror}
    packages = json.dumps([f"--index-url {main}", f"--find-links {WHEELS}", "torch==2.5.1"])
    for gpu, build in (("false", "cpu"), ("true", "cu124")):
        root = project("hello-world", tmp_path / gpu)
        (root / "cog.yaml").write_text(
            f'build:\n  gpu: {gpu}\n  python_version: "3.11"\n'
            f"  python_packages: {packages}\npredict: predict.py:Predictor\n"
        )
        result = cog(root, env, "lock")
        assert result.returncode == 0, result.stderr[-2000:]
        assert "warning" not in result.stderr
        lock = json.loads((root / "cog.lock").read_text())
        torch = next(p for p in lock["python_packages"] if p["name"] == "torch")
        assert torch["version"] == f"2.5.1+{build}"
        assert torch["url"].startswith(f"{mirror}/{build}/torch/")
        runtime = {p["name"]: p["url"] for p in lock["runtime_packages"]}
        assert not any(url.startswith(mirror) for url in runtime.values())
    # Locked while PyTorch's index had no build (here: an empty mirror), torch is PyPI's; once
    # the index has one, the next lock moves to it rather than keeping the old pin.
    empty = tmp_path / "empty" / "cpu" / "torch"
    empty.mkdir(parents=True)
    root = project("hello-world", tmp_path / "later")
    (root / "cog.yaml").write_text(
        f'build:\n  python_version: "3.11"\n  python_packages: {packages}\n'
        "predict: predict.py:Predictor\n"
    )
    for where, version in ((empty.parents[1].as_uri(), "2.5.1"), (mirror, "2.5.1+cpu")):
        result = cog(root, offline | {"COG_PYTORCH_MIRROR": where}, "lock")
        assert result.returncode == 0, result.stderr[-2000:]
        lock = json.loads((root / "cog.lock").read_text())
        assert [p["version"] for p in lock["python_packages"] if p["name"] == "torch"] == [version]
    http_server.files.clear()
    result = cog(root, env, "lock", "--upgrade")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-2] == (
        f"error: the PyTorch mirror {mirror}/cpu/ cannot be read (HTTP 404)"
    )
    assert "Traceback" not in result.stderr


def test_pytorchs_index_out_of_reach_is_left_out_as_pip_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where download.pytorch.org cannot be reached (no network but PyPI's mirror), the lock
    goes on with PyPI's torch, as pip goes on without an index it cannot reach, and says so."""
    monkeypatch.delenv("COG_PYTORCH_MIRROR", raising=False)
    monkeypatch.setattr(lock, "PYTORCH_INDEX", f"http://127.0.0.1:{free_port()}/whl")
    said: list[str] = []
    assert lock.pytorch_index_lines(["torch==2.5.1"], None, said.append) == []
    assert len(said) == 1 and said[0].startswith(f"PyTorch's index {lock.PYTORCH_INDEX}/cpu/ ")
    assert "ConnectError" in said[0] and said[0].endswith(
        f"set COG_PYTORCH_MIRROR to a mirror of {lock.PYTORCH_INDEX}"
    )
    assert lock.pytorch_index_lines(["numpy==2.1.3"], None, said.append) == []
    assert len(said) == 1  # nothing pinned from it: nothing tried


def test_cuda_contradicting_torch_is_one_sentence() -> None:
    with pytest.raises(CudaError) as e:
        select(load_cuda(), ["torch==2.5.1"], "11.7")
    assert (
        str(e.value)
        == "cog.yaml asks for CUDA 11.7, but torch==2.5.1 is built for CUDA 11.8, 12.1, 12.4"
    )
    with pytest.raises(CudaError, match=r"cuDNN 7 does not ship for CUDA 12\.4"):
        select(load_cuda(), [], "12.4", "7")


@pytest.mark.parametrize(
    "lines", [["torch"], ["torch>=2.0", "numpy==2.1.3"], ["Torch ; python_version>'3'"]]
)
def test_unpinned_torch_on_a_gpu_is_refused_as_cog_refuses_it(lines: list[str]) -> None:
    with pytest.raises(CudaError) as e:
        select(load_cuda(), lines, "12.4")
    assert str(e.value) == "torch version must be specified when using CUDA" and e.value.hint


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


def tiny_cuda_data(into: Path) -> Path:
    """The built-in CUDA data with one tiny wheel set (CUDA 12.4 + cuDNN 9 as runtime + nvtx,
    both cached) in a COG_CHANNEL_PATH folder, so a CUDA layer builds offline."""
    raw = json.loads((BUILTIN_DIR / f"{DEFAULT_CUDA_DATA}.json").read_text())
    raw["wheels"] = {"12.4": {"from": "tests", "cuda": NVIDIA, "cudnn": {"9": []}}}
    into.mkdir()
    (into / f"{DEFAULT_CUDA_DATA}.json").write_text(json.dumps(raw))
    return into


def test_cuda_layer_is_added_where_nothing_brings_cuda() -> None:
    data = load_cuda()
    newest = data.wheel_set("12.8", "9")
    # Cog's default (11.8) has no wheel set: the newest set instead, named as such.
    choice, wheels = wheel_layer(data, select(data, ["numpy==2.1.3"]), ["numpy==2.1.3"])
    assert (choice.cuda, choice.cudnn) == ("12.8", "9") and wheels == newest
    assert choice.reason == "newest NVIDIA wheel set (Cog's default CUDA 11.8 has none)"
    # A cuDNN asked for picks the newest set that has it.
    choice, wheels = wheel_layer(data, select(data, [], None, "8"), [], "8")
    assert (choice.cuda, choice.cudnn) == ("12.1", "8") and wheels == data.wheel_set("12.1", "8")
    # An explicit CUDA gets its own set, or one sentence where the data has none.
    assert wheel_layer(data, select(data, [], "12.4"), [])[1] == data.wheel_set("12.4", "9")
    with pytest.raises(CudaError) as e:
        wheel_layer(data, select(data, [], "12.2"), [])
    assert str(e.value).startswith(
        "CUDA 12.2 with cuDNN 8 has no NVIDIA wheel set in cuda-2026.08; it has CUDA 12.1 + cuDNN"
    )
    # torch, TensorFlow and NVIDIA's own wheels named: they bring (or are) the CUDA layer.
    for lines in (["torch==2.5.1"], ["tensorflow[and-cuda]==2.16.1"], ["nvidia_cudnn_cu12"]):
        choice = select(data, lines)
        assert wheel_layer(data, choice, lines) == (choice, [])


def test_gpu_project_without_torch_builds_and_predicts_on_cpu(
    offline: dict[str, str], tmp_path: Path
) -> None:
    env = offline | {
        "COG_CHANNEL_PATH": f"{tiny_cuda_data(tmp_path / 'data')}:{offline['COG_CHANNEL_PATH']}"
    }
    # libcudart found by name (LD_LIBRARY_PATH, natively as in the image), and no GPU here.
    root = gpu_project(
        tmp_path,
        "  gpu: true\n",
        "        import ctypes, numpy\n"
        "        cudart = ctypes.CDLL('libcudart.so.12')\n"
        "        count = ctypes.c_int(0)\n"
        "        failed = cudart.cudaGetDeviceCount(ctypes.byref(count)) != 0\n"
        "        return f'{numpy.ones(3).sum()} gpus={0 if failed else count.value}'",
        ["numpy==2.1.3"],
    )
    locked = cog(root, env, "lock")
    assert locked.returncode == 0, locked.stderr[-2000:]
    lock = json.loads((root / "cog.lock").read_text())
    assert lock["cuda"] == {
        "version": "12.4",
        "cudnn": "9",
        "from": "newest NVIDIA wheel set (Cog's default CUDA 11.8 has none)",
        "wheels": NVIDIA,
    }
    pinned = {w["name"]: w for w in lock["python_packages"]}
    for line in NVIDIA:
        name, version = line.split("==")
        assert pinned[name]["version"] == version and len(pinned[name]["sha256"]) == 64
    assert lock["inputs"]["gpu"]["cuda"] is None
    assert lock["inputs"]["gpu"]["data"]["name"] == DEFAULT_CUDA_DATA
    layout = tmp_path / "oci"
    built = cog(root, env, "build", "--locked", "--output", f"oci:{layout}")
    assert built.returncode == 0, built.stderr[-2000:]
    config = image_config(layout)
    image_env = dict(item.split("=", 1) for item in config["config"]["Env"])
    assert image_env["NVIDIA_DRIVER_CAPABILITIES"] == "all"
    assert image_env["NVIDIA_VISIBLE_DEVICES"] == "all"
    paths = image_env["LD_LIBRARY_PATH"].split(":")
    assert "/usr/local/nvidia/lib64" in paths
    for lib in ("cuda_runtime", "nvtx"):
        assert any(p.endswith(f"site-packages/nvidia/{lib}/lib") for p in paths), paths
    label = json.loads(config["config"]["Labels"]["run.cog.config"])
    assert label["build"]["gpu"] is True and label["build"]["cuda"] == "12.4"
    predicted = cog(root, env, "predict")
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert predicted.stdout.strip() == "3.0 gpus=0"

    def exec_on(host: Path, gpus: str, script: str) -> subprocess.CompletedProcess[str]:
        """`cog exec --gpus GPUS sh -c SCRIPT` with `host` as the machine's GPU host."""
        patched = (
            "import functools, pathlib, sys, builders.sandbox.gpu as n; n.discover = "
            f"functools.partial(n.discover, root=pathlib.Path({str(host)!r}), cache=''); "
            "from cog.cli.main import main; sys.exit(main())"
        )
        argv = [sys.executable, "-c", patched, "exec", "--gpus", gpus, "sh", "-c", script]
        return subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True)

    # `cog exec --gpus all` natively, with discovery pointed at a fake host's tree: its nodes
    # and driver inside, the driver's folder on LD_LIBRARY_PATH after the wheels' ones.
    script = "ls /dev/nvidia1 /usr/local/nvidia/lib64 && echo $LD_LIBRARY_PATH && nvidia-smi"
    ran = exec_on(fake_host(tmp_path / "host"), "all", script)
    assert ran.returncode == 0, ran.stderr[-2000:]
    lines = ran.stdout.splitlines()
    assert lines[0] == "/dev/nvidia1" and "/usr/local/nvidia/lib64:" in lines
    assert "libcuda.so.1" in lines and lines[-1] == "GPU 0: fake"
    library_path = lines[-2].split(":")
    assert library_path[0].endswith("site-packages/nvidia/cuda_runtime/lib")
    assert "/usr/local/nvidia/lib64" in library_path
    # With a CDI spec on that host: the devices it names, its variables, its driver.
    script = "ls -d /dev/nvidia[0-9]; echo $NVIDIA_VISIBLE_DEVICES; ls /usr/local/nvidia/lib64"
    ran = exec_on(cdi_host(tmp_path / "cdi-host"), "device=1", script)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.splitlines() == [
        "/dev/nvidia1",
        "void",
        "libcuda.so",
        "libcuda.so.1",
        "libcuda.so.580.1",
        "libnvidia-ml.so.1",
        "libnvidia-ml.so.580.1",
    ]
    # A cuda: is an input of the lock: --locked names it as drift.
    (root / "cog.yaml").write_text(
        (root / "cog.yaml").read_text().replace("  gpu: true\n", '  gpu: true\n  cuda: "12.4"\n')
    )
    stale = cog(root, env, "build", "--locked")
    assert stale.returncode == 1 and "build.cuda or build.cudnn changed" in stale.stderr


# Native `--gpus`: the host's GPU found in a fake tree (nodes and libraries as empty files).
LDCONFIG = """\
\t4 libs found in cache `/etc/ld.so.cache'
\tlibnvidia-ml.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1
\tlibcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1
\tlibcuda.so.1 (libc6) => /usr/lib/i386-linux-gnu/libcuda.so.1
\tlibc.so.6 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libc.so.6
"""


def fake_host(root: Path, gpus: int = 2) -> Path:
    """A host tree with `gpus` GPUs: device nodes, the driver in the ld cache's folder (as a
    link to its versioned file) and in /usr/local/nvidia/lib64, and nvidia-smi."""
    for name in ["nvidiactl", "nvidia-uvm", *(f"nvidia{i}" for i in range(gpus))]:
        (root / "dev").mkdir(parents=True, exist_ok=True)
        (root / "dev" / name).write_text("")
    (root / "dev" / "nvidia-caps").mkdir()
    lib = root / "usr/lib/x86_64-linux-gnu"
    lib.mkdir(parents=True)
    for name in ("libcuda.so.580.1", "libnvidia-ml.so.580.1", "libc.so.6"):
        (lib / name).write_text(name)
    (lib / "libcuda.so.1").symlink_to("libcuda.so.580.1")
    (lib / "libnvidia-ml.so.1").symlink_to("libnvidia-ml.so.580.1")
    gke = root / "usr/local/nvidia/lib64"
    gke.mkdir(parents=True)
    (gke / "libnvidia-ptxjitcompiler.so.1").write_text("jit")
    (gke / "libnvidia-nvvm.so.4").write_text("nvvm")
    (gke / "libnvidia-glcore.so.580.1").write_text("graphics: not for compute")
    (root / "usr/bin").mkdir()
    (root / "usr/bin/nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: fake'\n")
    (root / "usr/bin/nvidia-smi").chmod(0o755)
    return root


def test_host_gpu_found_in_a_fake_tree(tmp_path: Path) -> None:
    root = fake_host(tmp_path / "host")
    gpu = discover("all", root, LDCONFIG)
    assert list(gpu.devices) == [
        "/dev/nvidiactl",
        "/dev/nvidia-uvm",
        "/dev/nvidia0",
        "/dev/nvidia1",
        "/dev/nvidia-caps",
    ]
    assert gpu.devices["/dev/nvidia1"] == root / "dev/nvidia1"
    lib = root / "usr/lib/x86_64-linux-gnu"
    # The 64-bit ld cache entries, as the files they link to, then the usual folders'.
    assert gpu.libraries == {
        "libcuda.so.1": lib / "libcuda.so.580.1",
        "libcuda.so.580.1": lib / "libcuda.so.580.1",
        "libnvidia-ml.so.1": lib / "libnvidia-ml.so.580.1",
        "libnvidia-ml.so.580.1": lib / "libnvidia-ml.so.580.1",
        "libnvidia-nvvm.so.4": root / "usr/local/nvidia/lib64/libnvidia-nvvm.so.4",
        "libnvidia-ptxjitcompiler.so.1": root
        / "usr/local/nvidia/lib64/libnvidia-ptxjitcompiler.so.1",
    }
    assert gpu.smi == root / "usr/bin/nvidia-smi"
    assert [d for d in discover("1", root, "").devices if d[-1].isdigit()] == ["/dev/nvidia0"]
    picked = discover("device=1", root, "").devices
    assert "/dev/nvidia1" in picked and "/dev/nvidia0" not in picked
    argv = gpu_binds(gpu, root)
    assert argv[:2] == ["--dev-bind", str(root / "dev/nvidiactl")]
    assert ["--ro-bind", str(lib / "libcuda.so.580.1"), "/usr/local/nvidia/lib64/libcuda.so.1"] == (
        argv[argv.index("/usr/local/nvidia/lib64/libcuda.so.1") - 2 :][:3]
    )
    # This root has /usr/local/nvidia (the host driver's place): a fresh one hides it.
    assert argv[argv.index("--tmpfs") + 1] == "/usr/local/nvidia"
    assert argv[-2:] == ["--remount-ro", "/usr/local/nvidia"]


@pytest.mark.parametrize(
    ("gpus", "message"),
    [
        ("3", "--gpus 3 asks for 3 GPUs, but this host has 2"),
        ("device=4", "--gpus device=4: this host has no GPU 4 (it has 0, 1)"),
        ("some", "--gpus 'some' is not all, a count or device=INDEX,..."),
    ],
)
def test_host_gpu_refusals(tmp_path: Path, gpus: str, message: str) -> None:
    with pytest.raises(GpuUnavailable) as e:
        discover(gpus, fake_host(tmp_path / "host"), "")
    assert str(e.value) == message


def test_no_gpu_or_no_driver_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(GpuUnavailable) as e:
        discover("all", tmp_path, "")
    assert str(e.value).startswith("no NVIDIA GPU here: /dev/nvidiactl is missing")
    root = fake_host(tmp_path / "host")
    shutil.rmtree(root / "usr/lib")
    with pytest.raises(GpuUnavailable, match="NVIDIA's driver libraries are not on this host"):
        discover("all", root, "")


def in_bubblewrap(gpu: HostGpu, script: str) -> list[str]:
    """The lines `script` prints in a run over this machine's read-only / with `gpu` passed in."""
    argv = [require_tool("bwrap"), "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev"]
    argv += ["--tmpfs", "/tmp", *gpu_binds(gpu, Path("/"))]
    run = subprocess.run([*argv, "sh", "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return run.stdout.split("\n")


def test_gpu_binds_under_bubblewrap(tmp_path: Path) -> None:
    # The fake host's GPU passed into a run over this machine's read-only /, as a model gets it.
    gpu = discover("all", fake_host(tmp_path / "host"), LDCONFIG)
    script = (
        "ls /dev/nvidia* -d; cat /usr/local/nvidia/lib64/libcuda.so.1; echo; "
        "ls /usr/local/nvidia/lib64; /usr/local/nvidia/bin/nvidia-smi; "
        "touch /usr/local/x 2>/dev/null || echo ro"
    )
    assert in_bubblewrap(gpu, script) == [
        "/dev/nvidia-caps",
        "/dev/nvidia-uvm",
        "/dev/nvidia0",
        "/dev/nvidia1",
        "/dev/nvidiactl",
        "libcuda.so.580.1",
        "libcuda.so.1",
        "libcuda.so.580.1",
        "libnvidia-ml.so.1",
        "libnvidia-ml.so.580.1",
        "libnvidia-nvvm.so.4",
        "libnvidia-ptxjitcompiler.so.1",
        "GPU 0: fake",
        "ro",
        "",
    ]


def test_driver_joins_the_library_path(tmp_path: Path) -> None:
    gpu = discover("all", fake_host(tmp_path / "host"), "")
    assert with_driver({"LD_LIBRARY_PATH": "/a", "PATH": "/bin"}, gpu) == {
        "LD_LIBRARY_PATH": "/a:/usr/local/nvidia/lib64",
        "PATH": "/bin:/usr/local/nvidia/bin",
    }
    gpu_image = {"LD_LIBRARY_PATH": "/usr/local/nvidia/lib64:/b", "PATH": "/usr/local/nvidia/bin"}
    assert with_driver(gpu_image, gpu) == gpu_image and with_driver({}, None) == {}


@pytest.mark.skipif(Path("/dev/nvidiactl").exists(), reason="this host has a GPU")
@pytest.mark.parametrize("command", [["run"], ["serve", "-p", "0"], ["exec", "python"]])
def test_gpus_without_a_gpu_is_one_sentence(
    offline: dict[str, str], tmp_path: Path, command: list[str]
) -> None:
    root = gpu_project(tmp_path, "  gpu: true\n", "        return 'x'")
    result = cog(root, offline, command[0], "--gpus", "all", *command[1:])
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == (
        "error: no NVIDIA GPU here: /dev/nvidiactl is missing, so --gpus has nothing to pass in"
    ), result.stderr
    assert not (root / "cog.lock").exists()  # before anything was locked or built


# CDI: the GPU as a spec in the (fake) host's /etc/cdi or /var/run/cdi describes it, written as
# `nvidia-ctk cdi generate` writes one: each GPU by index and by UUID, and `all`.
LIB = "/usr/lib/x86_64-linux-gnu"


def link_hook(*links: str) -> dict[str, Any]:
    args = ["nvidia-cdi-hook", "create-symlinks"]
    for link in links:
        args += ["--link", link]
    return {"hookName": "createContainer", "path": "/usr/bin/nvidia-cdi-hook", "args": args}


def nvidia_spec(gpus: int = 2, all_device: bool = True) -> dict[str, Any]:
    def nodes(i: int) -> list[dict[str, str]]:
        return [{"path": f"/dev/nvidia{i}"}, {"path": f"/dev/dri/card{i + 1}"}]

    def by_path(*gpus: int) -> list[dict[str, Any]]:
        return [link_hook(*(f"../card{i + 1}::/dev/dri/by-path/pci-0{i}-card" for i in gpus))]

    def bind(host: str, target: str | None = None, mode: str = "ro") -> dict[str, Any]:
        options = [mode, "nosuid", "nodev", "bind"]
        return {"hostPath": host, "containerPath": target or host, "options": options}

    devices: list[dict[str, Any]] = [
        {"name": name, "containerEdits": {"deviceNodes": nodes(i), "hooks": by_path(i)}}
        for i in range(gpus)
        for name in (str(i), f"GPU-{i}aaa")
    ]
    if all_device:
        every = [node for i in range(gpus) for node in nodes(i)]
        edits = {"deviceNodes": every, "hooks": by_path(*range(gpus))}
        devices.append({"name": "all", "containerEdits": edits})
    ldcache = {
        "hookName": "createContainer",
        "path": "/usr/bin/nvidia-cdi-hook",
        "args": ["nvidia-cdi-hook", "update-ldcache", "--folder", LIB],
    }
    vulkan = "vulkan/icd.d/nvidia_icd.json"
    return {
        "cdiVersion": "0.5.0",
        "kind": "nvidia.com/gpu",
        "devices": devices,
        "containerEdits": {
            "env": ["NVIDIA_VISIBLE_DEVICES=void"],
            "deviceNodes": [{"path": "/dev/nvidiactl"}, {"path": "/dev/nvidia-uvm"}],
            "hooks": [
                link_hook(f"libcuda.so.1::{LIB}/libcuda.so", "../x.so.1::/usr/lib/gbm/x.so"),
                ldcache,
            ],
            "mounts": [
                bind(f"{LIB}/libcuda.so.580.1"),
                bind(f"{LIB}/libnvidia-ml.so.580.1"),
                bind("/usr/bin/nvidia-smi"),
                bind(f"/usr/share/{vulkan}", f"/etc/{vulkan}"),
                bind("/tmp/nvidia-mps", mode="rw"),
            ],
        },
    }


def write_spec(root: Path, where: str, spec: Any) -> Path:
    """`spec` as a file of the host at `root`: JSON or YAML as its name says."""
    path = root / where.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(spec) if path.suffix == ".json" else yaml.safe_dump(spec)
    path.write_text(text if isinstance(spec, dict) else str(spec))
    return path


def cdi_host(root: Path, spec: str = "/etc/cdi/nvidia.yaml") -> Path:
    """fake_host, with the files nvidia_spec names and the spec at `spec`."""
    fake_host(root)
    (root / "dev/dri").mkdir()
    for name in ("card1", "card2"):
        (root / "dev/dri" / name).write_text("")
    (root / "tmp/nvidia-mps").mkdir(parents=True)
    (root / "usr/share/vulkan/icd.d").mkdir(parents=True)
    (root / "usr/share/vulkan/icd.d/nvidia_icd.json").write_text("{}")
    write_spec(root, spec, nvidia_spec())
    return root


def contains(argv: list[str], *part: str) -> bool:
    return any(argv[i : i + len(part)] == list(part) for i in range(len(argv)))


def test_cdi_spec_gives_the_gpu(tmp_path: Path) -> None:
    root = cdi_host(tmp_path / "host")
    gpu = discover("all", root, LDCONFIG)
    # The spec's nodes: its own, then the `all` device's.
    assert gpu.devices == {
        path: root / path[1:]
        for path in (
            "/dev/nvidiactl",
            "/dev/nvidia-uvm",
            "/dev/nvidia0",
            "/dev/dri/card1",
            "/dev/nvidia1",
            "/dev/dri/card2",
        )
    }
    # Only the libraries it mounts (not the ld cache's or /usr/local/nvidia/lib64's), each by
    # the names the host's links give it (the SONAME) and by create-symlinks' links there.
    cuda, ml = root / LIB[1:] / "libcuda.so.580.1", root / LIB[1:] / "libnvidia-ml.so.580.1"
    assert gpu.libraries == {
        "libcuda.so.580.1": cuda,
        "libcuda.so.1": cuda,
        "libcuda.so": cuda,
        "libnvidia-ml.so.580.1": ml,
        "libnvidia-ml.so.1": ml,
    }
    assert gpu.binaries == {"nvidia-smi": root / "usr/bin/nvidia-smi"} and gpu.smi is not None
    assert gpu.env == {"NVIDIA_VISIBLE_DEVICES": "void"}
    # /tmp/nvidia-mps, writable as the spec says; Vulkan's file (for /etc) is left out.
    assert gpu.mounts == {"/tmp/nvidia-mps": (root / "tmp/nvidia-mps", True)}
    assert gpu.links == {
        "/dev/dri/by-path/pci-00-card": "../card1",
        "/dev/dri/by-path/pci-01-card": "../card2",
    }
    argv = gpu_binds(gpu, root)
    assert contains(argv, "--dev-bind", str(root / "dev/dri/card2"), "/dev/dri/card2")
    assert contains(argv, "--bind", str(root / "tmp/nvidia-mps"), "/tmp/nvidia-mps")
    assert contains(argv, "--symlink", "../card2", "/dev/dri/by-path/pci-01-card")
    assert contains(argv, "--ro-bind", str(cuda), "/usr/local/nvidia/lib64/libcuda.so")
    smi = str(root / "usr/bin/nvidia-smi")
    assert contains(argv, "--ro-bind", smi, "/usr/local/nvidia/bin/nvidia-smi")
    assert not any("vulkan" in arg for arg in argv)
    # The spec's variables, and the driver's folders as without a spec.
    assert with_driver({"NVIDIA_VISIBLE_DEVICES": "all", "PATH": "/bin"}, gpu) == {
        "NVIDIA_VISIBLE_DEVICES": "void",
        "LD_LIBRARY_PATH": "/usr/local/nvidia/lib64",
        "PATH": "/bin:/usr/local/nvidia/bin",
    }


@pytest.mark.parametrize(
    ("gpus", "all_device", "expect"),
    [
        ("all", False, ["/dev/nvidia0", "/dev/nvidia1"]),  # no `all`: every device
        ("1", True, ["/dev/nvidia0"]),  # a count takes devices named by index, in order
        ("2", True, ["/dev/nvidia0", "/dev/nvidia1"]),
        ("device=1", True, ["/dev/nvidia1"]),
        ("device=GPU-1aaa,0", True, ["/dev/nvidia1", "/dev/nvidia0"]),  # by the spec's names
    ],
)
def test_cdi_device_selection(
    tmp_path: Path, gpus: str, all_device: bool, expect: list[str]
) -> None:
    root = cdi_host(tmp_path / "host", spec="/var/run/cdi/nvidia.json")
    write_spec(root, "/var/run/cdi/nvidia.json", nvidia_spec(all_device=all_device))
    devices = discover(gpus, root, "").devices
    assert [d for d in devices if d.startswith("/dev/nvidia") and d[-1].isdigit()] == expect


def test_cdi_var_run_takes_precedence(tmp_path: Path) -> None:
    root = cdi_host(tmp_path / "host")
    # The same device names in /var/run/cdi: there, GPU 0 is the host's /dev/nvidia1.
    moved = nvidia_spec()
    moved["devices"][0]["containerEdits"]["deviceNodes"] = [
        {"path": "/dev/nvidia0", "hostPath": "/dev/nvidia1"}
    ]
    moved["containerEdits"]["env"] = ["FROM=var-run"]
    write_spec(root, "/var/run/cdi/nvidia.json", moved)
    gpu = discover("device=0", root, "")
    assert gpu.devices["/dev/nvidia0"] == root / "dev/nvidia1"
    assert gpu.env == {"FROM": "var-run"}
    # Two specs of one folder defining a name: that device is unusable, the others are not.
    write_spec(
        root,
        "/etc/cdi/other.yaml",
        {
            **nvidia_spec(1, False),
            "devices": [
                {"name": "1", "containerEdits": {"deviceNodes": [{"path": "/dev/nvidia0"}]}}
            ],
        },
    )
    with pytest.raises(GpuUnavailable) as e:
        discover("device=1", root, "")
    assert str(e.value) == (
        "CDI device nvidia.com/gpu=1 is defined twice, in /etc/cdi/nvidia.yaml and "
        "/etc/cdi/other.yaml"
    )
    assert "/dev/nvidia0" in discover("device=0", root, "").devices


def test_another_kind_of_cdi_spec_leaves_discovery_as_it_was(tmp_path: Path) -> None:
    root = fake_host(tmp_path / "host")
    write_spec(root, "/etc/cdi/amd.yaml", {**nvidia_spec(), "kind": "amd.com/gpu"})
    write_spec(root, "/etc/cdi/notes.txt", "not a spec: only *.json and *.yaml are")
    gpu = discover("all", root, LDCONFIG)
    assert "libnvidia-ptxjitcompiler.so.1" in gpu.libraries and "/dev/nvidia-caps" in gpu.devices
    assert gpu.env == {} and gpu.mounts == {} and gpu.links == {}


STALE = f"{LIB}/libcuda.so.575.1"  # the driver before an upgrade


def broken(spec: dict[str, Any], *keys: str | int, value: Any = None) -> dict[str, Any]:
    """`spec` with the item at `keys` set to `value` (removed where `value` is None)."""
    where: Any = spec
    for key in keys[:-1]:
        where = where[key]
    if value is None:
        del where[keys[-1]]
    else:
        where[keys[-1]] = value
    return spec


@pytest.mark.parametrize(
    ("where", "spec", "gpus", "message"),
    [
        (
            "nvidia.yaml",
            "kind: nvidia.com/gpu\ndevices: [\n",
            "all",
            "the CDI spec /etc/cdi/nvidia.yaml is malformed: it is not YAML (line 3)",
        ),
        (
            "nvidia.json",
            '{"kind": "nvidia.com/gpu",}',
            "all",
            "the CDI spec /etc/cdi/nvidia.json is malformed: it is not JSON (line 1: Expecting "
            "property name enclosed in double quotes)",
        ),
        (
            "nvidia.yaml",
            broken(nvidia_spec(), "containerEdits", "mounts", 0, "hostPath"),
            "all",
            "the CDI spec /etc/cdi/nvidia.yaml is malformed: containerEdits.mounts[0] has no "
            "hostPath",
        ),
        (
            "nvidia.json",
            broken(nvidia_spec(), "devices", 0, "name", value=0),
            "all",
            "the CDI spec /etc/cdi/nvidia.json is malformed: devices[0] has no name (a string: "
            "quote a number)",
        ),
        (
            "nvidia.yaml",
            broken(nvidia_spec(), "devices", 1, "containerEdits", "deviceNodes", value="x"),
            "all",
            "the CDI spec /etc/cdi/nvidia.yaml is malformed: devices[1].containerEdits."
            "deviceNodes is not a list",
        ),
        (
            "nvidia.yaml",
            broken(nvidia_spec(), "containerEdits", "mounts", 0, "hostPath", value=STALE),
            "all",
            f"the CDI spec /etc/cdi/nvidia.yaml names {LIB}/libcuda.so.575.1, which this host "
            "does not have",
        ),
        (
            "nvidia.yaml",
            broken(nvidia_spec(), "containerEdits", "mounts", value=[]),
            "all",
            "the CDI spec /etc/cdi/nvidia.yaml mounts no libcuda.so, so CUDA could not load in "
            "the run",
        ),
        (
            "nvidia.yaml",
            nvidia_spec(),
            "device=7",
            "--gpus device=7: no CDI spec for nvidia.com/gpu defines device 7 (they define 0, "
            "GPU-0aaa, 1, GPU-1aaa, all)",
        ),
        (
            "nvidia.yaml",
            nvidia_spec(),
            "3",
            "--gpus 3 asks for 3 GPUs, but the CDI specs for nvidia.com/gpu define 2",
        ),
    ],
)
def test_cdi_refusals(tmp_path: Path, where: str, spec: Any, gpus: str, message: str) -> None:
    root = cdi_host(tmp_path / "host")
    (root / "etc/cdi/nvidia.yaml").unlink()
    write_spec(root, f"/etc/cdi/{where}", spec)
    with pytest.raises(GpuUnavailable) as e:
        discover(gpus, root, LDCONFIG)
    assert str(e.value) == message
    if "malformed" in message or "host does not have" in message:
        assert e.value.hint is not None and "nvidia-ctk cdi generate" in e.value.hint


def test_cdi_gpu_under_bubblewrap(tmp_path: Path) -> None:
    # A spec's GPU passed into a run over this machine's read-only /, as a model gets it.
    gpu = discover("device=0", cdi_host(tmp_path / "host"), "")
    script = (
        "ls -d /dev/nvidia* /dev/dri/*; readlink /dev/dri/by-path/*; "
        "cat /usr/local/nvidia/lib64/libcuda.so; echo; ls /usr/local/nvidia/lib64; "
        "/usr/local/nvidia/bin/nvidia-smi; touch /tmp/nvidia-mps/pipe && echo rw; "
        "ls /etc/vulkan 2>/dev/null || echo 'no vulkan'"
    )
    assert in_bubblewrap(gpu, script) == [
        "/dev/dri/by-path",
        "/dev/dri/card1",
        "/dev/nvidia-uvm",
        "/dev/nvidia0",
        "/dev/nvidiactl",
        "../card1",
        "libcuda.so.580.1",
        "libcuda.so",
        "libcuda.so.1",
        "libcuda.so.580.1",
        "libnvidia-ml.so.1",
        "libnvidia-ml.so.580.1",
        "GPU 0: fake",
        "rw",
        "no vulkan",
        "",
    ]

"""The host's NVIDIA GPU for a native run (`--gpus`), passed in as nvidia-container-toolkit
passes it into a container: the device nodes, and the driver's user-space libraries bound
read-only into one folder, /usr/local/nvidia/lib64, which a GPU image's LD_LIBRARY_PATH names.

The driver is never in an image: it must match the host's kernel module, so it comes from the
host at run time. Discovery takes a `root` so tests can give it a fake tree.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from builders.errors import BuildError

DRIVER_DIR = "/usr/local/nvidia/lib64"
DRIVER_BIN = "/usr/local/nvidia/bin"  # nvidia-smi, on PATH in the nvidia/cuda images
# nvidia-container-toolkit's libraries for the `utility` and `compute` capabilities
# (libnvidia-container's nvc_info.c): what CUDA, NVML and nvidia-smi load from the driver.
DRIVER_LIBRARIES = (
    "libnvidia-ml",
    "libnvidia-cfg",
    "libnvidia-nscq",
    "libcuda",
    "libcudadebugger",
    "libnvidia-opencl",
    "libnvidia-gpucomp",
    "libnvidia-ptxjitcompiler",
    "libnvidia-fatbinaryloader",
    "libnvidia-allocator",
    "libnvidia-compiler",
    "libnvidia-pkcs11",
    "libnvidia-pkcs11-openssl3",
    "libnvidia-nvvm",
)
_LIBRARY = re.compile(rf"^({'|'.join(map(re.escape, DRIVER_LIBRARIES))})\.so(\.[0-9.]+)?$")
# Where distributions and GKE-style hosts put the driver, for a host without an ld cache entry.
LIBRARY_DIRS = (
    "usr/local/nvidia/lib64",
    "usr/lib/x86_64-linux-gnu",
    "usr/lib/aarch64-linux-gnu",
    "usr/lib64",
    "usr/lib",
    "lib/x86_64-linux-gnu",
    "lib64",
)
# Nodes every GPU needs (control, unified memory, modesetting); /dev/nvidiaN are the GPUs.
SHARED_NODES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")
BINARY_DIRS = ("usr/local/nvidia/bin", "usr/bin", "usr/local/bin", "bin")


class GpuUnavailable(BuildError):
    """`--gpus` cannot be honoured here; said before anything is built or started."""


@dataclass(frozen=True)
class HostGpu:
    devices: dict[str, Path]  # path in the run -> the host's node
    libraries: dict[str, Path]  # file name in DRIVER_DIR -> the host's file
    smi: Path | None  # the host's nvidia-smi, if it has one


def _gpu_nodes(dev: Path) -> list[str]:
    found = [p.name for p in dev.glob("nvidia*") if re.fullmatch(r"nvidia\d+", p.name)]
    return sorted(found, key=lambda name: int(name[6:]))


def _chosen(gpus: str, nodes: list[str]) -> list[str]:
    """`--gpus` as `docker run` reads it: all, a count, or device=0,2."""
    if gpus == "all":
        return nodes
    if gpus.isdigit():
        count = int(gpus)
        if not 1 <= count <= len(nodes):
            raise GpuUnavailable(
                f"--gpus {gpus} asks for {count} GPUs, but this host has {len(nodes)}",
                hint="pass --gpus all, or a count up to that",
            )
        return nodes[:count]
    if gpus.startswith("device="):
        picked = [d.strip() for d in gpus.removeprefix("device=").split(",") if d.strip()]
        if not picked or not all(d.isdigit() for d in picked):
            raise GpuUnavailable(
                f"--gpus {gpus}: native runs name devices by index",
                hint="e.g. --gpus device=0,1",
            )
        missing = [d for d in picked if f"nvidia{d}" not in nodes]
        if missing:
            raise GpuUnavailable(
                f"--gpus {gpus}: this host has no GPU {', '.join(missing)} (it has "
                f"{', '.join(n[6:] for n in nodes)})"
            )
        return [f"nvidia{d}" for d in picked]
    raise GpuUnavailable(
        f"--gpus {gpus!r} is not all, a count or device=INDEX,...", hint="e.g. --gpus all"
    )


def ld_cache() -> str:
    """`ldconfig -p`, or nothing where there is no ldconfig."""
    for tool in ("ldconfig", "/sbin/ldconfig", "/usr/sbin/ldconfig"):
        try:
            return subprocess.run(
                [tool, "-p"], capture_output=True, text=True, check=False, timeout=30
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
    return ""


def _libraries(root: Path, cache: str) -> dict[str, Path]:
    """The driver's libraries by file name: the ld cache's entries first (`name (…) => path`),
    then the usual folders. Every name a loader may ask for (libcuda.so.1, and the fully
    versioned file it links to) gets an entry."""
    found: dict[str, Path] = {}
    for line in cache.splitlines():
        name, arrow, path = line.strip().partition(" => ")
        name, _, flags = name.partition(" (")
        # 64-bit entries only: a multilib host lists the 32-bit driver as `(libc6)` too.
        if arrow and re.search("x86-64|AArch64", flags) and _LIBRARY.match(name):
            found.setdefault(name, root / path.strip().lstrip("/"))
    for folder in LIBRARY_DIRS:
        where = root / folder
        if where.is_dir():
            for entry in sorted(where.iterdir()):
                if _LIBRARY.match(entry.name):
                    found.setdefault(entry.name, entry)
    # Files that are there, as what they point to (a bind of a link would follow it anyway).
    return {name: Path(os.path.realpath(path)) for name, path in found.items() if path.exists()}


def discover(gpus: str, root: Path = Path("/"), cache: str | None = None) -> HostGpu:
    """The device nodes and driver libraries of the host at `root` for `--gpus gpus`; one
    sentence when there is no GPU or driver. `cache` is `ldconfig -p`'s text (read from the
    host when `root` is /)."""
    dev = root / "dev"
    if not (dev / "nvidiactl").exists():
        raise GpuUnavailable(
            "no NVIDIA GPU here: /dev/nvidiactl is missing, so --gpus has nothing to pass in",
            hint="run without --gpus (the model runs on CPU), or on a host with NVIDIA's driver",
        )
    nodes = _gpu_nodes(dev)
    if not nodes:
        raise GpuUnavailable(
            "no NVIDIA GPU here: /dev/nvidiactl is there but no /dev/nvidia0",
            hint="check `nvidia-smi` on this host",
        )
    names = [name for name in SHARED_NODES if (dev / name).exists()] + _chosen(gpus, nodes)
    if (dev / "nvidia-caps").is_dir():  # MIG and capability nodes
        names.append("nvidia-caps")
    devices = {f"/dev/{name}": dev / name for name in names}
    if cache is None:
        cache = ld_cache() if root == Path("/") else ""
    libraries = _libraries(root, cache)
    if not any(name.startswith("libcuda.so") for name in libraries):
        raise GpuUnavailable(
            "NVIDIA's driver libraries are not on this host: no libcuda.so in the ld cache or "
            f"in /{', /'.join(LIBRARY_DIRS)}",
            hint="install the NVIDIA driver's user-space libraries, or run without --gpus",
        )
    smi = next(
        (root / d / "nvidia-smi" for d in BINARY_DIRS if (root / d / "nvidia-smi").is_file()),
        None,
    )
    return HostGpu(devices, libraries, smi)


def _is_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _driver_mount(root: Path) -> tuple[list[str], str]:
    """bwrap arguments for a writable tmpfs that /usr/local/nvidia can be made in, under a
    read-only root that may lack it (a minimal userland has no /usr/local): over the nearest
    folder the root has, showing what it had there (links as links); and that folder."""
    if _is_folder(root / "usr/local/nvidia"):  # the host driver's place: nothing to show
        return ["--tmpfs", "/usr/local/nvidia"], "/usr/local/nvidia"
    target = next((t for t in ("/usr/local", "/usr") if _is_folder(root / t[1:])), None)
    if target is None:
        raise GpuUnavailable("cannot pass the GPU in: the run's root has no /usr folder")
    argv = ["--tmpfs", target]
    for entry in sorted((root / target[1:]).iterdir()):
        if entry.is_symlink():
            argv += ["--symlink", os.readlink(entry), f"{target}/{entry.name}"]
        else:
            argv += ["--ro-bind", str(entry), f"{target}/{entry.name}"]
    return argv, target


def gpu_binds(host: HostGpu, root: Path) -> list[str]:
    """bwrap arguments that pass the GPU into a run over `root` (the run's read-only /): each
    device node, each driver library read-only in /usr/local/nvidia/lib64, nvidia-smi in
    /usr/local/nvidia/bin; the tmpfs they are made in is made read-only again."""
    argv: list[str] = []
    for target, node in host.devices.items():
        argv += ["--dev-bind", str(node), target]
    made, target = _driver_mount(root)
    argv += made
    for name, path in sorted(host.libraries.items()):
        argv += ["--ro-bind", str(path), f"{DRIVER_DIR}/{name}"]
    if host.smi is not None:
        argv += ["--ro-bind", str(host.smi), f"{DRIVER_BIN}/nvidia-smi"]
    return [*argv, "--remount-ro", target]

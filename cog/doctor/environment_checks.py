"""The checks of what a build here needs: the channel's Python, the sandbox for build steps,
and whether the pinned torch has kernels for this machine's GPUs."""

from __future__ import annotations

import os

from cog.doctor.model import Check, Context, Finding, Group, Severity
from derivations.config import ConfigError


class PythonVersion(Check):
    """Cog compares the local Python with cog.yaml's; here the interpreter comes from the
    project's channel, so the question is whether that channel has the version."""

    name = "env-python-version"
    group = Group.ENVIRONMENT
    description = "Python version"

    def check(self, ctx: Context) -> list[Finding]:
        from cuda_channels.channel import load
        from derivations.lock import Lock, LockError, channel_name, read

        if ctx.config is None:
            return []
        try:
            lock: Lock | None = read(ctx.project)
        except (OSError, LockError):  # a lock this cog cannot read names no channel
            lock = None
        channel = load(channel_name(ctx.config, lock))
        version = ctx.config.build.python_version
        if version in channel.python:
            return []
        known = ", ".join(sorted(channel.python, key=lambda v: tuple(map(int, v.split(".")))))
        return [
            Finding(
                Severity.ERROR,
                f"channel {channel.name} has no Python {version} (it has {known})",
                f"Set build.python_version in {ctx.config_name} to one of {known}",
                ctx.config_name,
            )
        ]


class Sandbox(Check):
    """Build steps that run foreign code (build.run, source distributions) run under
    bubblewrap; Cog's Docker check has no counterpart here, since nothing needs Docker."""

    name = "env-sandbox"
    group = Group.ENVIRONMENT
    description = "Sandbox"

    def check(self, ctx: Context) -> list[Finding]:
        from builders.sandbox.jail import bwrap_path, sandbox_works
        from builders.sandbox.network import network_problem

        if sandbox_works():
            problem = network_problem()
            if problem is None:
                return []
            why, fix = problem
            return [
                Finding(
                    Severity.WARNING,
                    f"{why}, so models run natively and build steps that need the network "
                    "cannot have a network of their own",
                    fix[0].upper() + fix[1:],
                )
            ]
        if bwrap_path() is None:
            message = "bubblewrap (bwrap) is not installed"
        else:
            message = "bubblewrap (bwrap) cannot create namespaces here"
        return [
            Finding(
                Severity.WARNING,
                message + ", so build steps that run commands cannot be sandboxed",
                "Install bubblewrap (apt-get install bubblewrap) and allow unprivileged "
                "user namespaces",
            )
        ]


# The oldest torch (and CUDA) with kernels for a compute capability, by the highest entry a
# device meets: Cog's doctor table (pkg/doctor/gpu_compatibility.go), measured there from each
# wheel's torch._C._cuda_getArchFlags(). Cubins cross no capability major without PTX.
GPU_FLOORS: dict[tuple[int, int], tuple[str, str]] = {
    (12, 0): ("2.7.0", "12.8"),  # Blackwell consumer, RTX 50xx
    (10, 0): ("2.7.0", "12.8"),  # Blackwell datacenter, B100/B200
    (9, 0): ("2.0.1", "11.8"),  # Hopper, H100
}


def compute_capabilities() -> list[tuple[int, int]]:
    """This machine's GPUs' compute capabilities, distinct and ascending; none without
    nvidia-smi or a driver."""
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    query = [smi, "--query-gpu=compute_cap", "--format=csv,noheader"]
    try:
        out = subprocess.run(query, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return []
    found = set()
    for line in out.stdout.splitlines():
        major, dot, minor = line.strip().partition(".")
        if dot and major.isdigit() and minor.isdigit():
            found.add((int(major), int(minor)))
    return sorted(found)


class GpuCompatibility(Check):
    """As Cog's: the pinned torch and its CUDA against the compute capability of each GPU
    here, since an image built for a wheel without kernels for it fails every CUDA call."""

    name = "env-gpu-compat"
    group = Group.ENVIRONMENT
    description = "GPU compatibility"

    def check(self, ctx: Context) -> list[Finding]:
        from packaging.version import Version

        from cuda_channels.cuda import CudaError, load_cuda, pins, select
        from derivations.config import requirement_lines

        config = ctx.config
        if os.environ.get("COG_SKIP_GPU_CHECK") or config is None or not config.build.gpu:
            return []
        try:
            lines = requirement_lines(config, ctx.project)
            torch = pins(lines).get("torch")
            cuda = select(load_cuda(), lines, config.build.cuda, config.build.cudnn).cuda
        except (ConfigError, CudaError):  # other checks and `cog lock` say what is wrong
            return []
        if torch is None:
            return []
        release = Version(torch.partition("+")[0])  # 2.7.0+cu128 meets the 2.7.0 floor
        findings = []
        for capability in compute_capabilities():
            floor = max((k for k in GPU_FLOORS if capability >= k), default=None)
            if floor is None:
                continue
            min_torch, min_cuda = GPU_FLOORS[floor]
            if release >= Version(min_torch) and Version(cuda) >= Version(min_cuda):
                continue
            sm = f"sm_{capability[0]}{capability[1]}"
            findings.append(
                Finding(
                    Severity.WARNING,
                    f"torch=={torch} (CUDA {cuda}) ships no kernels for {sm}, the compute "
                    "capability of this machine's GPU. The image will build, but every CUDA "
                    'operation in it will fail at runtime with "no kernel image is available '
                    'for execution on the device".',
                    f"{sm} requires torch>={min_torch} built against CUDA>={min_cuda}. Pin a "
                    "newer torch, or set COG_SKIP_GPU_CHECK=1 if you are building for a "
                    "different GPU than the one in this machine.",
                )
            )
        return findings

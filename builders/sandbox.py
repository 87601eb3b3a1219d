"""Running foreign code (user `run:` commands, sdist builds, maintainer scripts) in bubblewrap.

Inside: no network, the input closure read-only at /cog/store, the output writable at its own
store path, a private /tmp, /proc and a minimal /dev, an optional root filesystem (a store path
mounted read-only at /) and nothing else of the host. The environment is exactly what the
derivation sets plus `out`, `TMPDIR` and `HOME`.
"""

from __future__ import annotations

import os
import select
import shutil
import stat
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from builders.base import BuildContext
from builders.errors import BuildError, SandboxUnavailable
from store.paths import STORE_DIR

_checked: dict[str, bool] = {}


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def sandbox_works() -> bool:
    """Whether bwrap exists and can create namespaces here (cached per process)."""
    exe = bwrap_path()
    if exe is None:
        return False
    if exe not in _checked:
        probe = subprocess.run(
            [exe, "--unshare-all", "--ro-bind", "/", "/", "true"],
            capture_output=True,
            timeout=30,
            check=False,
        )
        _checked[exe] = probe.returncode == 0
    return _checked[exe]


def build_env(ctx: BuildContext, out: str) -> dict[str, str]:
    env = {"PATH": "/path-not-set", "HOME": "/homeless-shelter", "TMPDIR": "/tmp"}
    env.update({role: str(p) for role, p in ctx.input_paths.items()})
    env.update(ctx.drv.env)
    env["out"] = out
    return env


def bwrap_argv(
    ctx: BuildContext, argv: Sequence[str], rootfs: Path | None = None, output: bool = True
) -> list[str]:
    exe = bwrap_path()
    if exe is None:
        raise SandboxUnavailable("bubblewrap (bwrap) is not installed")
    cmd = [exe, "--unshare-all", "--die-with-parent", "--new-session", "--hostname", "localhost"]
    if rootfs is not None:
        cmd += ["--ro-bind", str(rootfs), "/"]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    # Over a read-only root the store's mount points need a writable layer of their own.
    cmd += ["--tmpfs" if rootfs is not None else "--dir", STORE_DIR]
    for path in ctx.closure:
        cmd += ["--ro-bind", str(ctx.store.real_path(path)), str(path)]
    if output:
        ctx.out.mkdir()
        cmd += ["--bind", str(ctx.out), str(ctx.out_path)]
    build_dir = ctx.scratch / "build"
    build_dir.mkdir(exist_ok=True)
    cmd += ["--bind", str(build_dir), "/build"]
    cmd += ["--chdir", "/build", "--", *argv]
    return cmd


def _unsandboxed(
    ctx: BuildContext, argv: Sequence[str], env: Mapping[str, str], output: bool
) -> tuple[list[str], dict[str, str]]:
    """--no-sandbox: the host runs the command, with /cog/store/ rewritten to the real store."""
    real = str(ctx.store.root)

    def fix(s: str) -> str:
        return s.replace(STORE_DIR + "/", real + "/")

    if output:
        ctx.out.mkdir()
    return [fix(a) for a in argv], {k: fix(v) for k, v in env.items()} | {"out": str(ctx.out)}


def run_command(
    ctx: BuildContext, argv: Sequence[str], rootfs: Path | None = None, output: bool = True
) -> None:
    """Runs `argv` for the derivation, its output going to the log; kills it on cancel.

    With `output`, the command writes the derivation's output itself (made here, bound
    writable). Without it, the output is not visible to the command: a builder whose host-side
    code writes the output after running foreign code must pass False, so that the foreign code
    cannot plant a link in it that the host would then write through. Files the command leaves
    in /build are read back with `read_result`, never by following a link."""
    env = build_env(ctx, str(ctx.out_path))
    if ctx.sandbox:
        if not sandbox_works():
            raise SandboxUnavailable(
                f"{ctx.drv.name} runs foreign code and must be sandboxed, but bubblewrap is "
                "missing or cannot create namespaces here"
            )
        cmd, cwd = bwrap_argv(ctx, argv, rootfs, output), None
    else:
        ctx.say("warning: building without a sandbox; the output may depend on this host")
        cmd, env = _unsandboxed(ctx, argv, env, output)
        cwd = ctx.scratch
    code = run_logged(ctx, cmd, env, cwd)
    if code != 0:
        raise BuildError(f"the builder of {ctx.drv.name} exited with status {code}")


def run_logged(
    ctx: BuildContext, cmd: Sequence[str], env: Mapping[str, str], cwd: Path | None = None
) -> int:
    """Runs `cmd` with its output in the build's log; kills its process group on cancel.
    Returns its exit status."""
    ctx.log.flush()
    try:
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=ctx.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as e:
        raise BuildError(f"cannot start the builder of {ctx.drv.name}: {e.strerror}") from None
    try:
        return _wait(ctx, proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()


def _wait(ctx: BuildContext, proc: subprocess.Popen[bytes]) -> int:
    """The exit status, seen as soon as the process exits (its pidfd becomes readable), with
    the cancel flag checked every 0.1 s. `Popen.wait(timeout)` polls with growing sleeps: a
    60 ms command was seen to end at 100 ms, and a build runs hundreds of short commands."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except OSError:  # a kernel before 5.3
        while True:
            try:
                return proc.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                ctx.check_cancelled()
    try:
        exited = select.poll()  # (not select.select: it refuses descriptors past 1023)
        exited.register(pidfd, select.POLLIN)
        while not exited.poll(100):
            ctx.check_cancelled()
        return proc.wait()
    finally:
        os.close(pidfd)


def read_result(ctx: BuildContext, name: str, limit: int = 64 << 20) -> bytes:
    """A regular file that sandboxed code left in /build, read without following a link (the
    code may have replaced it with a link to a host file, which must never be read)."""
    path = ctx.scratch / "build" / name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        raise BuildError(f"{ctx.drv.name} left no readable /build/{name} ({e.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise BuildError(f"{ctx.drv.name} left /build/{name} as something other than a file")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise BuildError(f"{ctx.drv.name} left a /build/{name} larger than {limit} bytes")
    return data

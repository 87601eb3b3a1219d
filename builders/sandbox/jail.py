"""The sandbox: every process that runs foreign code (builders, `run:` steps, lock-time package
hooks, native model runs) runs in a `Jail`, whose policy is in this one place.

A builder's sandbox (`build_jail`): no network, the input closure read-only at /cog/store, the
output writable at its own store path, a private /tmp, /proc and a minimal /dev, an optional
root filesystem (a store path mounted read-only at /) and nothing else of the host. The
environment is exactly what the derivation sets plus `out`, `TMPDIR` and `HOME`.
"""

from __future__ import annotations

import os
import select
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builders.base import BuildContext
from builders.errors import BuildError, SandboxUnavailable
from builders.sandbox.network import OwnNetwork, etc_files
from builders.sandbox.seccomp import program
from store.paths import STORE_DIR

SAFE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

# What root inside may do, as in Docker's default set (less NET_RAW): enough for apt, dpkg and
# pip to own, chmod and write files, held over the sandbox's own user namespace alone. Never
# SYS_ADMIN (mounts), SYS_PTRACE, SYS_MODULE or any other that reaches past the namespace.
CAPABILITIES = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "SETFCAP",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "AUDIT_WRITE",
]


# Opens bubblewrap's options and the seccomp filter (files in a private folder, removed here
# once open) as descriptors 3 and 4 and execs bubblewrap on them with an empty environment (a
# shell exports PWD, the host's working directory), so that none of it is on any command line,
# in any environment or left on disk: pid 1 of the sandbox is bubblewrap, and its
# /proc/1/cmdline and /proc/1/environ are readable from inside. bubblewrap closes both once read.
# A jail's `files` are opened so too, as descriptors 5 and up (a shell names at most 9).
def _exec(files: int) -> str:
    data = "".join(f' {5 + i}<"$d/{5 + i}"' for i in range(files))
    return (
        f'b=$0 d=$1; shift; exec 3<"$d/args" 4<"$d/seccomp"{data}; rm -r "$d"; '
        'exec /usr/bin/env -i "$b" --args 3 --seccomp 4 "$@"'
    )


_MAX_FILES = 5


@dataclass(frozen=True)
class Launch:
    """A sandboxed command ready to start: its command line, and the network of its own to
    attach once it has started (None: it has none, or the host's)."""

    argv: list[str]
    network: OwnNetwork | None

    def start(self, **popen: Any) -> subprocess.Popen[bytes]:
        """Starts it (subprocess.Popen's keywords) and attaches its network; whoever waits for
        it then calls `stop`."""
        proc: subprocess.Popen[bytes] = subprocess.Popen(self.argv, **popen)
        if self.network is not None:
            try:
                self.network.attach(proc.pid)
            except BaseException:
                proc.kill()
                proc.wait()
                self.network.close()
                raise
        return proc

    def stop(self) -> None:
        """Ends its network, once the command has ended."""
        if self.network is not None:
            self.network.close()

    def run(self, env: Mapping[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
        """Runs it to the end, its output captured as text and its input nothing; past
        `timeout` seconds its whole session is killed and subprocess.TimeoutExpired raised."""
        proc = self.start(
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.communicate()
            self.stop()
        said = (out.decode(errors="replace"), err.decode(errors="replace"))
        return subprocess.CompletedProcess(self.argv, proc.returncode, *said)


@dataclass(frozen=True)
class Jail:
    """What one sandboxed command sees besides its command line: `mounts`, bubblewrap's mount
    options in order (host paths among them); its whole environment, `env`; its working
    directory; its network (`False`: none; `True`: the host's, where a model's server listens;
    an OwnNetwork: a namespace of its own); whether it keeps the terminal (`interactive`: an
    interactive `cog exec`); and `prefix`, a command that runs first, outside, and execs the
    rest (builders.sandbox.overlay mounts the root's overlay so). `files`, (path, bytes): files
    it sees read-only, copied in by bubblewrap from descriptors, never left on the host's disk.

    The policy is here alone, for builds, `run:` steps, lock-time hooks and model runs: every
    namespace unshared, the user namespace too (uid 0 inside holds its capabilities over that
    namespace only, never over the host, even when cog runs as root), Docker's default
    capabilities and no others (none that mounts), no further user namespaces, no_new_privs,
    the seccomp filter of builders.sandbox.seccomp, and nothing of cog's environment or command line
    visible: bubblewrap starts with only PATH and reads its options from a file."""

    mounts: Sequence[str]
    env: Mapping[str, str]
    chdir: str = "/"
    network: bool | OwnNetwork = False
    interactive: bool = False
    prefix: Sequence[str] = ()
    files: Sequence[tuple[str, bytes]] = ()

    def options(self) -> list[str]:
        opts = ["--unshare-all", "--unshare-user", "--disable-userns", "--uid", "0", "--gid", "0"]
        opts += ["--cap-drop", "ALL"]
        for cap in CAPABILITIES:
            opts += ["--cap-add", f"CAP_{cap}"]
        opts += ["--die-with-parent", "--hostname", "localhost"]
        # With its own network the namespace is the prefix's (OwnNetwork), shared here.
        opts += ["--share-net"] if self.network is not False else []
        # A new session keeps the command from the terminal; an interactive one needs it, and
        # the filter still refuses it TIOCSTI.
        opts += [] if self.interactive else ["--new-session"]
        opts += list(self.mounts)
        for fd, (target, _) in enumerate(self.files, start=5):
            opts += ["--ro-bind-data", str(fd), target]
        opts += ["--chdir", self.chdir, "--clearenv"]
        for key, value in sorted(self.env.items()):
            opts += ["--setenv", key, value]
        return opts

    def launch(self, command: Sequence[str]) -> Launch:
        own = self.network if isinstance(self.network, OwnNetwork) else None
        return Launch(self.argv(command), own)

    def argv(self, command: Sequence[str]) -> list[str]:
        """The command line that runs `command` in this sandbox. Its options wait in a private
        folder of the host's temporary directory until it starts."""
        exe = bwrap_path()
        if exe is None:
            raise SandboxUnavailable("bubblewrap (bwrap) is not installed")
        if len(self.files) > _MAX_FILES:
            raise ValueError(f"a jail takes at most {_MAX_FILES} files")
        folder = Path(tempfile.mkdtemp(prefix="cog-jail-"))
        (folder / "args").write_bytes(b"".join(o.encode() + b"\0" for o in self.options()))
        (folder / "seccomp").write_bytes(program())
        for fd, (_, data) in enumerate(self.files, start=5):
            (folder / str(fd)).write_bytes(data)
        clean = ["/usr/bin/env", "-i", f"PATH={SAFE_PATH}"]
        own = self.network.prefix() if isinstance(self.network, OwnNetwork) else []
        start = [*clean, *own, *self.prefix]
        return [*start, "/bin/sh", "-c", _exec(len(self.files)), exe, str(folder), "--", *command]


# What host tools need of the host's /etc: names, users, TLS trust; never the rest of it
# (shadow, ssh keys, cog's own configuration).
_HOST_ETC = ("resolv.conf", "hosts", "nsswitch.conf", "passwd", "group", "ssl", "ca-certificates")


def host_tool(
    argv: Sequence[str],
    env: Mapping[str, str],
    writable: Sequence[Path],
    network: bool,
    cwd: Path | None = None,
    readable: Sequence[Path] = (),
) -> Launch:
    """A host tool (uv, this interpreter) over foreign code at lock time, sandboxed: the host's
    /usr and the parts of /etc that name resolution and TLS need, read-only; a private /tmp;
    the tool itself, the working directory and `readable` read-only; only `writable` bound
    read-write; no network unless asked, and then one of its own (OwnNetwork: the world, never
    this host's loopback services); its environment is `env` and nothing else."""
    mounts = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64"):
        where = Path("/") / name
        if where.is_symlink():
            mounts += ["--symlink", os.readlink(where), str(where)]
        elif where.is_dir():
            mounts += ["--ro-bind", str(where), str(where)]
    for name in _HOST_ETC:
        mounts += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    mounts += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    # The interpreter and the program run (uv, in cog's own environment) stay visible,
    # read-only, wherever they live (pyenv, a checkout's .venv), and so does a CA bundle
    # SSL_CERT_FILE names outside /etc.
    tools = {sys.base_prefix, sys.prefix, os.path.dirname(os.path.realpath(argv[0]))}
    tools |= {os.path.dirname(env[k]) for k in ("SSL_CERT_FILE",) if env.get(k)}
    where = cwd or Path.cwd()
    for tool in sorted(tools):
        mounts += ["--ro-bind-try", tool, tool]
    for path in (where, *readable):
        mounts += ["--ro-bind-try", str(_not_shared(path)), str(path)]
    for path in writable:
        mounts += ["--bind", str(_not_shared(path)), str(path)]
    environment = {"PATH": SAFE_PATH, "HOME": "/tmp"} | dict(env)
    own, files = _own_network(network)
    return Jail(mounts, environment, str(where), own, files=files).launch(argv)


def _own_network(wanted: bool) -> tuple[OwnNetwork | bool, list[tuple[str, bytes]]]:
    """A lock-time tool's network, when it needs one (uv reading the index while a package's
    code builds its metadata): a namespace of its own, never the host's, where a package's
    setup.py would reach this host's loopback services (a registry, a database, cog's own
    servers); and the /etc files that name hosts there."""
    if not wanted:
        return False, []
    return OwnNetwork(), etc_files(OwnNetwork.NAMESERVER)


# Cog's images' PATH: the programs a hook may look for (pkg-config, a compiler) are the root's.
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class ProjectRootTool:
    """A tool over foreign code at lock time, sandboxed over a project's root rather than the
    host's (a derivations.buildreqs.HostSandbox): `view`, a private merged view of the root's
    layers, read-only at /, with `store` (real path, store path) read-only at /cog/store (a
    standalone interpreter's closure); a host program named as argv[0] that the root does
    not hold (uv), the working directory and `readable`, read-only, at their own paths;
    `writable` alone writable; a private /tmp; the root's programs on PATH; when it needs the
    network, one of its own (never the host's loopback services).

    What the tool's environment names is never shown beyond what it needs: the CA bundle
    SSL_CERT_FILE names alone (not its folder, which may be the user's home); never the uv
    cache UV_CACHE_DIR names, which every lock on this host shares (a package's code could
    plant index pages or wheels there for other projects): uv's cache is `cache` instead, a
    folder of this lock alone (None: the private /tmp); and never uv publish's credentials,
    which a resolve does not use. Its standard input is /dev/null, never cog's.

    Host paths are shown where they are on the host, so their mount points are made in
    `view` (which its owner removes); one that passes through a link of the root is refused."""

    view: Path
    store: Sequence[tuple[Path, str]] = ()
    cache: Path | None = None

    def __call__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        writable: Sequence[Path],
        network: bool,
        cwd: Path | None = None,
        readable: Sequence[Path] = (),
    ) -> Launch:
        mounts = ["--ro-bind", str(self.view), "/", "--dev", "/dev", "--proc", "/proc"]
        mounts += ["--tmpfs", "/tmp", "--tmpfs", STORE_DIR]
        environment = {"HOME": "/tmp"} | _unpublished(env) | {"PATH": ROOT_PATH}
        bundle = Path(env.get("SSL_CERT_FILE", ""))
        if bundle.is_absolute() and bundle.is_file():
            mounts += ["--ro-bind", str(bundle), _CA_BUNDLE]
            environment["SSL_CERT_FILE"] = _CA_BUNDLE
        shared = Path(env["UV_CACHE_DIR"]) if env.get("UV_CACHE_DIR") else None
        if shared is not None:
            if self.cache is not None:
                mounts += ["--bind", str(self.cache), _UV_CACHE]
            environment["UV_CACHE_DIR"] = _UV_CACHE
        for real, store_path in self.store:
            mounts += ["--ro-bind", str(real), store_path]
        tool = Path(argv[0])
        if not self._holds(tool):
            mounts += self._show(Path(os.path.realpath(tool)), tool, "--ro-bind")
        where = cwd or Path.cwd()
        for path in (where, *readable):
            mounts += self._show(path, path, "--ro-bind")
        for path in writable:
            if path != shared:
                mounts += self._show(path, path, "--bind")
        own, files = _own_network(network)
        jail = Jail(mounts, environment, str(where), own, prefix=_NO_INPUT, files=files)
        return jail.launch(argv)

    def _holds(self, program: Path) -> bool:
        """Whether `program` is the root's own (its interpreter), not a host tool."""
        if not program.is_absolute():
            return False
        return program.is_relative_to(STORE_DIR) or (self.view / program.relative_to("/")).is_file()

    def _show(self, source: Path, target: Path, how: str) -> list[str]:
        """bwrap's options that show host `source` at `target`, its mount point made in the
        view unless bubblewrap makes it (below the private /tmp); none for a missing source."""
        if not source.exists():
            return []
        _not_shared(source)
        if not target.is_relative_to("/tmp"):
            _mount_point(self.view, target, source.is_dir())
        return [how, str(source), str(target)]


# Where a tool over a project's root finds the CA bundle and uv's cache: below the sandbox's
# private /tmp, where bubblewrap makes the mount points (none is made in the view).
_CA_BUNDLE = "/tmp/.cog-ca-bundle.pem"
_UV_CACHE = "/tmp/.cog-uv-cache"
# Its input is nothing: a package's code would otherwise read cog's (what the user types in
# its terminal, what a script pipes to it), which subprocess gives a child by default.
_NO_INPUT = ("/bin/sh", "-c", 'exec "$@" </dev/null', "sh")


def _not_shared(path: str | Path) -> str | Path:
    """`path`, unless showing it would show the host's whole root or /tmp (other users' and
    other projects' files, engines' sockets) in place of the sandbox's private ones: a project
    kept at /tmp itself, a `--find-links /tmp`."""
    real = os.path.realpath(path)
    if real in ("/", "/tmp"):
        raise SandboxUnavailable(
            f"{path} cannot be shown to a package's code at lock time: it would show all of "
            "the host's " + ("/tmp" if real == "/tmp" else "files"),
            hint="keep the project and its --find-links folders in folders of their own",
        )
    return path


def _unpublished(env: Mapping[str, str]) -> dict[str, str]:
    """`env` without uv publish's credentials (UV_PUBLISH_TOKEN, _PASSWORD …)."""
    return {k: v for k, v in env.items() if not k.startswith("UV_PUBLISH_")}


def _mount_point(root: Path, target: Path, folder: bool) -> None:
    """An empty folder or file at `target` in `root` (which the caller owns) where none is, its
    parents real folders of `root`: never a link of the root followed, never a file written."""
    where = root
    parts = target.relative_to("/").parts
    for i, part in enumerate(parts):
        where = where / part
        last = i == len(parts) - 1
        if where.is_symlink() or (where.exists() and not where.is_dir() and not last):
            raise SandboxUnavailable(
                f"{target} cannot be shown to a package's code over the project's root, "
                f"where /{'/'.join(parts[: i + 1])} is a link or a file",
                hint="keep caches, mirrors and the project out of the root's linked folders",
            )
        if where.exists():
            continue
        if last and not folder:
            os.close(os.open(where, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))
        else:
            where.mkdir()


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


_checked: dict[str, bool] = {}


def sandbox_works() -> bool:
    """Whether bwrap exists and can make the sandbox of `Jail` here (cached per process)."""
    exe = bwrap_path()
    if exe is None:
        return False
    if exe not in _checked:
        argv = Jail(["--ro-bind", "/", "/"], {}).argv(["true"])
        probe = subprocess.run(argv, capture_output=True, timeout=30, check=False)
        _checked[exe] = probe.returncode == 0
    return _checked[exe]


def build_env(ctx: BuildContext, out: str) -> dict[str, str]:
    env = {"PATH": "/path-not-set", "HOME": "/homeless-shelter", "TMPDIR": "/tmp"}
    env.update({role: str(p) for role, p in ctx.input_paths.items()})
    env.update(ctx.drv.env)
    env["out"] = out
    return env


def build_jail(
    ctx: BuildContext, env: Mapping[str, str], rootfs: Path | None = None, output: bool = True
) -> Jail:
    """A builder's sandbox: its input closure read-only at /cog/store, its output writable
    at its store path, /build its working directory, over `rootfs` (read-only) if given."""
    mounts = ["--ro-bind", str(rootfs), "/"] if rootfs is not None else []
    mounts += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    # Over a read-only root the store's mount points need a writable layer of their own.
    mounts += ["--tmpfs" if rootfs is not None else "--dir", STORE_DIR]
    for path in ctx.closure:
        mounts += ["--ro-bind", str(ctx.store.real_path(path)), str(path)]
    if output:
        ctx.out.mkdir()
        mounts += ["--bind", str(ctx.out), str(ctx.out_path)]
    build_dir = ctx.scratch / "build"
    build_dir.mkdir(exist_ok=True)
    mounts += ["--bind", str(build_dir), "/build"]
    return Jail(mounts, env, chdir="/build")


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
        cmd, cwd = build_jail(ctx, env, rootfs, output).argv(argv), None
    else:
        ctx.say("warning: building without a sandbox; the output may depend on this host")
        cmd, env = _unsandboxed(ctx, argv, env, output)
        cwd = ctx.scratch
    code = run_logged(ctx, cmd, env, cwd)
    if code != 0:
        raise BuildError(f"the builder of {ctx.drv.name} exited with status {code}")


def run_logged(
    ctx: BuildContext,
    cmd: Sequence[str],
    env: Mapping[str, str],
    cwd: Path | None = None,
    network: OwnNetwork | None = None,
) -> int:
    """Runs `cmd` with its output in the build's log; kills its process group on cancel.
    With `network` (the OwnNetwork of the jail `cmd` runs), attaches it once started.
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
        if network is not None:
            network.attach(proc.pid)
        return _wait(ctx, proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
        if network is not None:
            network.close()


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

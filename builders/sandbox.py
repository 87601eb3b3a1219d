"""The sandbox: every process that runs foreign code (builders, `run:` steps, lock-time package
hooks, native model runs) runs in a `Jail`, whose policy is in this one place.

A builder's sandbox (`build_jail`): no network, the input closure read-only at /cog/store, the
output writable at its own store path, a private /tmp, /proc and a minimal /dev, an optional
root filesystem (a store path mounted read-only at /) and nothing else of the host. The
environment is exactly what the derivation sets plus `out`, `TMPDIR` and `HOME`.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builders.base import BuildContext
from builders.errors import BuildError, SandboxUnavailable
from builders.seccomp import program
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
_EXEC = (
    'b=$0 d=$1; shift; exec 3<"$d/args" 4<"$d/seccomp"; rm -r "$d"; '
    'exec /usr/bin/env -i "$b" --args 3 --seccomp 4 "$@"'
)


# What Docker writes into every container's /etc, so that `localhost` resolves as it does
# there (the sandbox's own loopback).
HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def host_address() -> str | None:
    """This host's IPv4 address on its default route (found in /proc/net/route and asked of
    the kernel, no packet sent), or None: what `host.docker.internal` names in a sandbox with
    a network of its own, as Docker's host-gateway does. Services the host serves on every
    address (webhook and upload receivers) are reached there; those on loopback alone are not."""
    try:
        with open("/proc/net/route") as routes:
            default = [r.split() for r in routes if r.split()[1:2] == ["00000000"]]
        if not default:
            return None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            request = struct.pack("256s", default[0][0].encode()[:15])
            answer = fcntl.ioctl(probe.fileno(), 0x8915, request)  # SIOCGIFADDR
        return socket.inet_ntoa(answer[20:24])
    except (OSError, IndexError):
        return None


def network_binds(scratch: Path, nameserver: str | None = None) -> list[str]:
    """bwrap arguments that bind /etc/hosts and a resolv.conf into the run: `nameserver`'s (a
    network of its own, where `host.docker.internal` names this host), or the host's; the root
    must have both as mount points (image_rootfs and merged views make them)."""
    hosts, resolv = scratch / "hosts", scratch / "resolv.conf"
    host = host_address() if nameserver is not None else None
    hosts.write_text(HOSTS + (f"{host}\thost.docker.internal\n" if host else ""))
    if nameserver is not None:
        resolv.write_text(f"nameserver {nameserver}\n")
    else:
        try:
            resolv.write_bytes(Path("/etc/resolv.conf").read_bytes())
        except OSError:  # no resolver configured here: names beyond /etc/hosts do not resolve
            resolv.write_text("")
    return ["--ro-bind", str(hosts), "/etc/hosts", "--ro-bind", str(resolv), "/etc/resolv.conf"]


def network_problem() -> tuple[str, str] | None:
    """Why a sandbox could not have a network of its own here (OwnNetwork), and what to do;
    None when it can."""
    if shutil.which("slirp4netns") is None:
        return "slirp4netns is not installed", "install it (`apt-get install slirp4netns`)"
    if os.geteuid() != 0 and not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        return (
            "/dev/net/tun is not usable by this user",
            "make it so, as udev's default rule does (`chmod 0666 /dev/net/tun`)",
        )
    return None


def _slirp_failed(said: str) -> SandboxUnavailable:
    """slirp4netns's failure in one sentence, from the last line it wrote."""
    lines = [line for line in said.splitlines() if line.strip()]
    why = lines[-1].strip() if lines else "it exited"
    if "/dev/net/tun" in said:
        return SandboxUnavailable(
            f"slirp4netns could not give the sandbox its network ({why}): it needs "
            "/dev/net/tun usable by this user",
            hint="make it so, as udev's default rule does (`chmod 0666 /dev/net/tun`)",
        )
    return SandboxUnavailable(f"slirp4netns could not give the sandbox its network ({why})")


class OwnNetwork:
    """Outbound network for one sandbox, as Docker's RUN has it: a network namespace of its own,
    joined to the world by slirp4netns (a user-mode TCP/IP stack, itself sandboxed), that
    cannot reach this host's loopback services (slirp4netns --disable-host-loopback refuses
    127.0.0.1 and the gateway address it would map to them).

    The command's prefix makes the namespace and stops itself (SIGSTOP); `attach`, once the
    command has started, waits for that stop, connects slirp4netns to the namespace and lets
    the command go on (SIGCONT); `close`, after it ended, stops slirp4netns. Inside, names
    resolve through slirp4netns's forwarder, NAMESERVER. Each of `forwards`, (host address,
    port), is published as `docker run -p` publishes a port: connections to it on the host
    reach the same port in the namespace, where the server must listen on every address."""

    NAMESERVER = "10.0.2.3"

    def __init__(self, forwards: Sequence[tuple[str, int]] = ()) -> None:
        self.forwards = list(forwards)
        self._slirp: subprocess.Popen[bytes] | None = None
        self._stop: int | None = None  # closing it ends slirp4netns
        self._api: Path | None = None  # a private folder for slirp4netns's API socket

    @staticmethod
    def prefix() -> list[str]:
        user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
        return ["unshare", *user, "--net", "/bin/sh", "-c", 'kill -STOP $$; exec "$@"', "sh"]

    def attach(self, pid: int) -> None:
        """Connects the namespace of the started command `pid` (a child of this process);
        SandboxUnavailable, in one sentence, when it cannot be."""
        _, status = os.waitpid(pid, os.WUNTRACED)
        if not os.WIFSTOPPED(status):
            raise SandboxUnavailable(
                "the sandbox's network namespace could not be made",
                hint="check that `unshare --net true` works here (user namespaces allowed)",
            )
        exe = shutil.which("slirp4netns")
        if exe is None:
            raise SandboxUnavailable(
                "the sandbox's network needs slirp4netns, which is not installed",
                hint="install it (`apt-get install slirp4netns`)",
            )
        stop_r, self._stop = os.pipe()
        ready_r, ready_w = os.pipe()
        # As root, slirp4netns confines itself too (a mount namespace of its own, no
        # capability but binding ports); as a user it is one already, and its sandbox would
        # need setgroups, which the user namespace denies.
        confine = ["--enable-sandbox"] if os.geteuid() == 0 else []
        user = [] if os.geteuid() == 0 else [f"--userns-path=/proc/{pid}/ns/user"]
        argv = [exe, "--configure", "--mtu=65520", "--disable-host-loopback", *user]
        argv += [*confine, "--enable-seccomp", "--netns-type=path"]
        if self.forwards:
            # A socket's path holds at most 107 bytes: a short folder, not $TMPDIR (which
            # can be deep, as under a test harness's work folder).
            short = "/tmp" if os.access("/tmp", os.W_OK | os.X_OK) else None
            self._api = Path(tempfile.mkdtemp(prefix="cog-net-", dir=short))
            argv.append(f"--api-socket={self._api / 'api.sock'}")
        argv += [f"--ready-fd={ready_w}", f"--exit-fd={stop_r}", f"/proc/{pid}/ns/net", "tap0"]
        with tempfile.TemporaryFile() as said:
            try:
                self._slirp = subprocess.Popen(
                    argv,
                    pass_fds=(ready_w, stop_r),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=said,
                )
            finally:
                os.close(ready_w)
                os.close(stop_r)
            with os.fdopen(ready_r, "rb") as ready:
                if ready.read(1) != b"1":
                    said.seek(0)
                    raise _slirp_failed(said.read().decode(errors="replace"))
        for address, port in self.forwards:
            self._publish(address, port)
        os.kill(pid, signal.SIGCONT)

    def _publish(self, host: str, port: int) -> None:
        assert self._api is not None
        try:  # slirp4netns takes an IPv4 address
            address = str(socket.getaddrinfo(host, None, socket.AF_INET)[0][4][0])
        except (OSError, IndexError):
            raise SandboxUnavailable(
                f"cannot publish port {port} on {host}: no IPv4 address"
            ) from None
        request = {"proto": "tcp", "host_addr": address, "host_port": port, "guest_port": port}
        with socket.socket(socket.AF_UNIX) as api:
            api.settimeout(10)
            api.connect(str(self._api / "api.sock"))
            api.sendall(json.dumps({"execute": "add_hostfwd", "arguments": request}).encode())
            api.shutdown(socket.SHUT_WR)
            answer = json.loads(api.recv(65536) or b"{}")
        if "error" in answer or "return" not in answer:
            why = answer.get("error", {}).get("desc", "no answer")
            raise SandboxUnavailable(f"cannot publish port {port} on {host} ({why})")

    def close(self) -> None:
        if self._stop is not None:
            os.close(self._stop)
            self._stop = None
        if self._slirp is not None:
            try:
                self._slirp.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._slirp.kill()
                self._slirp.wait()
        if self._api is not None:
            shutil.rmtree(self._api, ignore_errors=True)
            self._api = None


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


@dataclass(frozen=True)
class Jail:
    """What one sandboxed command sees besides its command line: `mounts`, bubblewrap's mount
    options in order (host paths among them); its whole environment, `env`; its working
    directory; its network (`False`: none; `True`: the host's, where a model's server listens;
    an OwnNetwork: a namespace of its own); whether it keeps the terminal (`interactive`: an
    interactive `cog exec`); and `prefix`, a command that runs first, outside, and execs the
    rest (builders.overlay mounts the root's overlay so).

    The policy is here alone, for builds, `run:` steps, lock-time hooks and model runs: every
    namespace unshared, the user namespace too (uid 0 inside holds its capabilities over that
    namespace only, never over the host, even when cog runs as root), Docker's default
    capabilities and no others (none that mounts), no further user namespaces, no_new_privs,
    the seccomp filter of builders.seccomp, and nothing of cog's environment or command line
    visible: bubblewrap starts with only PATH and reads its options from a file."""

    mounts: Sequence[str]
    env: Mapping[str, str]
    chdir: str = "/"
    network: bool | OwnNetwork = False
    interactive: bool = False
    prefix: Sequence[str] = ()

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
        opts += [*self.mounts, "--chdir", self.chdir, "--clearenv"]
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
        folder = Path(tempfile.mkdtemp(prefix="cog-jail-"))
        (folder / "args").write_bytes(b"".join(o.encode() + b"\0" for o in self.options()))
        (folder / "seccomp").write_bytes(program())
        clean = ["/usr/bin/env", "-i", f"PATH={SAFE_PATH}"]
        own = self.network.prefix() if isinstance(self.network, OwnNetwork) else []
        start = [*clean, *own, *self.prefix]
        return [*start, "/bin/sh", "-c", _EXEC, exe, str(folder), "--", *command]


# What host tools need of the host's /etc: names, users, TLS trust; never the rest of it
# (shadow, ssh keys, cog's own configuration).
_HOST_ETC = ("resolv.conf", "hosts", "nsswitch.conf", "passwd", "group", "ssl", "ca-certificates")


def host_tool_argv(
    argv: Sequence[str],
    env: Mapping[str, str],
    writable: Sequence[Path],
    network: bool,
    cwd: Path | None = None,
    readable: Sequence[Path] = (),
) -> list[str]:
    """A host tool (uv, this interpreter) over foreign code at lock time, sandboxed: the host's
    /usr and the parts of /etc that name resolution and TLS need, read-only; a private /tmp;
    the tool itself, the working directory and `readable` read-only; only `writable` bound
    read-write; no network unless asked; its environment is `env` and nothing else."""
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
    for path in (*sorted(tools), where, *readable):
        mounts += ["--ro-bind-try", str(path), str(path)]
    for path in writable:
        mounts += ["--bind", str(path), str(path)]
    jail = Jail(mounts, {"PATH": SAFE_PATH, "HOME": "/tmp"} | dict(env), str(where), network)
    return jail.argv(argv)


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

"""A network of its own for a sandboxed command that needs one (`run:` steps that reach the
network, native model runs): a network namespace with slirp4netns for outbound access and no
path to the host's loopback, the /etc files that name hosts in it, and port publishing.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from builders.errors import SandboxUnavailable

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


def etc_files(nameserver: str | None = None) -> list[tuple[str, bytes]]:
    """/etc/hosts and /etc/resolv.conf for a run: `nameserver`'s (a network of its own, where
    `host.docker.internal` names this host), or the host's resolver."""
    host = host_address() if nameserver is not None else None
    hosts = HOSTS + (f"{host}\thost.docker.internal\n" if host else "")
    if nameserver is not None:
        resolv = f"nameserver {nameserver}\n".encode()
    else:
        try:
            resolv = Path("/etc/resolv.conf").read_bytes()
        except OSError:  # no resolver configured here: names beyond /etc/hosts do not resolve
            resolv = b""
    return [("/etc/hosts", hosts.encode()), ("/etc/resolv.conf", resolv)]


def network_binds(scratch: Path, nameserver: str | None = None) -> list[str]:
    """bwrap arguments that bind `etc_files` into the run from files in `scratch`; the root
    must have both as mount points (image_rootfs and merged views make them)."""
    binds = []
    for target, data in etc_files(nameserver):
        source = scratch / Path(target).name
        source.write_bytes(data)
        binds += ["--ro-bind", str(source), target]
    return binds


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

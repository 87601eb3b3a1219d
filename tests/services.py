"""Real services the image tests talk to: a Docker engine and an OCI registry, on loopback.

Both are Debian's own programs, started in temp directories and stopped after the session:
`dockerd` with the vfs storage driver and no networking of its own (containers use the host's),
and `docker-registry` with htpasswd authentication.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(process: subprocess.Popen[bytes], grace: float = 20) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def dockerd(dockerd_path: str) -> Iterator[str]:
    """A private Docker engine; yields its DOCKER_HOST."""
    root = Path(tempfile.mkdtemp(prefix="cog-dockerd-", dir="/tmp"))
    sock = root / "docker.sock"
    log = open(root / "dockerd.log", "wb")  # noqa: SIM115 (closed below)
    command = [
        dockerd_path,
        "--storage-driver=vfs",
        "--iptables=false",
        "--bridge=none",
        f"--data-root={root / 'data'}",
        f"--exec-root={root / 'exec'}",
        f"--pidfile={root / 'docker.pid'}",
        "-H",
        f"unix://{sock}",
    ]
    process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
    host = f"unix://{sock}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"dockerd exited: {(root / 'dockerd.log').read_text()[-2000:]}")
            if sock.exists():
                ping = subprocess.run(
                    ["docker", "-H", host, "version"], capture_output=True, check=False
                )
                if ping.returncode == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("dockerd did not start within 60 s")
            time.sleep(0.3)
        yield host
    finally:
        subprocess.run(
            f"docker -H {host} rm -f $(docker -H {host} ps -aq) 2>/dev/null",
            shell=True,
            check=False,
            capture_output=True,
        )
        _stop(process)
        log.close()
        subprocess.run(["umount", "-R", str(root / "exec")], capture_output=True, check=False)
        _remove_in_background(root)


def _remove_in_background(root: Path) -> None:
    """Removes `root` without waiting: vfs keeps a full copy of the root for every layer of
    every image, so an engine's data is tens of GB of small files, minutes of deletion that
    the tests need not wait for (it ran as a test's teardown, 250 s of a suite's run)."""
    background = 'rm -rf --one-file-system "$1" </dev/null >/dev/null 2>&1 &'
    subprocess.run(["sh", "-c", background, "sh", str(root)], check=True, start_new_session=True)


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    user: str
    password: str
    storage: Path


@contextmanager
def registry(registry_path: str, htpasswd_path: str) -> Iterator[Registry]:
    """Debian's docker-registry on loopback, with one htpasswd user."""
    root = Path(tempfile.mkdtemp(prefix="cog-registry-"))
    user, password = "cog", "s3cret-pw"
    subprocess.run(
        [htpasswd_path, "-Bbc", str(root / "htpasswd"), user, password],
        check=True,
        capture_output=True,
    )
    port = free_port()
    (root / "config.yml").write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
        f"auth: {{htpasswd: {{realm: cog-tests, path: {root / 'htpasswd'}}}}}\n"
    )
    log = open(root / "registry.log", "wb")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [registry_path, "serve", str(root / "config.yml")],
        stdout=log,
        stderr=log,
        start_new_session=True,
        env=dict(os.environ) | {"OTEL_TRACES_EXPORTER": "none"},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"registry exited: {(root / 'registry.log').read_text()}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=2).status_code == 401:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("docker-registry did not start within 30 s")
            time.sleep(0.1)
        yield Registry(f"127.0.0.1:{port}", user, password, root / "data")
    finally:
        _stop(process)
        log.close()
        shutil.rmtree(root, ignore_errors=True)

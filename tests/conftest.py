"""Shared fixtures: a fresh store, the CLI as a subprocess, a loopback HTTP server, busybox."""

from __future__ import annotations

import ctypes
import http.server
import os
import shutil
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

from store.local import Store
from store.paths import StorePath
from tests.services import Registry

REPO = Path(__file__).resolve().parent.parent
BUSYBOX = Path("/bin/busybox")


# What makes a test slow: building example projects (the Debian mirror and the wheel cache),
# a Docker engine, a registry; and the modules that drive Cog's own server beside ours or
# generate hundreds of inputs. `make check` leaves those tests out; `make test` runs them all.
SLOW_FIXTURES = {"offline", "debian_mirror", "docker_host", "oci_registry"}
SLOW_MODULES = {"test_fuzz", "test_differential", "test_sdk_types_differential", "test_memory"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = getattr(getattr(item, "module", None), "__name__", "").rsplit(".", 1)[-1]
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or module in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "store")
    yield s
    s.close()


@dataclass
class CogResult:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cog(store: Store) -> Callable[..., CogResult]:
    """Runs the real `cog` command against the test's store."""

    def run(*args: str, env: dict[str, str] | None = None, input: bytes | None = None) -> CogResult:
        full_env = {**os.environ, "COG_STORE_DIR": str(store.root), **(env or {})}
        proc = subprocess.run(
            [sys.executable, "-m", "cog.cli.main", *args],
            env=full_env,
            capture_output=True,
            input=input,
            timeout=300,
            cwd=REPO,
        )
        return CogResult(proc.returncode, proc.stdout.decode(), proc.stderr.decode())

    return run


T = TypeVar("T")


@dataclass
class LoopbackServer:
    """A real HTTP server on 127.0.0.1: serves `files`, counts requests, can fail on purpose."""

    files: dict[str, bytes] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)  # path -> its Content-Type, if any
    failures: dict[str, list[int]] = field(default_factory=dict)  # path -> statuses to return first
    hits: Counter[str] = field(default_factory=Counter)
    received: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    port: int = 0
    host: str = "127.0.0.1"

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}/{path.lstrip('/')}"


@pytest.fixture
def http_server() -> Iterator[LoopbackServer]:
    state = LoopbackServer()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    yield from _serving(state, server)


def _serving(
    state: LoopbackServer, server: http.server.ThreadingHTTPServer
) -> Iterator[LoopbackServer]:
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@dataclass(frozen=True)
class OutsideHost:
    """A host of the test's own: a network namespace joined to this one by a veth pair, at an
    address of 198.18.0.0/15 (set aside for tests). A sandbox that may reach the world but not
    this machine's loopback reaches it."""

    namespace: str
    address: str

    def listening(self, make: Callable[[], T]) -> T:
        """What `make` returns, made in a thread that joined the namespace: a server socket
        made there lives there, whichever thread serves it."""
        made: list[T] = []

        def join_and_make() -> None:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(f"/run/netns/{self.namespace}") as namespace:
                if libc.setns(namespace.fileno(), 0x40000000) != 0:  # CLONE_NEWNET
                    raise OSError(ctypes.get_errno(), "setns")
            made.append(make())

        joiner = threading.Thread(target=join_and_make)
        joiner.start()
        joiner.join()
        return made[0]


@pytest.fixture
def outside_host() -> Iterator[OutsideHost]:
    """An OutsideHost for the test; needs root."""
    if os.geteuid() != 0:
        pytest.fail("the outside host is a network namespace, which needs root")
    name, tag = f"cogtest{os.getpid()}", os.getpid() % 250
    near, far = f"198.18.{tag}.1", f"198.18.{tag}.2"
    ip = ["ip", "netns", "exec", name, "ip"]
    setup = [
        ["ip", "netns", "add", name],
        ["ip", "link", "add", f"vh{tag}", "type", "veth", "peer", "name", f"vn{tag}"],
        ["ip", "link", "set", f"vn{tag}", "netns", name],
        ["ip", "addr", "add", f"{near}/30", "dev", f"vh{tag}"],
        ["ip", "link", "set", f"vh{tag}", "up"],
        [*ip, "addr", "add", f"{far}/30", "dev", f"vn{tag}"],
        [*ip, "link", "set", f"vn{tag}", "up"],
        [*ip, "link", "set", "lo", "up"],
    ]
    try:
        for command in setup:
            subprocess.run(command, check=True, capture_output=True, timeout=30)
        yield OutsideHost(name, far)
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", f"vh{tag}"], capture_output=True, timeout=30)


@pytest.fixture
def outside_server(outside_host: OutsideHost) -> Iterator[LoopbackServer]:
    """The loopback server's twin on the outside host."""
    state = LoopbackServer(host=outside_host.address)
    server = outside_host.listening(
        lambda: http.server.ThreadingHTTPServer((outside_host.address, 0), _handler(state))
    )
    yield from _serving(state, server)


def _handler(state: LoopbackServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self, body_too: bool = True) -> None:
            path = self.path.lstrip("/")
            state.hits[path] += 1
            pending = state.failures.get(path)
            if pending:
                self.send_response(pending.pop(0))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = state.files.get(path)
            if body is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            if path in state.types:
                self.send_header("Content-Type", state.types[path])
            self.end_headers()
            if body_too:
                self.wfile.write(body)

        def do_HEAD(self) -> None:
            self.do_GET(body_too=False)

        def _receive(self) -> None:
            """POST and PUT (webhooks, uploads): recorded, then answered 200 or a failure."""
            path = self.path.lstrip("/")
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.hits[path] += 1
            pending = state.failures.get(path)
            status = pending.pop(0) if pending else 200
            if status == 200:
                state.received.append((self.command, path, dict(self.headers), body))
                if self.command == "PUT":
                    state.files[path] = body
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = _receive
        do_PUT = _receive

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def require_tool(name: str) -> str:
    """A component the tests need: missing is a failure, never a skip."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is required by this test; `make test` installs it")
    return path


@pytest.fixture
def busybox(store: Store, tmp_path: Path) -> StorePath:
    """A static busybox added to the store: a self-contained toolbox for sandboxed builders."""
    require_tool("bwrap")
    if not BUSYBOX.exists():
        pytest.fail("/bin/busybox (Debian busybox-static) is required; `make test` installs it")
    tree = tmp_path / "busybox-tree" / "bin"
    tree.mkdir(parents=True)
    shutil.copy(BUSYBOX, tree / "busybox")
    return store.add(tree.parent, "busybox")


def make_tree(
    root: Path, files: dict[str, bytes | str], modes: dict[str, int] | None = None
) -> Path:
    """Creates files (and their directories) under root; a str value starting '->' is a symlink."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str) and content.startswith("->"):
            os.symlink(content[2:], path)
        else:
            path.write_bytes(content.encode() if isinstance(content, str) else content)
    for rel, mode in (modes or {}).items():
        os.chmod(root / rel, mode)
    return root


TEST_CACHE = Path(os.environ.get("COG_TEST_CACHE", "/var/cache/cog-tests"))


@pytest.fixture(scope="session")
def debian_mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The frozen Debian mirror `make test-fixtures` prepared, served on loopback: its URL."""
    from tests.debian_mirror import serve

    root = TEST_CACHE / "debian-mirror"
    if not (root / "debian/dists/bookworm/InRelease").is_file():
        pytest.fail(f"no Debian test mirror at {root}; run `make test-fixtures` (needs network)")
    os.environ["COG_CACHE_DIR"] = str(tmp_path_factory.mktemp("cog-cache"))
    with serve(root) as url:
        yield url


@pytest.fixture(scope="module")
def offline(debian_mirror: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment for the `cog` CLI on example projects: the channel on the frozen
    mirror, a fresh store for the module, and uv's cache in the test cache."""
    import json

    from cuda_channels.channel import BUILTIN_DIR

    if not (TEST_CACHE / "wheels").is_dir():
        pytest.fail(f"no wheel cache at {TEST_CACHE / 'wheels'}; run `make test-fixtures`")
    channels = tmp_path_factory.mktemp("channels")
    for builtin in sorted(BUILTIN_DIR.glob("*.json")):
        if builtin.name.startswith("cuda-"):  # CUDA data, which names no archives
            continue
        data = json.loads(builtin.read_text())
        for archive in data["archives"]:
            archive["mirror"] = f"{debian_mirror}/{archive['name']}"
        (channels / builtin.name).write_text(json.dumps(data))
    # uv's cache is shared by the runs of one machine; a user who cannot write there (the
    # unprivileged run of `make test-unprivileged`) gets one of its own.
    uv_cache = TEST_CACHE / "uv"
    if uv_cache.exists() and not os.access(uv_cache, os.W_OK):
        uv_cache = Path(os.environ["HOME"]) / "uv-cache"
    return dict(os.environ) | {
        "COG_CHANNEL_PATH": str(channels),
        "PYTHONPATH": str(REPO),
        "UV_CACHE_DIR": str(uv_cache),
        "COG_STORE_DIR": str(tmp_path_factory.mktemp("store")),
    }


@pytest.fixture(scope="session")
def docker_host() -> Iterator[str]:
    """A private Docker engine (Debian's dockerd, vfs storage, host networking)."""
    from tests.services import dockerd

    require_tool("docker")
    with dockerd(require_tool("dockerd")) as host:
        yield host


@pytest.fixture(scope="session")
def oci_registry() -> Iterator[Registry]:
    """Debian's docker-registry on loopback, behind htpasswd authentication."""
    from tests.services import registry

    with registry(require_tool("docker-registry"), require_tool("htpasswd")) as running:
        yield running

"""A loopback proxy in front of a registry: it records every request, and can inject faults
(500 answers, connection resets, stalls) into a share of them, deterministically by seed.

It can also play two things registries do that Debian's docker-registry does not:
- `bearer=(user, password)`: the token flow. The proxy asks for `Bearer` tokens, which its
  `/token` service issues for those credentials (basic auth), and forwards with them.
- `redirect_blobs=True`: blob downloads answered with a 307 to a storage server on another
  origin (as registries send them to S3 or a CDN), which refuses requests that carry an
  Authorization header and records the headers of each it gets.
"""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import random
import re
import secrets
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

TOKEN_SERVICE = "cog-tests"


@dataclass
class Faults:
    rate: float = 0.0  # the share of requests that get a fault
    stall: float = 4.0  # seconds a stalled request waits before it goes on
    seed: int = 7
    injected: list[tuple[str, str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)
        self.lock = threading.Lock()

    def pick(self) -> str | None:
        with self.lock:
            if self.random.random() >= self.rate:
                return None
            return self.random.choice(["500", "reset", "stall"])


@dataclass
class Proxy:
    host: str  # 127.0.0.1:PORT
    requests: list[tuple[str, str]]  # (method, path with query)
    faults: Faults
    received: list[int] = field(default_factory=lambda: [0])  # request body bytes, in total
    # The Authorization scheme of each request ("" for none), in the order of `requests`.
    schemes: list[str] = field(default_factory=list)
    chunked: list[tuple[str, str]] = field(default_factory=list)  # requests sent chunked
    # With redirect_blobs: (path, headers) of each request the storage server got, and how
    # many of the next ones it answers with a connection reset.
    storage: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    storage_resets: int = 0

    def blob_uploads(self) -> list[str]:
        """The digests of the blob uploads that completed (PUT …/blobs/uploads/…?digest=)."""
        return [
            path.split("digest=")[1].split("&")[0].replace("%3A", ":")
            for method, path in self.requests
            if method == "PUT" and "/blobs/uploads/" in path and "digest=" in path
        ]

    def count(self, method: str, part: str) -> int:
        return sum(1 for m, p in self.requests if m == method and part in p)


def _reset(handler: http.server.BaseHTTPRequestHandler) -> None:
    """An abrupt RST, no answer."""
    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    handler.close_connection = True
    handler.connection.close()


def _answer(
    handler: http.server.BaseHTTPRequestHandler,
    status: int,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> None:
    handler.send_response(status)
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


@contextmanager
def proxy(
    upstream: str,
    faults: Faults | None = None,
    *,
    bearer: tuple[str, str] | None = None,
    redirect_blobs: bool = False,
) -> Iterator[Proxy]:
    chosen: Faults = faults or Faults()
    seen: list[tuple[str, str]] = []
    received = [0]
    token = secrets.token_hex(16)
    stored: dict[str, bytes] = {}  # what the storage server serves, by key

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _forward(self) -> None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                body = self._read_chunked()  # docker push streams blobs this way
                del self.headers["Transfer-Encoding"]
                self.headers["Content-Length"] = str(len(body))
                state.chunked.append((self.command, self.path))
            else:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
            fault = chosen.pick()
            seen.append((self.command, self.path))
            state.schemes.append(self.headers.get("Authorization", "").partition(" ")[0])
            received[0] += len(body)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
            if bearer is not None:
                if urlsplit(self.path).path == "/token":
                    self._token(bearer)
                    return
                if self.headers.get("Authorization") != f"Bearer {token}":
                    self._challenge()
                    return
                basic = base64.b64encode(":".join(bearer).encode()).decode()
                headers["Authorization"] = f"Basic {basic}"
            if fault is not None:
                chosen.injected.append((fault, self.command, urlsplit(self.path).path))
            if fault == "reset":
                _reset(self)
                return
            if fault == "500":
                _answer(self, 500)
                return
            if fault == "stall":
                time.sleep(chosen.stall)
            connection = http.client.HTTPConnection(upstream, timeout=60)
            connection.request(self.command, self.path, body=body, headers=headers)
            answer = connection.getresponse()
            data = answer.read()
            try:
                if (
                    redirect_blobs
                    and self.command == "GET"
                    and re.search(r"/blobs/sha256:[0-9a-f]{64}$", urlsplit(self.path).path)
                    and answer.status == 200
                ):
                    key = secrets.token_hex(8)
                    stored[key] = data
                    location = f"http://{storage_host}/blobs/{key}?signature=x"
                    _answer(self, 307, headers={"Location": location})
                    return
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            finally:
                connection.close()

        def _token(self, credentials: tuple[str, str]) -> None:
            basic = base64.b64encode(":".join(credentials).encode()).decode()
            if self.headers.get("Authorization") != f"Basic {basic}":
                _answer(self, 401, b'{"details": "bad credentials"}')
                return
            _answer(self, 200, json.dumps({"token": token}).encode())

        def _challenge(self) -> None:
            found = re.match(r"/v2/(.+?)/(?:blobs|manifests|tags)/", urlsplit(self.path).path)
            scope = f',scope="repository:{found.group(1)}:pull,push"' if found else ""
            realm = f'Bearer realm="http://{state.host}/token",service="{TOKEN_SERVICE}"'
            _answer(self, 401, b"{}", {"WWW-Authenticate": realm + scope})

        def _read_chunked(self) -> bytes:
            body = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(body)
                body += self.rfile.read(size)
                self.rfile.readline()

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

    class Storage(http.server.BaseHTTPRequestHandler):
        """Serves redirected blobs, as object storage does: the URL is the credential, and
        a request that also carries an Authorization header is refused."""

        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            state.storage.append((self.path, dict(self.headers.items())))
            if state.storage_resets > 0:
                state.storage_resets -= 1
                _reset(self)
                return
            if "Authorization" in self.headers:
                _answer(self, 400, b"only one auth mechanism allowed")
                return
            data = stored.get(urlsplit(self.path).path.rpartition("/")[2])
            if data is None:
                _answer(self, 404)
            else:
                _answer(self, 200, data, {"Content-Type": "application/octet-stream"})

    servers = [
        http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler),
        http.server.ThreadingHTTPServer(("127.0.0.1", 0), Storage),
    ]
    storage_host = f"127.0.0.1:{servers[1].server_address[1]}"
    state = Proxy(f"127.0.0.1:{servers[0].server_address[1]}", seen, chosen, received)
    for server in servers:
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield state
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()

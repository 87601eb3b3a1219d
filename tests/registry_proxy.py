"""A loopback proxy in front of a registry: it records every request, and can inject faults
(500 answers, connection resets, stalls) into a share of them, deterministically by seed."""

from __future__ import annotations

import http.client
import http.server
import random
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit


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

    def blob_uploads(self) -> list[str]:
        """The digests of the blob uploads that completed (PUT …/blobs/uploads/…?digest=)."""
        return [
            path.split("digest=")[1].split("&")[0].replace("%3A", ":")
            for method, path in self.requests
            if method == "PUT" and "/blobs/uploads/" in path and "digest=" in path
        ]

    def count(self, method: str, part: str) -> int:
        return sum(1 for m, p in self.requests if m == method and part in p)


@contextmanager
def proxy(upstream: str, faults: Faults | None = None) -> Iterator[Proxy]:
    chosen: Faults = faults or Faults()
    seen: list[tuple[str, str]] = []
    received = [0]

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _forward(self) -> None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                body = self._read_chunked()  # docker push streams blobs this way
                del self.headers["Transfer-Encoding"]
                self.headers["Content-Length"] = str(len(body))
            else:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
            fault = chosen.pick()
            seen.append((self.command, self.path))
            received[0] += len(body)
            if fault is not None:
                chosen.injected.append((fault, self.command, urlsplit(self.path).path))
            if fault == "reset":  # an abrupt RST, no answer
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.close_connection = True
                self.connection.close()
                return
            if fault == "500":
                self.send_response(500)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if fault == "stall":
                time.sleep(chosen.stall)
            connection = http.client.HTTPConnection(upstream, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
            connection.request(self.command, self.path, body=body, headers=headers)
            answer = connection.getresponse()
            data = answer.read()
            try:
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

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Proxy(f"127.0.0.1:{server.server_address[1]}", seen, chosen, received)
    finally:
        server.shutdown()
        server.server_close()

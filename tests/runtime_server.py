"""A real `python -m cog.server.http` process on loopback, for the runtime's contract tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import LoopbackServer

FIXTURES = Path(__file__).parent / "fixtures" / "runtime"
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def stop(self) -> None:
        """Its client closed, and the process group ended: SIGTERM, then SIGKILL after 10 s."""
        self.http.close()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def health(self) -> dict[str, Any]:
        return dict(self.http.get("/health-check").json())

    def wait_for(
        self, *statuses: str, timeout: float = 30, interval: float = 0.05
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                last = self.health()
                if last["status"] in statuses:
                    return last
            # Not answering yet, or not yet ours: a client of another test that connected to
            # this free port before the server bound it was seen to get an empty answer.
            except (httpx.TransportError, ValueError):
                pass
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited with {self.process.returncode}")
            time.sleep(interval)
        raise AssertionError(f"server never reached {statuses}: last {last}")

    def predict(self, body: dict[str, Any] | None = None, **headers: str) -> httpx.Response:
        return self.http.post("/predictions", json=body or {"input": {}}, headers=headers)

    def start(self, pid: str, hooks: LoopbackServer, inputs: dict[str, Any]) -> httpx.Response:
        """An async prediction whose terminal state arrives at `hooks` (Cog has no GET)."""
        body = {"id": pid, "input": inputs, "webhook": hooks.url(f"hook/{pid}")}
        return self.predict(body, Prefer="respond-async")

    @staticmethod
    def wait_done(pid: str, hooks: LoopbackServer, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, path, _, body in list(hooks.received):
                state = json.loads(body)
                if path == f"hook/{pid}" and state["status"] in ("succeeded", "failed", "canceled"):
                    return dict(state)
            time.sleep(0.05)
        raise AssertionError(f"{pid} never finished")


@contextmanager
def serve(
    ref: str,
    *args: str,
    env: dict[str, str] | None = None,
    python: str | None = None,
    cwd: Path = FIXTURES,
    ready: tuple[str, ...] = ("READY",),
    ours: bool = True,
) -> Iterator[Server]:
    """Our server (this checkout on PYTHONPATH), or with `ours=False` whatever `python` has."""
    port = free_port()
    environment = os.environ | {"PORT": str(port), "COG_PREDICT_TYPE_STUB": ref, **(env or {})}
    if ours:
        environment["PYTHONPATH"] = str(REPO)
    else:
        environment.pop("PYTHONPATH", None)
    command = [python or sys.executable, "-m", "cog.server.http", "--host", "127.0.0.1", *args]
    process = subprocess.Popen(command, cwd=cwd, env=environment, start_new_session=True)
    server = Server(process, port)
    try:
        if ready:
            server.wait_for(*ready)
        yield server
    finally:
        server.stop()

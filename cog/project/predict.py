"""One prediction (or training) sent to a started server, as Cog's CLI sends it: wait for its
setup, check the inputs against its schema, post them, and return the server's answer."""

from __future__ import annotations

import sys
import time
from typing import Any

import httpx

from cog.project.errors import UsageError
from cog.project.inputs import check_inputs
from cog.project.serve import Server


def predict(
    server: Server,
    url: str,
    inputs: dict[str, Any],
    training: bool,
    from_flags: bool,
    setup_timeout: float,
) -> dict[str, Any]:
    """The prediction's response body once it has finished; what setup() printed goes to
    stderr first, as Cog streams the container's output. A failed setup or invalid inputs
    are one sentence."""
    health = _wait_ready(url, server, setup_timeout)
    if health.get("status") != "READY":
        logs = health.get("setup", {}).get("logs", "").strip()
        raise UsageError(f"the predictor's setup failed:\n{logs}")
    setup_logs = health.get("setup", {}).get("logs")
    if setup_logs:
        sys.stderr.write(setup_logs if setup_logs.endswith("\n") else setup_logs + "\n")
    schema = httpx.get(f"{url}/openapi.json", timeout=30)
    if schema.status_code == 200:
        check_inputs(inputs, schema.json(), training, from_flags)
    endpoint = "trainings" if training else "predictions"
    response = httpx.post(f"{url}/{endpoint}", json={"input": inputs}, timeout=None)
    body: dict[str, Any] = response.json()
    if response.status_code == 422:
        problems = "; ".join(
            f"{'.'.join(map(str, d['loc'][2:]))}: {d['msg']}" for d in body["detail"]
        )
        raise UsageError(f"invalid input: {problems}", hint="check the names and types with -i")
    return body


def _wait_ready(url: str, server: Server, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        err = server.failure()
        if err is not None:
            raise UsageError(f"the server exited before it was ready: {err.strip()[-500:]}")
        try:
            health: dict[str, Any] = httpx.get(f"{url}/health-check", timeout=5).json()
            if health.get("status") not in ("STARTING", None):
                return health
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise UsageError(f"setup did not finish within {timeout:g} seconds")

"""Every failure mode of a predictor answered as Cog's server (coglet 0.23.1) answers it: the
status code and the body, byte for byte, from our server against coglet's recorded answers
(tests/conformance/runtime_compare.py says what is normalized and why); and the generated
report, docs/conformance/runtime-errors.md, current. And cancellation where it races the
prediction's start."""

from __future__ import annotations

import http.server
import json
import threading
import time

import pytest

from tests.conformance import runtime_report
from tests.conformance.runtime_cases import CASES
from tests.conformance.runtime_compare import Row, compare, recorded, run_all
from tests.runtime_server import serve


@pytest.fixture(scope="module")
def rows() -> list[Row]:
    return compare(recorded(), run_all(("ours",))["ours"])


def test_the_recording_holds_every_case() -> None:
    assert sorted(recorded()) == sorted(CASES)


def test_every_failure_mode_is_answered_as_coglet_answers_it(rows: list[Row]) -> None:
    unexplained = [r for r in rows if r.outcome == "differs"]
    assert not unexplained, "\n".join(
        f"{r.case.id}:\n  coglet {r.coglet.code} {r.coglet.body}\n  ours   {r.ours.code} "
        f"{r.ours.body}"
        for r in unexplained
    )
    stale = [r.case.id for r in rows if r.outcome == "stale"]
    assert not stale, f"allowed differences that are no longer different: {stale}"


def test_the_report_is_current(rows: list[Row]) -> None:
    expected = runtime_report.render(rows)
    assert runtime_report.REPORT.read_text() == expected, (
        "docs/conformance/runtime-errors.md is stale: run `python -m "
        "tests.conformance.runtime_report`"
    )


class _SlowHooks(http.server.BaseHTTPRequestHandler):
    """A webhook receiver that takes a second to answer: the runtime sends a prediction to its
    worker only once the start webhook is answered, so a cancel sent meanwhile arrives first."""

    received: list[bytes] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        time.sleep(1.0)
        type(self).received.append(body)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("fixture", ["failing_async.py:Predictor", "failing.py:Predictor"])
def test_a_cancel_that_reaches_the_worker_before_its_prediction_cancels_it(fixture: str) -> None:
    _SlowHooks.received.clear()
    hooks = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowHooks)
    threading.Thread(target=hooks.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{hooks.server_address[1]}/hook"
    try:
        with serve(fixture) as server:
            body = {"id": "early", "input": {"how": "sleep", "seconds": 30}, "webhook": url}
            server.predict(body, Prefer="respond-async")
            time.sleep(0.3)  # the start webhook is still waiting for its answer
            assert server.http.post("/predictions/early/cancel").status_code == 200
            started = time.monotonic()
            server.wait_for("READY", timeout=15)
            assert time.monotonic() - started < 10  # not the 30 s the prediction would run
    finally:
        hooks.shutdown()
        hooks.server_close()
    terminal = [json.loads(b) for b in _SlowHooks.received if b'"canceled"' in b]
    assert terminal and terminal[-1]["id"] == "early"

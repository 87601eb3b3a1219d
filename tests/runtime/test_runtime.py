"""The HTTP contract of the runtime: a real server process and real predictors over loopback."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LoopbackServer
from tests.runtime_server import FIXTURES, REPO, Server, serve


def test_index_health_and_schema() -> None:
    with serve("hello.py:Predictor") as server:
        index = server.http.get("/").json()
        assert index["predictions_url"] == "/predictions" and index["shutdown_url"] == "/shutdown"
        health = server.health()
        assert health["status"] == "READY"
        assert health["setup"]["status"] == "succeeded"
        assert "loading the model" in health["setup"]["logs"]
        schema = server.http.get("/openapi.json").json()
        props = schema["components"]["schemas"]["Input"]["properties"]
        assert props["name"]["x-order"] == 0 and props["name"]["pattern"] == "^[a-z]+$"
        assert props["times"]["minimum"] == 1 and props["times"]["maximum"] == 5
        assert props["lang"]["allOf"] == [{"$ref": "#/components/schemas/lang"}]
        assert schema["components"]["schemas"]["lang"]["enum"] == ["en", "fr"]
        assert props["token"]["x-cog-secret"] is True and props["old"]["deprecated"] is True
        assert schema["components"]["schemas"]["Output"]["type"] == "string"


def test_sync_prediction_with_every_input_kind() -> None:
    with serve("hello.py:Predictor") as server:
        body = {
            "input": {
                "name": "bob",
                "times": 2,
                "excitement": 0.9,
                "shout": True,
                "lang": "fr",
                "extra": "hi",
                "numbers": [3, 4],
                "token": "s3cret",
                "unknown_key": "dropped",
            },
            "context": {"user": "u1"},
        }
        response = server.predict(body)
        assert response.status_code == 200
        result = response.json()
        assert result["status"] == "succeeded"
        assert result["output"] == "BONJOUR BOB BONJOUR BOB! hi sum=7 secret=s3cret ctx=user=u1"
        assert result["logs"] == "greeting bob\n"
        assert result["metrics"]["greetings"] == 2 and result["metrics"]["calls"] == 1
        assert result["metrics"]["predict_time"] > 0
        defaults = server.predict().json()
        assert defaults["output"] == "hello world sum=3 secret=None ctx="


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"times": 9}, "times"),
        ({"times": "many"}, "times"),
        ({"name": "Bob!"}, "name"),
        ({"lang": "de"}, "lang"),
        ({"numbers": ["a"]}, "numbers/0"),  # as coglet: a JSON pointer to the item
    ],
)
def test_invalid_input_is_422_with_cogs_detail_shape(value: dict[str, object], field: str) -> None:
    with serve("hello.py:Predictor") as server:
        response = server.predict({"input": value})
        assert response.status_code == 422
        detail = response.json()["detail"]
        assert detail[0]["loc"][:3] == ["body", "input", field] and detail[0]["msg"]
        assert server.health()["status"] == "READY"


def test_required_inputs_files_and_structured_output(http_server: LoopbackServer) -> None:
    http_server.files["docs/extra.txt"] = b" and more"
    with serve("files.py:Predictor") as server:
        missing = server.predict({"input": {}})
        assert missing.status_code == 422 and missing.json()["detail"][0]["loc"][-1] == "doc"
        doc = "data:text/plain;base64," + base64.b64encode(b"hello").decode()
        response = server.predict(
            {"input": {"doc": doc, "extra": [http_server.url("docs/extra.txt")]}}
        ).json()
        assert response["status"] == "succeeded", response
        assert response["output"]["text"] == "hello and more" and response["output"]["size"] == 14
        header, payload = response["output"]["copy"].split(",", 1)
        assert header == "data:text/plain;base64"
        assert base64.b64decode(payload) == b"HELLO AND MORE"
        bad = server.predict({"input": {"doc": http_server.url("missing.txt")}}).json()
        assert bad["status"] == "failed" and "404" in bad["error"]


def test_outputs_upload_to_upload_url(http_server: LoopbackServer) -> None:
    http_server.failures["uploads/copy-input.txt.txt"] = [503]  # retried
    with serve("files.py:Predictor", "--upload-url", http_server.url("uploads/")) as server:
        doc = "data:text/plain;base64," + base64.b64encode(b"abc").decode()
        response = server.predict({"input": {"doc": doc}}).json()
        assert response["status"] == "succeeded", response
        assert response["output"]["copy"] == http_server.url("uploads/copy-input.txt.txt")
        assert http_server.files["uploads/copy-input.txt.txt"] == b"ABC"
        assert http_server.hits["uploads/copy-input.txt.txt"] == 2


def test_iterator_output_and_sse() -> None:
    with serve("iterate.py:Predictor") as server:
        result = server.predict({"input": {"n": 3}}).json()
        assert result["output"] == ["t0 ", "t1 ", "t2 "]
        assert result["logs"] == "token 0\ntoken 1\ntoken 2\n"
        schema = server.http.get("/openapi.json").json()["components"]["schemas"]["Output"]
        assert schema["x-cog-array-type"] == "iterator"
        assert schema["x-cog-array-display"] == "concatenate"
        events = []
        with server.http.stream(
            "POST",
            "/predictions",
            json={"input": {"n": 2}},
            headers={"Accept": "text/event-stream"},
        ) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    events.append(line[7:])
        assert events[0] == "start" and events[-1] == "completed"
        assert events.count("output") == 2 and "log" in events
        failed = server.predict({"input": {"n": 3, "fail_at": 1}}).json()
        assert failed["status"] == "failed" and "failed at 1" in failed["error"]
        assert "output" not in failed  # as Cog


def sse_events(server: Server, id: str, request: dict[str, Any]) -> list[tuple[str, Any]]:
    """(event, data) of each server-sent event of PUT /predictions/ID, until the stream ends."""
    events: list[tuple[str, Any]] = []
    with server.http.stream(
        "PUT", f"/predictions/{id}", json=request, headers={"Accept": "text/event-stream"}
    ) as stream:
        name = ""
        for line in stream.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    return events


def test_sse_streams_each_metric_as_it_is_recorded() -> None:
    """As coglet: `event: metric` with the name, the value given and the mode, in order with
    the outputs; the completed payload carries the metrics as they ended up."""
    with serve("stream_metrics.py:Predictor") as server:
        events = sse_events(server, "sse-metrics", {"id": "sse-metrics", "input": {}})
    assert [e for e, _ in events] == ["start", "metric", "output", "metric", "metric", "completed"]
    assert events[1][1] == {"name": "temperature", "value": 0.7, "mode": "replace"}
    assert events[2][1] == {"chunk": "chunk-1", "index": 0}
    assert events[3][1] == {"name": "token_count", "value": 2, "mode": "increment"}
    assert events[4][1] == {"name": "timing.first", "value": 1.5, "mode": "replace"}
    completed = events[-1][1]
    assert completed["status"] == "succeeded"
    metrics = completed["metrics"]
    assert isinstance(metrics, dict)
    assert metrics["temperature"] == 0.7 and metrics["token_count"] == 2
    assert metrics["timing"] == {"first": 1.5} and "predict_time" in metrics


def _late_subscriber(capacity: str) -> list[tuple[str, Any]]:
    """The events an SSE client gets that joins a running prediction (iterate.py, 4 tokens
    0.4 s apart) 1 s after it started, with that COG_STREAM_HISTORY_CAPACITY."""
    env = {"COG_STREAM_HISTORY_CAPACITY": capacity}
    with serve("iterate.py:Predictor", env=env) as server:
        request = {"id": "late", "input": {"n": 4, "delay": 0.4}}
        started = server.http.put(
            "/predictions/late", json=request, headers={"Prefer": "respond-async"}
        )
        assert started.status_code == 202
        time.sleep(1.0)
        return sse_events(server, "late", request)


def test_a_late_sse_client_gets_the_history_first() -> None:
    """As coglet: what was streamed before the client came is replayed, then the rest live;
    where the history (COG_STREAM_HISTORY_CAPACITY) has dropped events, one error event."""
    events = _late_subscriber("1024")
    names = [name for name, _ in events]
    assert names == ["start", *["log", "output"] * 4, "completed"]
    assert [data["chunk"] for name, data in events if name == "output"] == [
        "t0 ",
        "t1 ",
        "t2 ",
        "t3 ",
    ]
    truncated = _late_subscriber("2")
    assert len(truncated) == 1 and truncated[0][0] == "error"
    error = truncated[0][1]
    assert error["error"] == "SSE stream replay truncated; events were dropped"
    assert isinstance(error["skipped"], int) and error["skipped"] >= 1
    live_only = _late_subscriber("0")  # no history: only what comes after the client
    assert (
        live_only[-1][0] == "completed"
        and ("start", {"id": "late", "status": "processing"}) not in live_only
    )


def test_sse_is_406_for_a_predictor_that_does_not_stream() -> None:
    with serve("hello.py:Predictor") as server:
        response = server.predict({"input": {}}, Accept="text/event-stream")
        assert response.status_code == 406 and "@cog.streaming" in response.json()["error"]


def test_async_predictions_idempotent_put_and_409(http_server: LoopbackServer) -> None:
    with serve("slow.py:Predictor") as server:
        first = server.start("p1", http_server, {"seconds": 1})
        assert first.status_code == 202 and first.json()["id"] == "p1"
        again = server.http.put(
            "/predictions/p1", json={"input": {"seconds": 1}}, headers={"Prefer": "respond-async"}
        )
        assert again.status_code == 202 and again.json()["id"] == "p1"
        busy = server.predict({"input": {"seconds": 1}})
        assert busy.status_code == 409 and busy.json()["error"].startswith("At capacity")
        assert server.health()["status"] == "BUSY"
        mismatch = server.http.put("/predictions/p2", json={"id": "p3", "input": {}})
        assert mismatch.status_code == 422
        done = server.wait_done("p1", http_server)
        assert done["status"] == "succeeded" and done["output"] == "finished"
        assert server.wait_for("READY")["status"] == "READY"


def test_cancel_sync_predictor_by_signal(http_server: LoopbackServer) -> None:
    with serve("slow.py:Predictor") as server:
        server.start("c1", http_server, {"seconds": 60})
        time.sleep(0.5)
        assert server.http.post("/predictions/c1/cancel").status_code == 200
        state = server.wait_done("c1", http_server, timeout=10)
        assert state["status"] == "canceled"
        # Repeated, after it took effect: still 200, as coglet answers (Cog's cancel_repeated).
        assert [server.http.post("/predictions/c1/cancel").status_code for _ in range(3)] == [
            200
        ] * 3
        assert server.http.post("/predictions/unknown/cancel").status_code == 404
        after = server.predict({"input": {"seconds": 0}}).json()
        assert after["status"] == "succeeded"  # the worker survived the cancellation


def test_client_disconnect_cancels_a_sync_prediction() -> None:
    with serve("slow.py:Predictor") as server:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{server.url}/predictions", json={"input": {"seconds": 60}}, timeout=0.7)
        assert server.wait_for("READY", timeout=10)["status"] == "READY"


def test_async_predictor_concurrency_and_cancel(http_server: LoopbackServer) -> None:
    with serve("concurrent_async.py:Predictor") as server:
        results: list[dict[str, object]] = []

        def one(tag: str) -> None:
            results.append(server.predict({"input": {"seconds": 0.5, "tag": tag}}).json())

        threads = [threading.Thread(target=one, args=(str(i),)) for i in range(4)]
        started = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(0.2)
        assert server.predict({"input": {"seconds": 0.5}}).status_code == 409  # a fifth
        for t in threads:
            t.join()
        assert time.monotonic() - started < 1.5  # ran at once, not one after another
        assert sorted(r["output"] for r in results) == [f"done {i}" for i in range(4)]
        for r in results:  # logs and metrics are each prediction's own
            tag = r["output"].split()[-1]  # type: ignore[union-attr]
            assert r["logs"] == f"start {tag}\nend {tag}\n"
            assert r["metrics"]["tag"] == tag  # type: ignore[index]
        server.start("a1", http_server, {"seconds": 30})
        time.sleep(0.3)
        server.http.post("/predictions/a1/cancel")
        assert server.wait_done("a1", http_server, timeout=10)["status"] == "canceled"


@pytest.mark.parametrize(("how", "reason"), [("segfault", "SIGSEGV"), ("exit", "status 3")])
def test_a_crashing_worker_fails_its_prediction_and_the_server_stays_up(
    how: str, reason: str
) -> None:
    with serve("crash.py:Predictor") as server:
        result = server.predict({"input": {"how": how}}).json()
        # coglet's words; how the worker died is the last line of the prediction's logs
        assert result["status"] == "failed" and result["error"] == "Worker crashed"
        assert reason in result["logs"].splitlines()[-1]
        health = server.health()
        assert health["status"] == "DEFUNCT"
        again = server.predict({"input": {}})
        assert again.status_code == 503 and "died" in again.json()["error"]


def test_sys_exit_and_exceptions_fail_only_that_prediction() -> None:
    with serve("crash.py:Predictor") as server:
        exited = server.predict({"input": {"how": "sysexit"}}).json()
        assert exited["status"] == "failed"
        assert exited["error"] == "Prediction failed: Prediction failed: SystemExit: 2"  # coglet's
        raised = server.predict({"input": {"how": "raise"}}).json()
        assert raised["status"] == "failed"
        assert raised["error"] == "Prediction failed: Prediction failed: ValueError: bad things"
        ok = server.predict({"input": {}}).json()
        assert ok["status"] == "succeeded" and ok["output"] == "survived ok"


def test_subprocess_and_fd_output_is_logged_and_never_corrupts_ipc() -> None:
    with serve("crash.py:Predictor") as server:
        result = server.predict({"input": {"how": "chatty"}}).json()
        assert result["status"] == "succeeded" and result["output"] == "survived chatty"
        assert result["logs"].count('{"type": "done"}') == 2000
        assert "raw fd write\n" in result["logs"] and "raw stderr write\n" in result["logs"]


def test_setup_failure_and_timeout() -> None:
    with serve("setup_fails.py:Predictor", ready=("SETUP_FAILED",)) as server:
        health = server.health()
        assert "weights are missing" in health["setup"]["logs"]
        assert "about to fail" in health["setup"]["logs"]
        assert server.predict().status_code == 503
    with serve(
        "setup_slow.py:Predictor", env={"COG_SETUP_TIMEOUT": "1"}, ready=("SETUP_FAILED",)
    ) as server:
        assert "timed out after 1 seconds" in server.health()["setup"]["logs"]
    with serve("slow.py:Predictor", ready=("STARTING", "READY")) as server:
        pass  # STARTING is reported before setup completes (checked by the wait)


def test_user_healthcheck(tmp_path: Path) -> None:
    mode = tmp_path / "mode"
    mode.write_text("true")
    with serve("health.py:Predictor", env={"HEALTH_FILE": str(mode)}) as server:
        assert server.health()["status"] == "READY"
        mode.write_text("false")
        assert server.health()["status"] == "UNHEALTHY"
        mode.write_text("raise")
        health = server.health()
        assert (
            health["status"] == "UNHEALTHY" and "GPU fell off" in health["user_healthcheck_error"]
        )
        mode.write_text("hang")
        started = time.monotonic()
        health = server.health()
        assert health["status"] == "UNHEALTHY" and "timed out" in health["user_healthcheck_error"]
        assert time.monotonic() - started < 8
        mode.write_text("true")
        time.sleep(0.2)
        assert server.wait_for("READY", timeout=60)["status"] == "READY"


def test_webhooks_follow_the_filter_and_retry_the_terminal_event(
    http_server: LoopbackServer,
) -> None:
    http_server.failures["hook"] = [500, 500]  # the terminal event must survive these
    env = {"WEBHOOK_AUTH_TOKEN": "tok", "COG_THROTTLE_RESPONSE_INTERVAL": "0"}
    with serve("iterate.py:Predictor", env=env) as server:
        body = {"input": {"n": 3, "delay": 0.05}, "webhook": http_server.url("hook")}
        server.predict(body, Prefer="respond-async")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
            json.loads(b)["status"] == "succeeded" for _, _, _, b in http_server.received
        ):
            time.sleep(0.05)
        sent = [json.loads(b) for _, _, _, b in http_server.received]
        assert sent[-1]["status"] == "succeeded" and sent[-1]["output"] == ["t0 ", "t1 ", "t2 "]
        assert all(h["Authorization"] == "Bearer tok" for _, _, h, _ in http_server.received)
        http_server.received.clear()
        body["webhook_events_filter"] = ["completed"]
        server.predict(body, Prefer="respond-async")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not http_server.received:
            time.sleep(0.05)
        time.sleep(0.3)
        assert [json.loads(b)["status"] for _, _, _, b in http_server.received] == ["succeeded"]


def test_plain_function_runner_weights_and_trainings(tmp_path: Path) -> None:
    with serve("function.py:predict") as server:
        assert server.predict({"input": {"x": 21}}).json()["output"] == 42
    with serve("runner.py:Runner", env={"COG_WEIGHTS": "https://example.invalid/w.bin"}) as server:
        out = server.predict({"input": {"text": "hi"}}).json()["output"]
        assert out == "hi weights=https://example.invalid/w.bin"
    with serve(
        "runner.py:Runner", "--x-mode", "train", env={"COG_TRAIN_TYPE_STUB": "runner.py:train"}
    ) as server:
        response = server.http.post("/trainings", json={"input": {"steps": 3}})
        assert response.json()["output"] == "trained 3 steps"
        assert server.http.get("/").json()["trainings_url"] == "/trainings"


def test_shutdown_endpoint_and_sigterm() -> None:
    with serve("hello.py:Predictor") as server:
        assert server.http.post("/shutdown").status_code == 200
        assert server.process.wait(timeout=15) == 0
    with serve("hello.py:Predictor") as server:
        os.killpg(server.process.pid, signal.SIGTERM)
        assert server.process.wait(timeout=15) == 0


def cog_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "cog.cli.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cog_predict_runs_the_predictor_here(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(FIXTURES, project)
    (project / "cog.yaml").write_text(
        'build:\n  python_version: "3.11"\npredict: "files.py:Predictor"\n'
    )
    (tmp_path / "in.txt").write_text("hi")
    result = cog_cli("predict", "--here", "-i", f"doc=@{tmp_path / 'in.txt'}", cwd=project)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["text"] == "hi"
    assert (project / "output.txt").read_text() == "HI"  # a file output, written here
    hello = cog_cli(
        "predict", "--ref", "hello.py:Predictor", "-i", "name=ann", "-i", "times=2", cwd=project
    )
    assert hello.stdout.strip() == "hello ann hello ann sum=3 secret=None ctx="
    assert "greeting ann" in hello.stderr  # the prediction's logs
    bad = cog_cli("predict", "--ref", "hello.py:Predictor", "-i", "times=9", cwd=project)
    assert bad.returncode == 1
    assert 'invalid input "times": number must be at most 5' in bad.stderr  # Cog's words
    assert "Traceback" not in bad.stderr
    (project / "none.py").write_text(
        "from cog import BasePredictor\n\n\nclass Predictor(BasePredictor):\n"
        "    def predict(self) -> int:\n        return None\n"
    )
    none = cog_cli("predict", "--ref", "none.py:Predictor", cwd=project)
    assert none.returncode == 0 and none.stdout == ""
    assert "⚠ No output generated" in none.stderr  # as Cog's CLI warns
    nothing = cog_cli("predict", "-i", "x=1", cwd=tmp_path)
    assert nothing.returncode == 1 and "no cog.yaml" in nothing.stderr


def test_async_generator_output_with_url_and_file_inputs(http_server: LoopbackServer) -> None:
    http_server.files["page.txt"] = b"remote"
    with serve("async_stream.py:Predictor") as server:
        schema = server.http.get("/openapi.json").json()["components"]["schemas"]
        assert schema["Output"]["x-cog-array-type"] == "iterator"
        assert "x-cog-array-display" not in schema["Output"]  # an iterator, not concatenated
        body = {"input": {"page": http_server.url("page.txt"), "raw": "data:,local", "n": 2}}
        result = server.predict(body).json()
        assert result["status"] == "succeeded", result
        assert result["output"] == ["local:remote:0", "local:remote:1"]
        assert result["logs"] == "chunk 0\nchunk 1\n"


def test_await_explicit_shutdown_ignores_sigterm() -> None:
    with serve("hello.py:Predictor", "--await-explicit-shutdown", "true") as server:
        os.kill(server.process.pid, signal.SIGTERM)
        time.sleep(1)
        assert server.process.poll() is None and server.health()["status"] == "READY"
        server.http.post("/shutdown")
        assert server.process.wait(timeout=15) == 0


def test_cog_max_concurrency_sets_the_slots_of_async_predictors() -> None:
    env = {"COG_MAX_CONCURRENCY": "2"}
    with serve("concurrent_async.py:Predictor", env=env) as server:
        threads = [
            threading.Thread(target=server.predict, args=({"input": {"seconds": 0.6}},))
            for _ in range(2)
        ]
        for t in threads:
            t.start()
        time.sleep(0.2)
        assert server.predict({"input": {"seconds": 0}}).status_code == 409  # a third
        for t in threads:
            t.join()
    with serve("slow.py:Predictor", env=env) as server:  # sync: one at a time regardless
        server.predict({"input": {"seconds": 0.6}}, Prefer="respond-async")
        time.sleep(0.2)
        assert server.predict({"input": {"seconds": 0}}).status_code == 409


def test_back_to_back_sequential_requests_never_see_409() -> None:
    with serve("function.py:predict") as server:
        codes = {server.predict({"input": {"x": i}}).status_code for i in range(200)}
        assert codes == {200}


def _timed(body: bytes) -> bytes:
    return re.sub(rb'"predict_time":[0-9.e+-]+', b'"predict_time":T', body)


def test_json_bodies_are_coglets_bytes() -> None:
    """The bytes coglet 0.23.1 writes for the same requests (captured from it): compact,
    sorted keys, coglet's fields only; its plain-text errors; empty 404/405."""
    with serve("hello.py:Predictor") as server:
        index = server.http.get("/")
        assert index.headers["content-type"] == "application/json"
        assert index.content == (
            b'{"cog_version":"0.23.1","docs_url":"/docs","healthcheck_url":"/health-check",'
            b'"openapi_url":"/openapi.json","predictions_cancel_url":'
            b'"/predictions/{prediction_id}/cancel","predictions_idempotent_url":'
            b'"/predictions/{prediction_id}","predictions_url":"/predictions",'
            b'"shutdown_url":"/shutdown"}'
        )
        health = server.http.get("/health-check").content
        stamp = rb'"20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6}|\.\d{9})?\+00:00"'
        assert re.fullmatch(
            rb'\{"status":"READY","setup":\{"started_at":%s,"completed_at":%s,'
            rb'"status":"succeeded","logs":"loading the model\\n"\},"version":\{'
            rb'"coglet":"0.23.1","python_sdk":"0.23.1","python":"3\.\d+\.\d+"\}\}' % (stamp, stamp),
            health,
        ), health
        sync = server.predict({"id": "b1", "input": {"name": "bob", "unknown": 1}})
        assert _timed(sync.content) == (
            b'{"id":"b1","logs":"greeting bob\\n","metrics":{"calls":1,"greetings":1,'
            b'"predict_time":T},"output":"hello bob sum=3 secret=None ctx=","status":"succeeded"}'
        )
        assert server.predict({"input": [1]}).content == (
            b'{"detail":[{"loc":["body","input","__root__"],'
            b'"msg":"[1] is not of type \\"object\\"","type":"value_error"}]}'
        )
        mismatch = server.http.put("/predictions/p2", json={"id": "p3", "input": {}})
        assert mismatch.content == (
            b'{"detail":[{"loc":["body","id"],"msg":"prediction ID must match the ID '
            b'supplied in the URL","type":"value_error"}]}'
        )
        accepted = server.predict({"id": "a1", "input": {}}, Prefer="respond-async")
        assert (
            accepted.status_code == 202 and accepted.content == b'{"id":"a1","status":"starting"}'
        )
        garbage = server.http.post(
            "/predictions", content=b"garbage", headers={"Content-Type": "application/json"}
        )
        assert garbage.status_code == 400
        assert garbage.headers["content-type"] == "text/plain; charset=utf-8"
        assert garbage.content == (
            b"Failed to parse the request body as JSON: expected value at line 1 column 1"
        )
        plain = server.http.post(
            "/predictions", content=b"{}", headers={"Content-Type": "text/plain"}
        )
        assert plain.status_code == 415
        assert plain.headers["content-type"] == "text/plain; charset=utf-8"
        nowhere = server.http.get("/nope")
        assert nowhere.status_code == 404 and nowhere.content == b""
        assert "content-type" not in nowhere.headers
        assert server.http.get("/predictions").status_code == 405
        assert server.http.post("/predictions/nope/cancel").content == b"{}"


def test_an_unread_request_body_never_stalls_the_next_request() -> None:
    """A request refused before its body arrived (415) must not leave the keep-alive connection
    stuck: the body is read first, so the next request on it is answered."""
    with (
        serve("hello.py:Predictor") as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn,
    ):
        conn.sendall(
            b"POST /predictions HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 2\r\n\r\n"
        )
        time.sleep(0.3)  # the body comes late
        conn.sendall(b"{}GET /health-check HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while received.count(b"HTTP/1.1 ") < 2 or not received.endswith(b"}"):
            chunk = conn.recv(65536)  # times out (fails) if the second answer never comes
            assert chunk, received
            received += chunk
        assert b"HTTP/1.1 415" in received and b'{"status":"READY"' in received


def test_json_encoding_is_serde_jsons() -> None:
    """Floats, escapes and key order as coglet's serde_json writes them (captured from it)."""
    from runtime.jsonbody import dumps

    value = {
        "z": 1,
        "a": [1.0, 2.5, 1e-5, 0.0001, 1e16, 1e22, 123456789.125, -0.0, 3e-7, -1.5e-5],
        "m": {"b": None, "a": 'ü\u2028\x7f\x01\t"\\'},
        "n": [float("nan"), float("inf")],
    }
    assert dumps(value) == (
        '{"a":[1.0,2.5,0.00001,0.0001,1e+16,1e+22,123456789.125,-0.0,3e-7,-0.000015],'
        '"m":{"a":"ü\u2028\x7f\\u0001\\t\\"\\\\","b":null},"n":[null,null],"z":1}'
    )
    assert dumps({"b": 1, "a": 1e-6}, sort_keys=False) == '{"b":1,"a":1e-6}'
    assert dumps("e-0 1e-05") == '"e-0 1e-05"'  # strings are never reformatted
    for x in (0.1 + 0.2, 5e-324, 1.7976931348623157e308, 2.0**53, 1e15, 123.456, 1e-4):
        assert dumps(x) == repr(x)


def test_sse_webhooks_and_metrics_in_coglets_shape(
    tmp_path: Path, http_server: LoopbackServer
) -> None:
    (tmp_path / "nested.py").write_text(
        "from cog import BasePredictor, current_scope\n\n\n"
        "class Predictor(BasePredictor):\n"
        "    def predict(self) -> str:\n"
        '        current_scope().record_metric("timing.preprocess", 0.1)\n'
        '        current_scope().record_metric("timing.total", 1)\n'
        '        current_scope().record_metric("gone", 1)\n'
        '        current_scope().metrics["gone"] = None\n'
        '        print("half a line, ", end="")\n'
        '        print("then the rest")\n'
        '        return "ok"\n'
    )
    with serve("nested.py:Predictor", cwd=tmp_path) as server:
        result = server.predict({"id": "m1", "input": {}})
        assert _timed(result.content) == (
            b'{"id":"m1","logs":"half a line, then the rest\\n","metrics":{"predict_time":T,'
            b'"timing":{"preprocess":0.1,"total":1}},"output":"ok","status":"succeeded"}'
        )
    env = {"COG_THROTTLE_RESPONSE_INTERVAL": "0"}
    with serve("iterate.py:Predictor", env=env) as server:
        with server.http.stream(
            "PUT",
            "/predictions/s1",
            json={"input": {"n": 2}},
            headers={"Accept": "text/event-stream"},
        ) as stream:
            assert stream.headers["content-type"] == "text/event-stream"
            events = _timed(b"".join(stream.iter_raw()))
        assert events == (
            b'event: start\ndata: {"id":"s1","status":"processing"}\n\n'
            b'event: log\ndata: {"data":"token 0\\n","source":"stdout"}\n\n'
            b'event: output\ndata: {"chunk":"t0 ","index":0}\n\n'
            b'event: log\ndata: {"data":"token 1\\n","source":"stdout"}\n\n'
            b'event: output\ndata: {"chunk":"t1 ","index":1}\n\n'
            b'event: completed\ndata: {"id":"s1","logs":"token 0\\ntoken 1\\n",'
            b'"metrics":{"predict_time":T},"output":["t0 ","t1 "],"status":"succeeded"}\n\n'
        )
        body = {"id": "w1", "input": {"n": 2, "fail_at": 1}, "webhook": http_server.url("hook/w1")}
        server.predict(body, Prefer="respond-async")
        state = Server.wait_done("w1", http_server)
        assert state["status"] == "failed"
        sent = [_timed(b) for _, _, _, b in http_server.received]
        assert sent[0] == b'{"id":"w1","logs":"","metrics":{},"status":"processing"}'
        assert sent[-1] == (  # as Cog: a failed stream keeps what it yielded
            b'{"error":"Prediction failed: Generator iteration error: RuntimeError: failed at 1",'
            b'"id":"w1","logs":"token 0\\n",'
            b'"metrics":{"predict_time":T},"output":["t0 "],"status":"failed"}'
        )
        assert {h["User-Agent"] for _, _, h, _ in http_server.received} == {"coglet/0.23.1"}


def test_put_of_a_running_prediction_and_schema_before_setup() -> None:
    with serve("slow.py:Predictor") as server:
        server.predict({"id": "r1", "input": {"seconds": 5}}, Prefer="respond-async")
        time.sleep(0.5)
        again = server.http.put("/predictions/r1", json={"input": {"seconds": 5, "x": 1}})
        assert again.status_code == 202  # answered at once, as Cog, with the state so far
        assert again.content == (
            b'{"id":"r1","input":{"seconds":5},"logs":"started\\n","metrics":{},'
            b'"status":"processing"}'
        )
        server.http.post("/predictions/r1/cancel")
    with serve("setup_slow.py:Predictor", ready=("STARTING",)) as server:
        early = server.http.get("/openapi.json")
        assert early.status_code == 503
        assert early.content == b'{"error":"OpenAPI schema not available"}'
        health = server.http.get("/health-check").content
        assert re.fullmatch(
            rb'\{"status":"STARTING","setup":\{"started_at":"[^"]+","status":"starting"\},'
            rb'"version":\{"coglet":"0.23.1","python_sdk":"0.23.1","python":"[^"]+"\}\}',
            health,
        ), health

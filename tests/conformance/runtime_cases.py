"""Every failure mode of a predictor, as requests to a server and the answer each gets.

A case is one observation: a request (or a short sequence of them) and the answer that is
compared, its status code and its body's bytes. Cases that can share a server are a group,
run in order on one server of a fixture under `tests/fixtures/runtime/`; a case that kills the
worker ends its group. Each case names where coglet's source words its answer, in the crates of
replicate/cog (`crates/coglet`, `crates/coglet-python`).

`tests/conformance/runtime_compare.py` runs the groups on a server (ours or coglet's) and
normalizes what differs by run (times, generated ids, ports).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import LoopbackServer
from tests.runtime_server import Server


@dataclass(frozen=True)
class Answer:
    """A status code (None: no answer in time) and the body as sent, normalized later."""

    code: int | None
    body: str


@dataclass
class Context:
    """What a case's requests need beyond the server: a loopback HTTP server (uploads, input
    files, webhooks), the project the server runs in, and answers a case left for a later one
    of its group."""

    loopback: LoopbackServer
    project: Path
    kept: dict[str, Answer] = field(default_factory=dict)


Probe = Callable[[Server, Context], Answer]


@dataclass(frozen=True)
class Case:
    id: str
    what: str  # the failure mode, in a few words
    source: str  # where coglet's source words its answer
    probe: Probe


@dataclass(frozen=True)
class Group:
    """Cases that run in order on one server of `fixture`."""

    name: str
    fixture: str
    cases: tuple[Case, ...]
    env: dict[str, str] = field(default_factory=dict)
    args: Callable[[Context], tuple[str, ...]] = lambda context: ()
    ready: tuple[str, ...] = ("READY",)
    files: dict[str, str] = field(default_factory=dict)  # written into the project first


NO_ANSWER_S = 8.0  # how long a request may take before it is "no answer"

# Where coglet words its answers (files of replicate/cog).
ROUTES = "crates/coglet/src/transport/http/routes.rs"
PREDICTOR_RS = "crates/coglet/src/predictor.rs (PredictionError)"
PY_PREDICTOR = "crates/coglet-python/src/predictor.rs"
BRIDGE = "crates/coglet-python/src/worker_bridge.rs"
ORCHESTRATOR = "crates/coglet/src/orchestrator.rs"
WORKER_RS = "crates/coglet/src/worker.rs"
VALIDATION = "crates/coglet/src/input_validation.rs, over the jsonschema crate 0.29's messages"


def answer(response: httpx.Response) -> Answer:
    return Answer(response.status_code, response.content.decode("utf-8", "replace"))


def post(pid: str, inputs: Any, **extra: Any) -> Probe:
    """A sync prediction of id `pid` (a 409 while coglet frees the last slot is retried)."""

    def probe(server: Server, context: Context) -> Answer:
        body = {"id": pid, "input": inputs, **extra}
        try:
            for _ in range(100):
                response = server.http.post("/predictions", json=body, timeout=NO_ANSWER_S)
                if response.status_code != 409:
                    break
                time.sleep(0.02)
        except httpx.TimeoutException:
            return Answer(None, f"no answer within {NO_ANSWER_S:g} s")
        return answer(response)

    return probe


def request(method: str, path: str, **kwargs: Any) -> Probe:
    def probe(server: Server, context: Context) -> Answer:
        return answer(server.http.request(method, path, **kwargs))

    return probe


def health(server: Server, context: Context) -> Answer:
    return answer(server.http.get("/health-check"))


def _running(server: Server, pid: str, seconds: float) -> threading.Thread:
    """A sync prediction that runs `seconds`, in a thread; its answer is kept as `pid`."""
    results: dict[str, httpx.Response] = {}

    def send() -> None:
        body = {"id": pid, "input": {"how": "sleep", "seconds": seconds}}
        with httpx.Client(base_url=server.url, timeout=60) as own:  # a client per thread
            results[pid] = own.post("/predictions", json=body)

    thread = threading.Thread(target=send, daemon=True)
    thread.results = results  # type: ignore[attr-defined]
    thread.start()
    server.wait_for("BUSY", timeout=10, interval=0.02)
    time.sleep(0.3)  # into the predictor's sleep
    return thread


def cancel_running(server: Server, context: Context) -> Answer:
    """Cancels a running sync prediction; its own answer is kept for the next case."""
    thread = _running(server, "canceled-1", 30)
    canceled = answer(server.http.post("/predictions/canceled-1/cancel"))
    thread.join(20)
    context.kept["canceled-1"] = answer(thread.results["canceled-1"])  # type: ignore[attr-defined]
    server.wait_for("READY", timeout=10, interval=0.02)
    return canceled


def kept(key: str) -> Probe:
    def probe(server: Server, context: Context) -> Answer:
        return context.kept[key]

    return probe


def busy(server: Server, context: Context) -> Answer:
    """A request while the one slot runs an async prediction (kept running for the next)."""
    server.http.post(
        "/predictions",
        json={"id": "busy-1", "input": {"how": "sleep", "seconds": 30}},
        headers={"Prefer": "respond-async"},
    )
    server.wait_for("BUSY", timeout=10, interval=0.02)
    time.sleep(0.3)
    return answer(server.http.post("/predictions", json={"id": "busy-2", "input": {}}))


def end_busy(server: Server, context: Context) -> Answer:
    """The cancel of the async prediction `busy` started; then the server is idle again."""
    canceled = answer(server.http.post("/predictions/busy-1/cancel"))
    server.wait_for("READY", timeout=10, interval=0.02)
    return canceled


def healthcheck_says(mode: str) -> Probe:
    """/health-check once the predictor's healthcheck() behaves as `mode` says."""

    def probe(server: Server, context: Context) -> Answer:
        (context.project / "health-mode").write_text(mode)
        return answer(server.http.get("/health-check"))

    return probe


def _input_url(name: str, status: int | None = None) -> Callable[[Context], str]:
    def url(context: Context) -> str:
        if status is not None:
            context.loopback.failures[f"inputs/{name}"] = [status] * 100
        return context.loopback.url(f"inputs/{name}")

    return url


def post_file(pid: str, url: Callable[[Context], str]) -> Probe:
    def probe(server: Server, context: Context) -> Answer:
        return post(pid, {"doc": url(context)})(server, context)

    return probe


def post_hooked(pid: str, path: str, status: int) -> Probe:
    """A sync prediction whose webhook answers `status` (not retried: a 4xx)."""

    def probe(server: Server, context: Context) -> Answer:
        context.loopback.failures[path] = [status] * 100
        return post(pid, {}, webhook=context.loopback.url(path))(server, context)

    return probe


def _failing(how: str, what: str, source: str, case_id: str | None = None) -> Case:
    return Case(case_id or f"predict/{how}", what, source, post(how, {"how": how}))


FAILED = f"{PY_PREDICTOR} (`Prediction failed: {{e}}`), wrapped in {PREDICTOR_RS}"

PREDICT = Group(
    "failing",
    "failing.py:Predictor",
    (
        _failing("raise", "predict() raises an exception", FAILED),
        _failing("raise-empty", "an exception with no message", FAILED),
        _failing("raise-silent", "an exception whose str() is empty", FAILED),
        _failing("raise-lines", "a message of several lines, quotes, non-ASCII", FAILED),
        _failing("raise-nested", "an exception class nested in a class (qualified name)", FAILED),
        _failing("raise-chained", "an exception raised from another", FAILED),
        _failing("raise-keyerror", "KeyError (its str() is the key's repr)", FAILED),
        _failing("keyboard", "KeyboardInterrupt raised by predict()", FAILED),
        _failing("raise-cancel", "predict() raises CancelationException itself", ROUTES),
        _failing("sysexit", "sys.exit(2)", FAILED),
        _failing("sysexit-zero", "sys.exit(0)", FAILED),
        _failing("sysexit-none", "sys.exit()", FAILED),
        _failing("sysexit-text", 'sys.exit("giving up")', FAILED),
        _failing(
            "unserializable",
            "an output JSON cannot hold",
            f"{PY_PREDICTOR} (`Failed to serialize output: {{e}}`)",
            "output/unserializable",
        ),
        _failing(
            "bytes",
            "bytes as the output",
            f"{PY_PREDICTOR} (`Failed to serialize output: {{e}}`)",
            "output/bytes",
        ),
        _failing(
            "wrong-type",
            "an output of another type than declared (not checked)",
            ROUTES,
            "output/wrong-type",
        ),
        _failing(
            "missing-file",
            "a returned Path that does not exist",
            ORCHESTRATOR,
            "output/missing-file",
        ),
        Case(
            "cancel/running",
            "the cancel of a running sync prediction",
            ROUTES + " (cancel_prediction)",
            cancel_running,
        ),
        Case(
            "cancel/running-answer",
            "the answer to the canceled sync request",
            ROUTES + " (PredictionError::Cancelled)",
            kept("canceled-1"),
        ),
        Case(
            "cancel/unknown-id",
            "the cancel of an id never seen",
            ROUTES + " (cancel_prediction)",
            request("POST", "/predictions/never-seen/cancel"),
        ),
        Case(
            "cancel/finished-id",
            "the cancel of a prediction that has succeeded",
            ROUTES + " (cancel_prediction)",
            request("POST", "/predictions/raise/cancel"),
        ),
        Case(
            "busy/409",
            "a prediction while the only slot is busy",
            ROUTES + " (CreatePredictionError::AtCapacity)",
            busy,
        ),
        Case(
            "busy/cancel-async",
            "the cancel of a running async prediction",
            ROUTES + " (cancel_prediction)",
            end_busy,
        ),
        Case(
            "webhook/refused-sync",
            "a sync prediction whose webhook answers 403",
            "crates/coglet/src/webhook.rs (failures are logged only)",
            post_hooked("hook-1", "hooks/refused", 403),
        ),
        Case(
            "request/get-prediction",
            "GET of a prediction (no such route)",
            ROUTES + " (router)",
            request("GET", "/predictions/raise"),
        ),
        Case(
            "request/id-mismatch",
            "PUT whose body names another id",
            ROUTES + " (create_prediction_idempotent)",
            request("PUT", "/predictions/a", json={"id": "b", "input": {}}),
        ),
        Case(
            "request/sse-not-streaming",
            "SSE asked of a predictor without @cog.streaming",
            ROUTES + " (streaming_not_supported_response)",
            request(
                "POST",
                "/predictions",
                json={"input": {}},
                headers={"Accept": "text/event-stream"},
            ),
        ),
    ),
)

CRASH = Group(
    "crash-exit",
    "failing.py:Predictor",
    (
        _failing("osexit", "the worker exits (os._exit) during a prediction", ORCHESTRATOR),
        Case("crash/health", "/health-check after the worker died", ROUTES, health),
        Case(
            "crash/next-prediction",
            "a prediction after the worker died",
            ROUTES,
            post("after-crash", {}),
        ),
    ),
)

SEGFAULT = Group(
    "crash-segfault",
    "failing.py:Predictor",
    (_failing("segfault", "the worker segfaults during a prediction", ORCHESTRATOR),),
)

GENERATOR = f"{PY_PREDICTOR} (`Generator iteration error: {{e}}`)"
ITEM = f"{PY_PREDICTOR} (`Failed to serialize output item: {{e}}`)"
ITERATOR = Group(
    "iterator",
    "failing_iterator.py:Predictor",
    (
        Case("iterator/raise", "a generator raises after yielding", GENERATOR, post("i1", {})),
        Case(
            "iterator/unserializable",
            "a generator yields what JSON cannot hold",
            ITEM,
            post("i2", {"how": "unserializable"}),
        ),
        Case(
            "iterator/sysexit",
            "a generator calls sys.exit",
            GENERATOR,
            post("i3", {"how": "sysexit"}),
        ),
    ),
)

ASYNC_FAILED = f"{BRIDGE} (`Async prediction failed: {{e}}`)"
ASYNC = Group(
    "async",
    "failing_async.py:Predictor",
    (
        Case(
            "async/raise", "an async predict() raises", ASYNC_FAILED, post("a1", {"how": "raise"})
        ),
        Case(
            "async/unserializable",
            "an async predict() returns what JSON cannot hold",
            f"{PY_PREDICTOR} (`Failed to serialize output: {{e}}`)",
            post("a2", {"how": "unserializable"}),
        ),
        Case(
            "async/cancelled-error",
            "an async predict() raises asyncio.CancelledError",
            BRIDGE,
            post("a3", {"how": "cancelled"}),
        ),
        Case(  # last: coglet never answers it, nor anything after it
            "async/sysexit",
            "an async predict() calls sys.exit",
            BRIDGE,
            post("a4", {"how": "sysexit"}),
        ),
    ),
)

UPLOAD = f"{ORCHESTRATOR} (upload_file, `Failed to upload output: `)"


def _refusing_uploads(context: Context) -> tuple[str, ...]:
    context.loopback.failures["refusing/failing-outputs-ok.txt"] = [403] * 100
    return ("--upload-url", context.loopback.url("refusing/"))


UPLOAD_REFUSED = Group(
    "upload-refused",
    "failing_outputs.py:Predictor",
    (Case("upload/refused", "the upload URL answers 403", UPLOAD, post("u1", {})),),
    args=lambda context: _refusing_uploads(context),
)
UPLOAD_UNREACHABLE = Group(
    "upload-unreachable",
    "failing_outputs.py:Predictor",
    (Case("upload/unreachable", "the upload URL cannot be reached", UPLOAD, post("u2", {})),),
    args=lambda context: ("--upload-url", "http://127.0.0.1:9/uploads/"),
)

DOWNLOAD = f"{PREDICTOR_RS} (`Input validation error: {{0}}`), requests' words within"
INPUT_FILES = Group(
    "input-files",
    "files.py:Predictor",
    (
        Case(
            "input-file/404",
            "a file input whose URL answers 404",
            DOWNLOAD,
            post_file("f1", _input_url("missing.txt")),
        ),
        Case(
            "input-file/500",
            "a file input whose URL answers 500",
            DOWNLOAD,
            post_file("f2", _input_url("broken.txt", 500)),
        ),
        Case(
            "input-file/unreachable",
            "a file input whose host cannot be reached",
            DOWNLOAD,
            post_file("f3", lambda context: "http://127.0.0.1:9/input.txt"),
        ),
        Case(
            "input-file/not-a-url",
            "a file input that is neither a URL nor a data URI",
            "crates/coglet-python/src/input.rs",
            post_file("f4", lambda context: "ftp://example.com/x"),
        ),
    ),
)

# (case, inputs): each refused by the Input schema, or not.
_BAD_INPUTS: tuple[tuple[str, Any], ...] = (
    ("required-missing", {}),
    ("string-wrong-type", {"text": 5}),
    ("string-null", {"text": None}),
    ("string-too-short-and-pattern", {"text": "A"}),
    ("string-too-long", {"text": "abcdefg"}),
    ("integer-below-minimum", {"text": "ab", "count": 0}),
    ("integer-above-maximum", {"text": "ab", "count": 9}),
    ("integer-fraction", {"text": "ab", "count": 2.5}),
    ("integer-as-string", {"text": "ab", "count": "3"}),
    ("integer-as-float", {"text": "ab", "count": 2.0}),
    ("number-below-minimum", {"text": "ab", "ratio": 0}),
    ("number-above-maximum", {"text": "ab", "ratio": 1}),
    ("boolean-as-string", {"text": "ab", "flag": "yes"}),
    ("choice-not-listed", {"text": "ab", "color": "blue"}),
    ("choice-wrong-type", {"text": "ab", "color": 5}),
    ("integer-choice-not-listed", {"text": "ab", "level": 4}),
    ("integer-choice-boolean", {"text": "ab", "level": True}),
    ("list-item-wrong-type", {"text": "ab", "numbers": [1, "x"]}),
    ("list-item-boolean", {"text": "ab", "numbers": [True]}),
    ("list-not-a-list", {"text": "ab", "numbers": "x"}),
    ("path-wrong-type", {"text": "ab", "doc": 5}),
    ("secret-wrong-type", {"text": "ab", "token": 5}),
    ("union-matches-none", {"text": "ab", "either": [1]}),
    ("optional-explicit-null", {"text": "ab", "maybe": None}),
    ("optional-wrong-type", {"text": "ab", "maybe": 5}),
    ("object-wrong-type", {"text": "ab", "blob": 5}),
    ("several-inputs", {"text": "A", "count": 9, "flag": "no", "unknown": 1}),
    ("unknown-input-dropped", {"text": "ab", "unknown": 1}),
    ("input-a-list", [1]),
    ("input-empty-list", []),
    ("input-a-string", "x"),
    ("input-null", None),
)

INPUTS = Group(
    "inputs",
    "strict_inputs.py:Predictor",
    tuple(
        Case(f"input/{name}", f"input {value!r}"[:80], VALIDATION, post(f"in-{i}", value))
        for i, (name, value) in enumerate(_BAD_INPUTS)
    ),
)

SETUP = (
    f"{ORCHESTRATOR} (`worker setup failed: {{0}}`, `worker setup failed (slot {{}}): {{}}`), "
    f"{WORKER_RS} (`Setup failed: {{}}`, SetupError)"
)
NOT_READY = f"{PREDICTOR_RS} (PredictionError::NotReady), {ROUTES}"


def _setup_group(failure: str, what: str, source: str, **env: str) -> Group:
    cases = [Case(f"setup/{failure}", what, source, health)]
    if failure == "raise":  # what the other routes answer, once
        cases += [
            Case(
                "setup-failed/predict", "a prediction after setup failed", NOT_READY, post("s", {})
            ),
            Case(
                "setup-failed/openapi",
                "/openapi.json after setup failed",
                ROUTES + " (openapi_schema)",
                request("GET", "/openapi.json"),
            ),
        ]
    return Group(
        f"setup-{failure}",
        "setup_failing.py:Predictor",
        tuple(cases),
        env={"SETUP_FAILURE": failure, **env},
        ready=("SETUP_FAILED",),
    )


SETUPS = (
    _setup_group("raise", "setup() raises", SETUP),
    _setup_group("sysexit", "setup() calls sys.exit(7)", SETUP),
    _setup_group("import", "the predictor's module raises on import", SETUP),
    _setup_group("osexit", "the worker exits during setup", f"{ORCHESTRATOR} (WorkerCrashed)"),
    _setup_group(
        "slow",
        "setup() runs past COG_SETUP_TIMEOUT",
        f"{ORCHESTRATOR} (SetupTimeout)",
        COG_SETUP_TIMEOUT="1",
    ),
)

SETUP_RUNNING = Group(
    "setup-running",
    "setup_failing.py:Predictor",
    (
        Case("setup-running/predict", "a prediction while setup runs", NOT_READY, post("r", {})),
        Case("setup-running/health", "/health-check while setup runs", ROUTES, health),
    ),
    env={"SETUP_FAILURE": "slow"},
    ready=("STARTING",),
)

HEALTH = f"{PY_PREDICTOR} (healthcheck), {ROUTES} (user_healthcheck_error)"
HEALTHCHECK = Group(
    "healthcheck",
    "health.py:Predictor",
    (
        Case("healthcheck/false", "healthcheck() returns False", HEALTH, healthcheck_says("false")),
        Case("healthcheck/raise", "healthcheck() raises", HEALTH, healthcheck_says("raise")),
        Case(
            "healthcheck/passes-again", "healthcheck() passes again", HEALTH, healthcheck_says("ok")
        ),
    ),
    env={"HEALTH_FILE": "health-mode"},
    files={"health-mode": "ok"},
)

_MESSAGE = {"role": "user", "content": "hi"}
OPAQUE = Group(
    "opaque",
    "opaque.py:Predictor",
    (
        Case(
            "opaque/passed-through",
            "Annotated[T, Opaque] inputs and output: objects, as sent and returned",
            f"{ROUTES}; the schema: Cog's static generator (pkg/schema, Opaque)",
            post("o1", {"message": _MESSAGE, "history": [_MESSAGE, {"x": [1]}], "tagged": [{}]}),
        ),
        Case(
            "opaque/not-an-object",
            "an opaque input that is not a JSON object",
            VALIDATION,
            post("o2", {"message": "hi", "history": {}}),
        ),
    ),
)

GROUPS: tuple[Group, ...] = (
    PREDICT,
    CRASH,
    SEGFAULT,
    ITERATOR,
    ASYNC,
    UPLOAD_REFUSED,
    UPLOAD_UNREACHABLE,
    INPUT_FILES,
    INPUTS,
    *SETUPS,
    SETUP_RUNNING,
    HEALTHCHECK,
    OPAQUE,
)

CASES: dict[str, Case] = {case.id: case for group in GROUPS for case in group.cases}
assert len(CASES) == sum(len(g.cases) for g in GROUPS), "case ids are unique"

"""Cog's HTTP API over the runtime: the routes, served by `runtime.http`.

Every body is written as coglet 0.23.1 writes it, byte for byte (see `runtime.jsonbody`):
compact sorted JSON, the same fields, the same status texts; errors that coglet answers in plain
text (400, 413, 415, 422 on a body of the wrong shape) are plain text here, and an unknown path or
method has an empty body.
"""

from __future__ import annotations

import json
import platform
from collections.abc import AsyncIterator
from typing import Any

import trio

from runtime.admission import Rejected
from runtime.http import Request, Response
from runtime.jsonbody import dumpb
from runtime.predictions import Runtime
from runtime.record import Prediction
from runtime.version import COG_VERSION

PYTHON_VERSION = platform.python_version()
SSE_KEEP_ALIVE_S = 15.0

# Python's JSON error messages as serde_json words them (the common ones).
_SERDE_WORDING = {
    "Expecting value": "expected value",
    "Extra data": "trailing characters",
    "Expecting property name enclosed in double quotes": "key must be a string",
    "Expecting ':' delimiter": "expected `:`",
    "Unterminated string starting at": "EOF while parsing a string",
}
_SERDE_KIND = {list: "sequence", str: "string", bool: "boolean", int: "integer", float: "float"}


def _json(body: Any, status: int = 200, sort_keys: bool = True) -> Response:
    return Response(status, dumpb(body, sort_keys=sort_keys), "application/json")


def _text(body: str, status: int) -> Response:
    return Response(status, body.encode(), "text/plain; charset=utf-8")


TOO_LARGE = _text("Failed to buffer the request body: length limit exceeded", 413)


def _position(text: str | bytes, offset: int) -> tuple[int, int]:
    before = text[:offset]
    newline = "\n" if isinstance(before, str) else b"\n"
    line = before.count(newline) + 1  # type: ignore[arg-type]
    return line, offset - (before.rfind(newline) + 1) + 1  # type: ignore[arg-type]


def parse_json(request: Request) -> Any:
    """The request's body as JSON, or Rejected(400) with coglet's plain-text wording. The raw
    body is released once decoded: a large one is held neither twice while it is parsed nor
    while its prediction runs."""

    def refused(message: str, where: tuple[int, int] | None = None) -> Rejected:
        at = f" at line {where[0]} column {where[1]}" if where else ""
        return Rejected(400, f"Failed to parse the request body as JSON: {message}{at}")

    raw = request.body
    try:
        text = str(raw, "utf-8")
    except UnicodeDecodeError as e:
        where = _position(bytes(raw[: e.start]), e.start)
        raise refused("invalid unicode code point", where) from None
    finally:
        del raw
        request.release()
    if not text or text.isspace():  # not strip(): that would copy a large body
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise refused(_SERDE_WORDING.get(e.msg, e.msg), (e.lineno, e.colno)) from None
    except RecursionError:
        raise refused("recursion limit exceeded") from None
    except ValueError:  # an integer beyond Python's digit limit
        raise refused("number out of range") from None


class App:
    """The request handler: `App(runtime)(request)` is the answer."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.noun = "trainings" if runtime.training else "predictions"

    async def __call__(self, request: Request) -> Response:
        try:
            return await self.route(request)
        except Rejected as e:
            return _json(e.body, e.status) if isinstance(e.body, dict) else _text(e.body, e.status)

    async def route(self, request: Request) -> Response:
        path, method = request.path, "GET" if request.method == "HEAD" else request.method
        if path in ("/", "/health-check", "/openapi.json"):
            if method != "GET":
                return Response(405)
            pages = {"/": self.index, "/health-check": self.health, "/openapi.json": self.schema}
            return await pages[path]()
        if path == "/shutdown":
            return await self.shutdown() if method == "POST" else Response(405)
        parts = path.strip("/").split("/")
        if parts[0] == self.noun and all(parts) and not path.endswith("/"):
            if len(parts) == 1:
                return await self.start(request, None) if method == "POST" else Response(405)
            if len(parts) == 2:
                return await self.start(request, parts[1]) if method == "PUT" else Response(405)
            if len(parts) == 3 and parts[2] == "cancel":
                return await self.cancel(parts[1]) if method == "POST" else Response(405)
        return Response(404)

    async def index(self) -> Response:
        body = {
            "cog_version": COG_VERSION,
            "docs_url": "/docs",
            "healthcheck_url": "/health-check",
            "openapi_url": "/openapi.json",
            "predictions_url": "/predictions",
            "predictions_idempotent_url": "/predictions/{prediction_id}",
            "predictions_cancel_url": "/predictions/{prediction_id}/cancel",
            "shutdown_url": "/shutdown",
        }
        if self.runtime.training:
            body["trainings_url"] = "/trainings"
            body["trainings_idempotent_url"] = "/trainings/{training_id}"
            body["trainings_cancel_url"] = "/trainings/{training_id}/cancel"
        return _json(body)

    async def health(self) -> Response:
        runtime = self.runtime
        await runtime.user_healthcheck()
        setup = runtime.setup
        # coglet's structs, in their field order (not sorted). As coglet, the setup's logs are
        # reported once it has ended, and empty ones are left out.
        report: dict[str, Any] = {"started_at": setup.started_at}
        if setup.completed_at:
            report["completed_at"] = setup.completed_at
        report["status"] = setup.status
        if setup.logs and setup.status != "starting":
            report["logs"] = str(setup.logs)
        body: dict[str, Any] = {
            "status": runtime.status(),
            "setup": report,
            "version": {"coglet": COG_VERSION, "python_sdk": COG_VERSION, "python": PYTHON_VERSION},
        }
        if runtime.unhealthy:
            body["user_healthcheck_error"] = runtime.unhealthy
        return _json(body, sort_keys=False)

    async def schema(self) -> Response:
        runtime = self.runtime
        if runtime.schema is None or runtime.setup.status != "succeeded":  # as Cog: after setup
            return _json({"error": "OpenAPI schema not available"}, 503)
        return _json(runtime.schema)

    async def shutdown(self) -> Response:
        self.runtime.shutdown_requested.set()
        return _json({})

    async def cancel(self, prediction_id: str) -> Response:
        found = await self.runtime.cancel(prediction_id)
        return _json({}, 200 if found else 404)

    async def start(self, request: Request, prediction_id: str | None) -> Response:
        runtime = self.runtime
        mimetype = request.header("content-type").partition(";")[0].strip().lower()
        if mimetype not in ("", "application/json"):  # as Cog: none is fine
            return _text("Expected request with `Content-Type: application/json`", 415)
        body = parse_json(request)
        if not isinstance(body, dict):
            kind = _SERDE_KIND.get(type(body), "null" if body is None else "value")
            return _text(
                "Failed to deserialize the JSON body into the target type: "
                f"invalid type: {kind}, expected struct PredictionRequest",
                422,
            )
        wants_sse = "text/event-stream" in request.header("accept")
        if wants_sse and runtime.training:
            return _json({"error": "Training endpoints do not support streaming responses."}, 406)
        if wants_sse and runtime.signature is not None and not runtime.signature.get("streaming"):
            return _json(
                {
                    "error": "This model does not support streaming responses. "
                    "Add @cog.streaming to predict() to enable SSE."
                },
                406,
            )
        prediction, new = runtime.submit(body, prediction_id)
        if wants_sse:
            # Room for the replayed history and what comes while the client reads it.
            room = len(prediction.events.history) + 1000
            sender, receiver = trio.open_memory_channel[tuple[str, Any]](room)
            prediction.subscribe(sender)  # now: the start event is on its way
            stream = self._events(prediction, receiver)
            return Response(200, content_type="text/event-stream", stream=stream)
        if not new and prediction_id is not None:  # as Cog: a PUT of a running one answers now
            return _json({**prediction.snapshot(), "input": prediction.input}, 202)
        if "respond-async" in request.header("prefer"):
            return _json(prediction.accepted(), 202)
        try:
            await prediction.done.wait()
        except trio.Cancelled:  # the client went away: nobody waits for this prediction
            with trio.CancelScope(shield=True):
                await runtime.cancel(prediction.id)
            raise
        return _json(prediction.sync_response())

    async def _events(
        self, prediction: Prediction, receiver: trio.MemoryReceiveChannel[tuple[str, Any]]
    ) -> AsyncIterator[bytes]:
        """Server-sent events until the prediction ends; the client going away cancels it."""
        try:
            async with receiver:
                while True:
                    with trio.move_on_after(SSE_KEEP_ALIVE_S) as idle:
                        try:
                            event, data = await receiver.receive()
                        except trio.EndOfChannel:
                            return
                    if idle.cancelled_caught:
                        yield b": keep-alive\n\n"  # as Cog (axum) after 15 s of quiet
                    else:
                        yield b"event: %s\ndata: %s\n\n" % (event.encode(), dumpb(data))
        except (trio.Cancelled, trio.BrokenResourceError, trio.ClosedResourceError):
            with trio.CancelScope(shield=True):
                await self.runtime.cancel(prediction.id)
            raise

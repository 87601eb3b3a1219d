"""Cog's HTTP API over the runtime, with quart-trio.

Every body is written as coglet 0.23.1 writes it, byte for byte (see `runtime.jsonbody`):
compact sorted JSON, the same fields, the same status texts; errors that coglet answers in plain
text (400, 415) are plain text here, and an unknown path or method has an empty body.
"""

from __future__ import annotations

import json
import platform
from collections.abc import AsyncIterator
from typing import Any

import trio
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from runtime.jsonbody import dumpb
from runtime.predictions import Prediction, Rejected, Runtime
from runtime.version import COG_VERSION

PYTHON_VERSION = platform.python_version()
SSE_KEEP_ALIVE_S = 15.0

# Python's JSON error messages as serde_json words them (the common ones).
_SERDE_WORDING = {
    "Expecting value": "expected value",
    "Extra data": "trailing characters",
    "Expecting property name enclosed in double quotes": "key must be a string",
    "Expecting ':' delimiter": "expected `:`",
}


def _json(body: Any, status: int = 200, sort_keys: bool = True) -> Response:
    return Response(
        dumpb(body, sort_keys=sort_keys), status=status, content_type="application/json"
    )


def _text(body: str, status: int) -> Response:
    return Response(body, status=status, content_type="text/plain; charset=utf-8")


def _empty(status: int) -> Response:
    response = Response(b"", status=status)
    del response.headers["Content-Type"]  # as Cog (axum): no body, no type
    return response


def _parse_error(e: json.JSONDecodeError) -> str:
    message = _SERDE_WORDING.get(e.msg, e.msg)
    return (
        f"Failed to parse the request body as JSON: {message} at line {e.lineno} column {e.colno}"
    )


def create_app(runtime: Runtime) -> QuartTrio:
    app = QuartTrio(__name__)
    noun = "trainings" if runtime.training else "predictions"

    @app.get("/")
    async def index() -> Response:
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
        if runtime.training:
            body["trainings_url"] = "/trainings"
            body["trainings_idempotent_url"] = "/trainings/{training_id}"
            body["trainings_cancel_url"] = "/trainings/{training_id}/cancel"
        return _json(body)

    @app.get("/health-check")
    async def health() -> Response:
        await runtime.user_healthcheck()
        setup = runtime.setup
        # coglet's structs, in their field order (not sorted). As coglet, the setup's logs are
        # reported once it has ended, and empty ones are left out.
        report: dict[str, Any] = {"started_at": setup.started_at}
        if setup.completed_at:
            report["completed_at"] = setup.completed_at
        report["status"] = setup.status
        if setup.logs and setup.status != "starting":
            report["logs"] = setup.logs
        body: dict[str, Any] = {
            "status": runtime.status(),
            "setup": report,
            "version": {"coglet": COG_VERSION, "python_sdk": COG_VERSION, "python": PYTHON_VERSION},
        }
        if runtime.unhealthy:
            body["user_healthcheck_error"] = runtime.unhealthy
        return _json(body, sort_keys=False)

    @app.get("/openapi.json")
    async def schema() -> Response:
        if runtime.schema is None or runtime.setup.status != "succeeded":  # as Cog: after setup
            return _json({"error": "OpenAPI schema not available"}, 503)
        return _json(runtime.schema)

    async def start(prediction_id: str | None) -> Response:
        raw = await request.get_data(as_text=True)  # first: an unread body stalls keep-alive
        if request.mimetype not in ("", "application/json"):  # as Cog: none is fine
            return _text("Expected request with `Content-Type: application/json`", 415)
        try:
            body = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as e:
            return _text(_parse_error(e), 400)
        wants_sse = "text/event-stream" in request.headers.get("accept", "")
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
        try:
            prediction, new = runtime.submit(body, prediction_id)
        except Rejected as e:
            return _json(e.body, e.status)
        if wants_sse:
            return _stream(prediction)
        if not new and prediction_id is not None:  # as Cog: a PUT of a running one answers now
            return _json({**prediction.snapshot(), "input": prediction.input}, 202)
        if "respond-async" in request.headers.get("prefer", ""):
            return _json(prediction.accepted(), 202)
        return await _wait(prediction)

    async def _wait(prediction: Prediction) -> Response:
        """A sync request: its going away (client disconnect) cancels the prediction."""
        try:
            await prediction.done.wait()
        except trio.Cancelled:
            with trio.CancelScope(shield=True):
                await runtime.cancel(prediction.id)
            raise
        return _json(prediction.sync_response())

    def _stream(prediction: Prediction) -> Response:
        send, receive = trio.open_memory_channel[tuple[str, Any]](1000)
        prediction.subscribers.append(send)

        async def events() -> AsyncIterator[bytes]:
            try:
                async with receive:
                    while True:
                        with trio.move_on_after(SSE_KEEP_ALIVE_S) as idle:
                            try:
                                event, data = await receive.receive()
                            except trio.EndOfChannel:
                                return
                        if idle.cancelled_caught:
                            yield b": keep-alive\n\n"  # as Cog (axum) after 15 s of quiet
                        else:
                            yield b"event: %s\ndata: %s\n\n" % (event.encode(), dumpb(data))
            except trio.Cancelled:
                with trio.CancelScope(shield=True):
                    await runtime.cancel(prediction.id)
                raise

        response = Response(events(), content_type="text/event-stream")
        response.timeout = None
        return response

    @app.post(f"/{noun}")
    async def create() -> Response:
        return await start(None)

    @app.put(f"/{noun}/<prediction_id>")
    async def idempotent(prediction_id: str) -> Response:
        return await start(prediction_id)

    @app.post(f"/{noun}/<prediction_id>/cancel")
    async def cancel(prediction_id: str) -> Response:
        await request.get_data()  # an unread body would stall the connection's next request
        found = await runtime.cancel(prediction_id)
        return _json({}, 200 if found else 404)

    @app.post("/shutdown")
    async def shutdown() -> Response:
        await request.get_data()
        runtime.shutdown_requested.set()
        return _json({})

    @app.errorhandler(404)
    @app.errorhandler(405)
    async def no_route(error: HTTPException) -> Response:
        await request.get_data()
        return _empty(error.code or 404)

    return app

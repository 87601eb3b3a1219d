"""Cog's HTTP API over the runtime, with quart-trio."""

from __future__ import annotations

import json
import platform
from collections.abc import AsyncIterator
from typing import Any

import trio
from quart import Response, request
from quart_trio import QuartTrio

from runtime.predictions import Prediction, Rejected, Runtime

COG_VERSION = "0.23.1"


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def create_app(runtime: Runtime) -> QuartTrio:
    app = QuartTrio(__name__)
    noun = "trainings" if runtime.training else "predictions"

    @app.get("/")
    async def index() -> Response:
        return _json(
            {
                "cog_version": COG_VERSION,
                "docs_url": "/docs",
                "healthcheck_url": "/health-check",
                "openapi_url": "/openapi.json",
                f"{noun}_url": f"/{noun}",
                f"{noun}_idempotent_url": f"/{noun}/{{{noun[:-1]}_id}}",
                f"{noun}_cancel_url": f"/{noun}/{{{noun[:-1]}_id}}/cancel",
                "shutdown_url": "/shutdown",
            }
        )

    @app.get("/health-check")
    async def health() -> Response:
        await runtime.user_healthcheck()
        setup = runtime.setup
        body: dict[str, Any] = {
            "status": runtime.status(),
            "setup": {
                "started_at": setup.started_at,
                "status": setup.status,
                "logs": setup.logs,
                **({"completed_at": setup.completed_at} if setup.completed_at else {}),
            },
            "version": {"coglet": COG_VERSION, "python": platform.python_version()},
        }
        if runtime.unhealthy:
            body["user_healthcheck_error"] = runtime.unhealthy
        return _json(body)

    @app.get("/openapi.json")
    async def schema() -> Response:
        if runtime.schema is None:
            return _json({"error": "OpenAPI schema not available"}, 503)
        return _json(runtime.schema)

    async def start(prediction_id: str | None) -> Response:
        if request.mimetype not in ("", "application/json"):  # as Cog: none is fine
            return Response("Expected request with `Content-Type: application/json`", status=415)
        raw = await request.get_data(as_text=True)
        try:
            body = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as e:
            return Response(f"Failed to parse the request body as JSON: {e}", status=400)
        wants_sse = "text/event-stream" in request.headers.get("accept", "")
        if wants_sse and runtime.signature is not None and not runtime.signature.get("streaming"):
            return _json(
                {
                    "error": "This model does not support streaming responses. "
                    "Add @cog.streaming to predict() to enable SSE."
                },
                406,
            )
        try:
            prediction = runtime.submit(body, prediction_id)
        except Rejected as e:
            return _json(e.body, e.status)
        if wants_sse:
            return _stream(prediction)
        if "respond-async" in request.headers.get("prefer", ""):
            return _json(prediction.response(), 202)
        return await _wait(prediction)

    async def _wait(prediction: Prediction) -> Response:
        """A sync request: its going away (client disconnect) cancels the prediction."""
        try:
            await prediction.done.wait()
        except trio.Cancelled:
            with trio.CancelScope(shield=True):
                await runtime.cancel(prediction.id)
            raise
        return _json(prediction.response())

    def _stream(prediction: Prediction) -> Response:
        send, receive = trio.open_memory_channel[tuple[str, Any]](1000)
        prediction.subscribers.append(send)

        async def events() -> AsyncIterator[bytes]:
            try:
                async with receive:
                    async for event, data in receive:
                        yield f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()
            except trio.Cancelled:
                with trio.CancelScope(shield=True):
                    await runtime.cancel(prediction.id)
                raise

        response = Response(events(), mimetype="text/event-stream")
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
        found = await runtime.cancel(prediction_id)
        return _json({}, 200 if found else 404)

    @app.post("/shutdown")
    async def shutdown() -> Response:
        runtime.shutdown_requested.set()
        return _json({})

    return app

"""Cog's HTTP API over the runtime: a plain ASGI application served by hypercorn.

Every body is written as coglet 0.23.1 writes it, byte for byte (see `runtime.jsonbody`):
compact sorted JSON, the same fields, the same status texts; errors that coglet answers in plain
text (400, 413, 415, 422 on a body of the wrong shape) are plain text here, and an unknown path or
method has an empty body. A framework would add a request context, a router and a response
object to every request; with seven routes the dispatch below is all that is needed, and the
per-request cost is what a model server is measured by.

Every request body is read to its end before the answer (an unread body stalls a keep-alive
connection); one over `MAX_BODY` is read and dropped, then refused with 413, as coglet does.
"""

from __future__ import annotations

import json
import platform
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import trio

from runtime.jsonbody import dumpb
from runtime.predictions import Prediction, Rejected, Runtime
from runtime.version import COG_VERSION

PYTHON_VERSION = platform.python_version()
SSE_KEEP_ALIVE_S = 15.0
MAX_BODY = 100 << 20  # coglet's limit (axum's DefaultBodyLimit in its routes)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Python's JSON error messages as serde_json words them (the common ones).
_SERDE_WORDING = {
    "Expecting value": "expected value",
    "Extra data": "trailing characters",
    "Expecting property name enclosed in double quotes": "key must be a string",
    "Expecting ':' delimiter": "expected `:`",
    "Unterminated string starting at": "EOF while parsing a string",
}
_SERDE_KIND = {list: "sequence", str: "string", bool: "boolean", int: "integer", float: "float"}


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = None


def _json(body: Any, status: int = 200, sort_keys: bool = True) -> Response:
    return Response(status, dumpb(body, sort_keys=sort_keys), "application/json")


def _text(body: str, status: int) -> Response:
    return Response(status, body.encode(), "text/plain; charset=utf-8")


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    receive: Receive

    def header(self, name: str) -> str:
        return self.headers.get(name, "")

    async def disconnected(self) -> None:
        """Returns when the client has gone (the body has been read: nothing else arrives)."""
        while (await self.receive())["type"] != "http.disconnect":
            pass


class TooLarge(Exception):
    pass


async def _read_body(receive: Receive, declared: int | None) -> bytes:
    """The whole body; one over MAX_BODY is still read to its end (so the connection stays
    usable) but dropped, then TooLarge."""
    too_large = declared is not None and declared > MAX_BODY
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Gone()
        chunk = message.get("body", b"")
        size += len(chunk)
        too_large = too_large or size > MAX_BODY
        if not too_large:
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if too_large:
        raise TooLarge()
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class _Gone(Exception):
    """The client went away before its request was read."""


def _position(text: str | bytes, offset: int) -> tuple[int, int]:
    before = text[:offset]
    newline = "\n" if isinstance(before, str) else b"\n"
    line = before.count(newline) + 1  # type: ignore[arg-type]
    return line, offset - (before.rfind(newline) + 1) + 1  # type: ignore[arg-type]


def parse_json(raw: bytes) -> Any:
    """The request body as JSON, or Rejected(400) with coglet's plain-text wording."""

    def refused(message: str, where: tuple[int, int] | None = None) -> Rejected:
        at = f" at line {where[0]} column {where[1]}" if where else ""
        return Rejected(400, f"Failed to parse the request body as JSON: {message}{at}")

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise refused("invalid unicode code point", _position(raw, e.start)) from None
    if not text.strip():
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
    """The ASGI application: `App(runtime)` is what hypercorn serves."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.noun = "trainings" if runtime.training else "predictions"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        length = headers.get("content-length", "")
        try:
            body = await _read_body(receive, int(length) if length.isdigit() else None)
        except TooLarge:
            await _respond(
                send, _text("Failed to buffer the request body: length limit exceeded", 413)
            )
            return
        except _Gone:
            return
        request = Request(scope["method"], scope["path"], headers, body, receive)
        try:
            response = await self.route(request, send)
        except Rejected as e:
            response = (
                _json(e.body, e.status) if isinstance(e.body, dict) else _text(e.body, e.status)
            )
        if response is not None:
            await _respond(send, response, head=request.method == "HEAD")

    async def route(self, request: Request, send: Send) -> Response | None:
        """The answer to `request`, or None when it has been streamed already."""
        path, method = request.path, "GET" if request.method == "HEAD" else request.method
        if path in ("/", "/health-check", "/openapi.json"):
            if method != "GET":
                return Response(405)
            return await {
                "/": self.index,
                "/health-check": self.health,
                "/openapi.json": self.schema,
            }[path]()
        if path == "/shutdown":
            return await self.shutdown() if method == "POST" else Response(405)
        parts = path.strip("/").split("/")
        if parts[0] == self.noun and all(parts) and not path.endswith("/"):
            if len(parts) == 1:
                return await self.start(request, send, None) if method == "POST" else Response(405)
            if len(parts) == 2:
                return (
                    await self.start(request, send, parts[1]) if method == "PUT" else Response(405)
                )
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

    async def start(
        self, request: Request, send: Send, prediction_id: str | None
    ) -> Response | None:
        runtime = self.runtime
        mimetype = request.header("content-type").partition(";")[0].strip().lower()
        if mimetype not in ("", "application/json"):  # as Cog: none is fine
            return _text("Expected request with `Content-Type: application/json`", 415)
        body = parse_json(request.body)
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
            await self._stream(prediction, request, send)
            return None
        if not new and prediction_id is not None:  # as Cog: a PUT of a running one answers now
            return _json({**prediction.snapshot(), "input": prediction.input}, 202)
        if "respond-async" in request.header("prefer"):
            return _json(prediction.accepted(), 202)
        return await self._wait(prediction, request)

    async def _wait(self, prediction: Prediction, request: Request) -> Response | None:
        """A sync request: its client going away cancels the prediction."""
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                await request.disconnected()
                with trio.CancelScope(shield=True):
                    await self.runtime.cancel(prediction.id)
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            await prediction.done.wait()
            nursery.cancel_scope.cancel()
        if not prediction.done.is_set():
            return None  # nobody to answer
        return _json(prediction.sync_response())

    async def _stream(self, prediction: Prediction, request: Request, send: Send) -> None:
        """Server-sent events until the prediction ends; the client going away cancels it."""
        sender, receiver = trio.open_memory_channel[tuple[str, Any]](1000)
        prediction.subscribers.append(sender)
        await send(_start(200, "text/event-stream", None))
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                await request.disconnected()
                with trio.CancelScope(shield=True):
                    await self.runtime.cancel(prediction.id)
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            try:
                async for chunk in _events(receiver):
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except OSError:  # the connection broke while writing
                with trio.CancelScope(shield=True):
                    await self.runtime.cancel(prediction.id)
            nursery.cancel_scope.cancel()


async def _events(receiver: trio.MemoryReceiveChannel[tuple[str, Any]]) -> AsyncIterator[bytes]:
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


def _start(status: int, content_type: str | None, length: int | None) -> Message:
    headers = []
    if content_type is not None:
        headers.append((b"content-type", content_type.encode()))
    if length is not None:
        headers.append((b"content-length", b"%d" % length))
    return {"type": "http.response.start", "status": status, "headers": headers}


async def _respond(send: Send, response: Response, head: bool = False) -> None:
    await send(_start(response.status, response.content_type, len(response.body)))
    await send({"type": "http.response.body", "body": b"" if head else response.body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return

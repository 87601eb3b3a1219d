"""HTTP/1.1 for the runtime: h11's protocol state machine over trio sockets, a task a connection.

A model server answers a handful of routes, one request at a time per connection, and is
measured by what it adds to each prediction. hypercorn (ASGI) spent about 0.4 ms of Python a
request on its event translation, a task per request and a score of scheduler rounds; h11 alone
parses and frames the same bytes (measured with the same client on this machine: 1.02 ms against
0.66 ms back to back, 2.07 against 1.59 ms after 10 ms idle). h11 does the protocol (framing,
chunked bodies, keep-alive, `Expect: 100-continue`, HEAD); this module only moves bytes.

Every request body is read to its end before the answer, so any answer leaves the connection
usable; a body over `MAX_BODY` is read and dropped and answered 413, as coglet (axum) does. While
a POST or PUT is being answered the connection is watched: the client going away cancels the
handler, which is how a sync prediction learns that nobody waits for it.
"""

from __future__ import annotations

import contextlib
import email.utils
import http
import sys
import time
import traceback
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import h11
import trio

MAX_BODY = 100 << 20  # coglet's limit (axum's DefaultBodyLimit in its routes)
MAX_HEAD = 64 << 10  # request line and headers
READ_SIZE = 1 << 16


@dataclass
class Request:
    method: str
    path: str  # percent-decoded, without the query
    headers: dict[str, str]  # names in lower case
    body: bytes

    def header(self, name: str) -> str:
        return self.headers.get(name, "")


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = None
    stream: AsyncIterator[bytes] | None = None  # sent as it comes (chunked) instead of `body`


Handler = Callable[[Request], Awaitable[Response]]


class TooLarge(Exception):
    pass


class Server:
    def __init__(self, handler: Handler, too_large: Response) -> None:
        self.handler = handler
        self.too_large = too_large
        self.busy = 0  # requests being answered

    async def serve(
        self, host: str, port: int, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listens on host:port and answers until cancelled."""
        listeners = await trio.open_tcp_listeners(port, host=host)
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(trio.serve_listeners, self.connection, [listener])
            task_status.started()

    async def drained(self) -> None:
        """Returns once no request is being answered."""
        while self.busy:
            await trio.sleep(0.01)

    async def connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        async with stream:
            try:
                while await self._exchange(conn, stream):
                    conn.start_next_cycle()
            except h11.RemoteProtocolError as e:
                await _refuse(conn, stream, e.error_status_hint)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the client went away

    async def _exchange(self, conn: h11.Connection, stream: trio.SocketStream) -> bool:
        """One request and its answer; whether the connection can carry another."""
        event = await _next(conn, stream)
        if isinstance(event, h11.ConnectionClosed):
            return False
        assert isinstance(event, h11.Request), event
        self.busy += 1
        try:
            head = event.method == b"HEAD"
            try:
                request = await _request(conn, stream, event)
            except TooLarge:
                await _send(conn, stream, self.too_large, head)
            else:
                if request.method not in ("POST", "PUT"):
                    await _send(conn, stream, await self._handle(request), head)
                elif await self._answer_watched(conn, stream, request, head):  # may wait long
                    return False  # the client went away
            return conn.our_state is h11.DONE
        finally:
            self.busy -= 1

    async def _answer_watched(
        self, conn: h11.Connection, stream: trio.SocketStream, request: Request, head: bool
    ) -> bool:
        """Answers `request` while watching the connection; whether the client went away."""
        gone = False
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                nonlocal gone
                data = await stream.receive_some(READ_SIZE)
                if data:  # the next request, pipelined: kept for its turn
                    conn.receive_data(data)
                    return
                gone = True
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            await _send(conn, stream, await self._handle(request), head)
            nursery.cancel_scope.cancel()
        return gone

    async def _handle(self, request: Request) -> Response:
        try:
            return await self.handler(request)
        except Exception:  # a bug of ours: this request fails, the server goes on
            traceback.print_exc(file=sys.stderr)
            return Response(500)


async def _next(conn: h11.Connection, stream: trio.SocketStream) -> object:
    """The next h11 event (or PAUSED), reading as much as it takes."""
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        if conn.they_are_waiting_for_100_continue:
            await stream.send_all(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        conn.receive_data(await stream.receive_some(READ_SIZE))


async def _request(conn: h11.Connection, stream: trio.SocketStream, event: h11.Request) -> Request:
    """The request with its whole body (or TooLarge once its body has been read and dropped)."""
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in event.headers}
    length = headers.get("content-length", "")
    too_large = length.isdigit() and int(length) > MAX_BODY
    chunks: list[bytes] = []
    size = 0
    while True:
        part = await _next(conn, stream)
        if isinstance(part, h11.EndOfMessage):
            break
        if isinstance(part, h11.Data):
            size += len(part.data)
            too_large = too_large or size > MAX_BODY
            if too_large:
                chunks.clear()
            else:
                chunks.append(bytes(part.data))
    if too_large:
        raise TooLarge()
    target = event.target.decode("latin-1").partition("?")[0]
    return Request(
        method=event.method.decode("ascii"),
        path=urllib.parse.unquote(target),
        headers=headers,
        body=chunks[0] if len(chunks) == 1 else b"".join(chunks),
    )


_date_cache: tuple[int, bytes] = (0, b"")


def _date() -> bytes:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True).encode())
    return _date_cache[1]


def _head(response: Response, length: int | None) -> h11.Response:
    headers = []
    if response.content_type is not None:
        headers.append((b"content-type", response.content_type.encode()))
    if length is not None:
        headers.append((b"content-length", b"%d" % length))
    headers.append((b"date", _date()))
    try:
        reason = http.HTTPStatus(response.status).phrase.encode()
    except ValueError:
        reason = b""
    return h11.Response(status_code=response.status, headers=headers, reason=reason)


async def _send(
    conn: h11.Connection, stream: trio.SocketStream, response: Response, head: bool
) -> None:
    if response.stream is None:
        data = conn.send(_head(response, len(response.body)))
        if response.body and not head:
            data += conn.send(h11.Data(data=response.body))
        await stream.send_all(data + conn.send(h11.EndOfMessage()))
        return
    await stream.send_all(conn.send(_head(response, None)))
    async for chunk in response.stream:
        await stream.send_all(conn.send(h11.Data(data=chunk)))
    await stream.send_all(conn.send(h11.EndOfMessage()))


async def _refuse(conn: h11.Connection, stream: trio.SocketStream, status: int) -> None:
    """A 4xx for a request h11 could not parse, if an answer can still be sent; then close."""
    try:
        data = conn.send(_head(Response(status), 0)) + conn.send(h11.EndOfMessage())
    except h11.LocalProtocolError:
        return
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await stream.send_all(data)

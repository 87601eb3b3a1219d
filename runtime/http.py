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

A client cannot hold the server's resources for free (`Limits`): a connection that sends no
complete request head in time, or goes quiet while idle or mid-body, is closed; the bodies
buffered at once have a total, past which a body is read, dropped and answered 413 with
Retry-After; and running out of file descriptors pauses accepting rather than crashing or
flooding the log.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import errno
import http
import mmap
import os
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
SEND_PIECE = 1 << 20  # a send that moves none of this in the idle timeout is given up
SMALL_BODY = 1 << 20  # larger bodies get an anonymous mapping of their own
ACCEPT_BACKOFF_S = 0.1  # between tries to accept while out of file descriptors
ACCEPT_REPORT_S = 60.0  # at most one log line this often about it
# accept() failures that mean "no room now", not "this listener is broken"
_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_TEXT = "text/plain; charset=utf-8"


def _env_number(name: str, default: float) -> float:
    """A positive number from the environment; the default where it is unset or not one."""
    try:
        value = float(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value > 0 else default


@dataclass(frozen=True)
class Limits:
    """What one client may hold: seconds to send a request head, seconds of silence while idle
    (between requests, mid-body, or not reading an answer), and the bytes of request bodies
    buffered at once across all connections."""

    header_timeout: float = 10.0
    idle_timeout: float = 60.0
    body_buffer: int = 256 << 20

    @classmethod
    def from_env(cls) -> Limits:
        """COG_HEADER_TIMEOUT, COG_IDLE_TIMEOUT (seconds), COG_BODY_BUFFER_LIMIT (bytes)."""
        return cls(
            header_timeout=_env_number("COG_HEADER_TIMEOUT", cls.header_timeout),
            idle_timeout=_env_number("COG_IDLE_TIMEOUT", cls.idle_timeout),
            body_buffer=int(_env_number("COG_BODY_BUFFER_LIMIT", cls.body_buffer)),
        )


class _Budget:
    """The bytes of request bodies that may be buffered at once, shared by all connections."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> bool:
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def give(self, size: int) -> None:
        self.used -= size


class _Buffer:
    """A body as it arrives. A large one goes into an anonymous mapping of its own, which goes
    back to the system whole once closed: bodies kept as 64 KiB chunks on the heap stayed with
    the process (8 concurrent bodies of 90 MiB left it at 669 MB)."""

    def __init__(self, capacity: int) -> None:
        self.size = 0
        self._chunks: list[bytes] = []
        self._map = mmap.mmap(-1, capacity) if capacity > SMALL_BODY else None
        self._view: memoryview | None = None

    def write(self, data: bytes | bytearray) -> None:
        if self._map is None:
            self._chunks.append(bytes(data))
        else:
            self._map.write(data)
        self.size += len(data)

    def value(self) -> bytes | memoryview:
        if self._map is None:
            return self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        if self._view is None:
            self._view = memoryview(self._map)[: self.size]
        return self._view

    def close(self) -> None:
        self._chunks = []
        if self._view is not None:
            self._view.release()
            self._view = None
        if self._map is not None:
            with contextlib.suppress(BufferError):  # a view still held: freed when it goes
                self._map.close()
            self._map = None


@dataclass
class Request:
    method: str
    path: str  # percent-decoded, without the query
    headers: dict[str, str]  # names in lower case
    _buffer: _Buffer | None = None
    _release: Callable[[], None] | None = None  # gives the body's bytes back to the budget

    @property
    def body(self) -> bytes | memoryview:
        """The whole body; valid until `release()`."""
        return self._buffer.value() if self._buffer is not None else b""

    def header(self, name: str) -> str:
        return self.headers.get(name, "")

    def release(self) -> None:
        """Drops the body (the handler calls it once it has read it; the server after the
        answer), so a long prediction does not keep its raw request in memory."""
        if self._buffer is not None:
            self._buffer.close()
            self._buffer = None
        if self._release is not None:
            self._release()
            self._release = None


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = None
    stream: AsyncIterator[bytes] | None = None  # sent as it comes (chunked) instead of `body`
    headers: tuple[tuple[bytes, bytes], ...] = ()


Handler = Callable[[Request], Awaitable[Response]]

BAD_PATH = Response(400, b"Invalid URL: the path is not valid UTF-8", _TEXT)


class Refused(Exception):
    """A request answered without its handler, once its body has been read and dropped."""

    def __init__(self, response: Response) -> None:
        self.response = response


class TimedOut(Exception):
    """The client sent (or read) nothing for longer than the limits allow."""


class Server:
    def __init__(self, handler: Handler, too_large: Response, limits: Limits | None = None) -> None:
        self.handler = handler
        self.too_large = too_large
        # Over the total, not over the client's own limit: it may try again shortly.
        self.no_room = dataclasses.replace(too_large, headers=((b"retry-after", b"1"),))
        self.limits = limits or Limits()
        self.budget = _Budget(self.limits.body_buffer)
        self.busy = 0  # requests being answered
        self._next_report = 0.0  # when running out of descriptors may be logged again

    async def serve(
        self, host: str, port: int, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listens on host:port and answers until cancelled."""
        listeners = await trio.open_tcp_listeners(port, host=host)
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(self._accept, listener, nursery)
            task_status.started()

    async def _accept(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        """Accepts connections, a task each; out of descriptors, waits for some to close."""
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as e:
                    if e.errno not in _CAPACITY_ERRNOS:
                        raise
                    self._report_accept_failure(e)
                    await trio.sleep(ACCEPT_BACKOFF_S)
                else:
                    nursery.start_soon(self.connection, stream)

    def _report_accept_failure(self, e: OSError) -> None:
        """One line now and then, not one a try: the condition lasts until connections close."""
        now = time.monotonic()
        if now >= self._next_report:
            self._next_report = now + ACCEPT_REPORT_S
            print(
                f"cog: cannot accept connections: {e.strerror}; new clients wait until idle "
                f"connections are closed (said at most once every {ACCEPT_REPORT_S:g} s)",
                file=sys.stderr,
                flush=True,
            )

    async def drained(self) -> None:
        """Returns once no request is being answered."""
        while self.busy:
            await trio.sleep(0.01)

    async def connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        async with stream:
            try:
                first = True
                while await self._exchange(conn, stream, first):
                    conn.start_next_cycle()
                    first = False
            except h11.RemoteProtocolError as e:
                await self._refuse(conn, stream, e.error_status_hint)
            except (TimedOut, trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the client went away, or would not go on

    async def _exchange(self, conn: h11.Connection, stream: trio.SocketStream, first: bool) -> bool:
        """One request and its answer; whether the connection can carry another."""
        event = await self._request_head(conn, stream, first)
        if isinstance(event, h11.ConnectionClosed):
            return False
        assert isinstance(event, h11.Request), event
        # RFC 9112 §6.1: both framings at once may be a request smuggled past a proxy that
        # reads the other one; answer it (chunked wins), then close.
        names = {name for name, _ in event.headers}
        close = b"content-length" in names and b"transfer-encoding" in names
        self.busy += 1
        try:
            head = event.method == b"HEAD"
            try:
                request = await self._request(conn, stream, event)
            except Refused as e:
                await self._send(conn, stream, e.response, head, close)
                return conn.our_state is h11.DONE
            try:
                if request.method not in ("POST", "PUT"):
                    await self._send(conn, stream, await self._handle(request), head, close)
                elif await self._answer_watched(conn, stream, request, head, close):
                    return False  # the client went away
            finally:
                request.release()
            return conn.our_state is h11.DONE
        finally:
            self.busy -= 1

    async def _answer_watched(
        self,
        conn: h11.Connection,
        stream: trio.SocketStream,
        request: Request,
        head: bool,
        close: bool,
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
            await self._send(conn, stream, await self._handle(request), head, close)
            nursery.cancel_scope.cancel()
        return gone

    async def _handle(self, request: Request) -> Response:
        try:
            return await self.handler(request)
        except Exception:  # a bug of ours: this request fails, the server goes on
            traceback.print_exc(file=sys.stderr)
            return Response(500)

    # --- reading -------------------------------------------------------------------------------

    async def _receive(self, stream: trio.SocketStream, deadline: float) -> bytes:
        with trio.move_on_at(deadline):
            return await stream.receive_some(READ_SIZE)
        raise TimedOut()

    async def _request_head(
        self, conn: h11.Connection, stream: trio.SocketStream, first: bool
    ) -> object:
        """The next request's head (or ConnectionClosed). A connection gets `header_timeout`
        to send it, counted from its start or from the first byte after an idle wait, which
        may last `idle_timeout`."""
        idle = not first and not conn.trailing_data[0]
        limits = self.limits
        deadline = trio.current_time() + (limits.idle_timeout if idle else limits.header_timeout)
        while (event := conn.next_event()) is h11.NEED_DATA:
            data = await self._receive(stream, deadline)
            if idle and data:
                idle = False
                deadline = trio.current_time() + limits.header_timeout
            conn.receive_data(data)
        return event

    async def _next(self, conn: h11.Connection, stream: trio.SocketStream) -> object:
        """The next event of a body, reading as long as the client does not go quiet."""
        while (event := conn.next_event()) is h11.NEED_DATA:
            if conn.they_are_waiting_for_100_continue:
                go_on = h11.InformationalResponse(status_code=100, headers=[])
                await self._send_all(stream, conn.send(go_on))
            deadline = trio.current_time() + self.limits.idle_timeout
            conn.receive_data(await self._receive(stream, deadline))
        return event

    async def _request(
        self, conn: h11.Connection, stream: trio.SocketStream, event: h11.Request
    ) -> Request:
        """The request with its whole body, or Refused once its body has been read and dropped:
        over `MAX_BODY`, over what the budget has room for, or a path that is not UTF-8."""
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in event.headers}
        length = headers.get("content-length", "")
        declared = int(length) if length.isdigit() and "transfer-encoding" not in headers else None
        reserved = 0
        refusal: Response | None = None
        if declared is not None and declared > MAX_BODY:
            refusal = self.too_large
        elif declared is not None and not self.budget.take(declared):
            refusal = self.too_large if declared > self.budget.limit else self.no_room
        else:
            reserved = declared or 0
        buffer = _Buffer(MAX_BODY if declared is None else declared) if refusal is None else None
        try:
            while not isinstance(part := await self._next(conn, stream), h11.EndOfMessage):
                if not isinstance(part, h11.Data) or buffer is None:
                    continue
                size = buffer.size + len(part.data)
                if size > reserved:  # a chunked body, or more than it declared
                    grown = size <= MAX_BODY and self.budget.take(size - reserved)
                    if not grown:
                        never = size > min(MAX_BODY, self.budget.limit)  # no use retrying
                        refusal = self.too_large if never else self.no_room
                        buffer.close()
                        buffer = None
                        self.budget.give(reserved)
                        reserved = 0
                        continue
                    reserved = size
                buffer.write(part.data)
        except BaseException:
            if buffer is not None:
                buffer.close()
            self.budget.give(reserved)
            raise
        request = Request(
            method=event.method.decode("ascii"),
            path="",
            headers=headers,
            _buffer=buffer,
            _release=lambda: self.budget.give(reserved),
        )
        target = event.target.partition(b"?")[0]
        try:
            request.path = urllib.parse.unquote_to_bytes(target).decode("utf-8")
        except UnicodeDecodeError:
            refusal = refusal or BAD_PATH
        if refusal is not None:
            request.release()
            raise Refused(refusal)
        return request

    # --- writing -------------------------------------------------------------------------------

    async def _send_all(self, stream: trio.SocketStream, data: bytes) -> None:
        """Sends `data`, giving up on a client that reads none of a piece in the idle timeout."""
        view = memoryview(data)
        for start in range(0, len(view), SEND_PIECE):
            with trio.move_on_after(self.limits.idle_timeout) as scope:
                await stream.send_all(view[start : start + SEND_PIECE])
            if scope.cancelled_caught:
                raise TimedOut()

    async def _send(
        self,
        conn: h11.Connection,
        stream: trio.SocketStream,
        response: Response,
        head: bool,
        close: bool = False,
    ) -> None:
        if response.stream is None:
            data = conn.send(_head(response, len(response.body), close))
            if response.body and not head:
                data += conn.send(h11.Data(data=response.body))
            await self._send_all(stream, data + conn.send(h11.EndOfMessage()))
            return
        await self._send_all(stream, conn.send(_head(response, None, close)))
        async for chunk in response.stream:
            await self._send_all(stream, conn.send(h11.Data(data=chunk)))
        await self._send_all(stream, conn.send(h11.EndOfMessage()))

    async def _refuse(self, conn: h11.Connection, stream: trio.SocketStream, status: int) -> None:
        """A 4xx for a request h11 could not parse, if an answer can still be sent; then close."""
        try:
            data = conn.send(_head(Response(status), 0)) + conn.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            return
        with contextlib.suppress(TimedOut, trio.BrokenResourceError, trio.ClosedResourceError):
            await self._send_all(stream, data)


_date_cache: tuple[int, bytes] = (0, b"")


def _date() -> bytes:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True).encode())
    return _date_cache[1]


def _head(response: Response, length: int | None, close: bool = False) -> h11.Response:
    headers = []
    if response.content_type is not None:
        headers.append((b"content-type", response.content_type.encode()))
    if length is not None:
        headers.append((b"content-length", b"%d" % length))
    headers.append((b"date", _date()))
    headers.extend(response.headers)
    if close:
        headers.append((b"connection", b"close"))
    try:
        reason = http.HTTPStatus(response.status).phrase.encode()
    except ValueError:
        reason = b""
    return h11.Response(status_code=response.status, headers=headers, reason=reason)

"""The runtime under abuse: failed uploads, refused bodies on keep-alive connections, malformed
JSON, floods of log lines, and large inputs and outputs. A real server, real sockets, and real
loopback servers on the other end; each test is one finding that once broke the server."""

from __future__ import annotations

import socket
import time

import pytest

from tests.conftest import LoopbackServer
from tests.runtime_server import serve


def test_a_failed_upload_fails_its_prediction_and_the_server_stays_up(
    http_server: LoopbackServer,
) -> None:
    http_server.failures["up/out0.txt"] = [403]
    with serve("stress.py:FileIterator", "--upload-url", http_server.url("up/")) as server:
        failed = server.predict({"input": {"n": 3}}).json()
        assert failed["status"] == "failed", failed
        assert failed["error"] == "Failed to upload output: upload returned status 403 Forbidden"
        after = server.predict({"input": {"n": 1}}).json()  # the server still answers
        assert after["status"] == "succeeded", after
        assert after["output"] == [http_server.url("up/out0.txt")]
        assert http_server.files["up/out0.txt"] == b"file 0"
        assert server.health()["status"] == "READY"


def _exchange(conn: socket.socket, request: bytes) -> bytes:
    """Sends one request on a kept-alive connection and reads its whole answer."""
    conn.sendall(request)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = conn.recv(65536)
        assert chunk, f"the connection was closed: {head!r}"
        head += chunk
    head, _, body = head.partition(b"\r\n\r\n")
    length = int(
        next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:"))[15:]
    )
    while len(body) < length:
        chunk = conn.recv(65536)
        assert chunk, "the connection was closed mid-body"
        body += chunk
    return head.split(b"\r\n")[0] + b" " + body


def _post(body: bytes, content_type: str = "application/json") -> bytes:
    return (
        b"POST /predictions HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
        % (content_type.encode(), len(body))
    ) + body


def test_a_keep_alive_connection_survives_every_refusal() -> None:
    """415, 413 (over coglet's 100 MiB), 400 and 422 each leave the connection usable."""
    follow = _post(b'{"input":{"n":7}}')
    refused = [
        (_post(b"x" * (2 << 20), "text/plain"), b"HTTP/1.1 415"),
        (_post(b'{"input":{"s":"' + b"y" * (101 << 20) + b'"}}'), b"HTTP/1.1 413"),
        (_post(b'{"input":'), b"HTTP/1.1 400"),
        (_post(b"[1]"), b"HTTP/1.1 422"),
    ]
    with (
        serve("stress.py:Echo") as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn,
    ):
        for request, status in refused * 2:
            assert _exchange(conn, request).startswith(status)
            answer = _exchange(conn, follow)
            assert answer.startswith(b"HTTP/1.1 200") and b'"output":"7"' in answer, answer


def test_every_malformed_body_is_a_4xx_in_plain_text() -> None:
    bodies = {
        b'{"input":{"s":"\xff\xfe"}}': (400, "invalid unicode code point at line 1 column 16"),
        b'{"input":{"s":' + b"[" * 100_000 + b"]" * 100_000 + b"}}": (
            400,
            "recursion limit exceeded",
        ),
        b'{"input":{"n":' + b"9" * 5000 + b"}}": (400, "number out of range"),
        b'{"input":{"s":"abc': (400, "EOF while parsing a string at line 1 column 15"),
        b'{"input":{}} x': (400, "trailing characters at line 1 column 14"),
    }
    with serve("stress.py:Echo") as server:
        for body, (status, message) in bodies.items():
            answer = server.http.post(
                "/predictions", content=body, headers={"Content-Type": "application/json"}
            )
            assert answer.status_code == status, (body[:40], answer.text)
            assert answer.headers["content-type"] == "text/plain; charset=utf-8"
            assert answer.text == f"Failed to parse the request body as JSON: {message}"
        for body, kind in ((b"[1,2]", "sequence"), (b'"x"', "string"), (b"null", "null")):
            answer = server.http.post(
                "/predictions", content=body, headers={"Content-Type": "application/json"}
            )
            assert answer.status_code == 422 and answer.text == (
                "Failed to deserialize the JSON body into the target type: "
                f"invalid type: {kind}, expected struct PredictionRequest"
            )
        assert server.predict({"input": {"n": 1}}).json()["output"] == "1"


# A timing bound: `make test` runs it alone after the rest, never beside other tests.
@pytest.mark.slow
@pytest.mark.serial
def test_40000_log_lines_and_a_40_mb_output_take_linear_time() -> None:
    """Both were quadratic (`logs +=`, `buffer += chunk` in the worker pipe): 2.1 s and 13 s."""
    with serve("stress.py:Logs") as server:
        start = time.monotonic()
        answer = server.http.post("/predictions", json={"input": {"lines": 40_000}})
        took = time.monotonic() - start
        logs = answer.json()["logs"]
        assert logs.count("\n") == 40_000 and logs.endswith("line 39999\n")
        assert took < 1.5, f"40,000 log lines took {took:.2f} s"
    with serve("stress.py:BigOutput") as server:
        start = time.monotonic()
        answer = server.http.post("/predictions", json={"input": {"mb": 40}})
        took = time.monotonic() - start
        assert len(answer.json()["output"]) == 40 << 20
        assert took < 1.5, f"a 40 MB output took {took:.2f} s"


def test_large_inputs_are_accepted(http_server: LoopbackServer) -> None:
    """A 200 MB file by URL (streamed to disk) and a 17 MB body (coglet takes up to 100 MiB)."""
    http_server.files["big.bin"] = b"z" * (200 << 20)
    with serve("stress.py:Size") as server:
        by_url = server.http.post(
            "/predictions", json={"input": {"data": http_server.url("big.bin")}}, timeout=120
        )
        assert by_url.json()["output"] == 200 << 20, by_url.text
        data_uri = "data:text/plain;base64,eHl6"
        big_body = {"input": {"data": data_uri, "text": "t" * (17 << 20)}}
        answer = server.http.post("/predictions", json=big_body, timeout=120)
        assert answer.json()["output"] == 3 + (17 << 20), answer.text[:200]


def _read_answers(conn: socket.socket, count: int) -> bytes:
    received = b""
    while received.count(b"HTTP/1.1 ") < count or not received.endswith((b"}", b"\r\n\r\n")):
        chunk = conn.recv(65536)
        assert chunk, received
        received += chunk
    return received


def test_http_edges_curl_and_proxies_use() -> None:
    """`Expect: 100-continue` (curl, for bodies over 1 MB), pipelined requests, HEAD, and a
    request line that is not HTTP (400, then the connection closes)."""
    with serve("stress.py:Echo") as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
            body = b'{"input":{"s":"' + b"c" * (2 << 20) + b'"}}'
            conn.sendall(
                b"POST /predictions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
            )
            assert conn.recv(65536).startswith(b"HTTP/1.1 100 ")
            conn.sendall(body)
            answer = _read_answers(conn, 1)
            assert answer.startswith(b"HTTP/1.1 200 OK") and b'"status":"succeeded"' in answer
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
            one, two = _post(b'{"input":{"n":1}}'), _post(b'{"input":{"n":2}}')
            conn.sendall(one + two + b"HEAD /health-check HTTP/1.1\r\nHost: x\r\n\r\n")
            answers = _read_answers(conn, 3)
            assert answers.index(b'"output":"1"') < answers.index(b'"output":"2"')
            head = answers[answers.rindex(b"HTTP/1.1 ") :]
            assert head.startswith(b"HTTP/1.1 200 OK") and head.endswith(b"\r\n\r\n"), head
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
            conn.sendall(b"NONSENSE\r\n\r\n")
            answer = conn.recv(65536)
            assert answer.startswith(b"HTTP/1.1 400 "), answer
            assert conn.recv(65536) == b""  # closed
        assert server.predict({"input": {"n": 3}}).json()["output"] == "3"


def test_a_prediction_with_unusable_urls_fails_alone(http_server: LoopbackServer) -> None:
    """Malformed file and webhook URLs once raised out of the prediction's task and took the
    runtime's nursery down with it."""
    uri = "data:text/plain;base64,eHl6"
    with serve("stress.py:Size") as server:
        for url in ("http://[::1", "http://exa mple/x", "ftp://x/y"):
            failed = server.predict({"input": {"data": url}}).json()
            assert failed["status"] == "failed" and url[:10] in failed["error"], failed
        for hook in ("http://[::1", "not a url", http_server.url("hook")):
            answer = server.predict({"input": {"data": uri}, "webhook": hook}).json()
            assert answer["status"] == "succeeded" and answer["output"] == 3, answer
        assert server.health()["status"] == "READY"
        assert server.predict({"input": {"data": uri, "text": "ab"}}).json()["output"] == 5

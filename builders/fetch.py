"""Fixed-output fetch: download a file over http(s) or copy a file:// URL, verifying SHA-256.

The only builder allowed the network. Mirrors are tried in order, rounds are retried with
backoff on transient failures, and the download is streamed to disk, never held in memory.
The system CA bundle named by SSL_CERT_FILE / SSL_CERT_DIR is honoured (corporate proxies).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from builders.base import Args, BuildContext, derive
from builders.errors import BuildError
from derivations.downloads import ssl_context
from derivations.model import Derivation
from store.errors import HashMismatch
from store.hashing import HashingWriter
from store.paths import safe_name

CHUNK = 1 << 20
ROUNDS = 4
BACKOFF_S = 0.5


class _Transient(Exception):
    pass


class _Permanent(Exception):
    pass


def fetch_derivation(
    name: str,
    urls: list[str] | str,
    sha256: str,
    executable: bool = False,
    hint: str = "",
    size: int | None = None,
) -> Derivation:
    """A fixed-output derivation for one file; its path depends only on `name` and `sha256`.
    `hint` says what to do when no URL answers (another mirror, say); `size`, where the lock
    pins it, is where a download is cut off (a server that sends more is refused)."""
    args: dict[str, object] = {
        "urls": [urls] if isinstance(urls, str) else list(urls),
        "executable": executable,
    }
    args |= {"hint": hint} if hint else {}
    args |= {"size": size} if size is not None else {}
    return derive(FetchBuilder, safe_name(name), args=args, sha256=sha256)


class FetchArgs(Args):
    urls: tuple[str, ...]  # mirrors, tried in order
    executable: bool = False
    hint: str = ""  # what to do when no URL answers
    size: int | None = None  # the pinned size: nothing past it is read


class FetchBuilder:
    kind = "fetch"
    version = "1"
    runs_foreign_code = False

    def __init__(self) -> None:
        self._http: httpx.Client | None = None
        self._http_lock = threading.Lock()

    def _client(self) -> httpx.Client:
        """One pooled client for every fetch of a realisation: connections and name lookups
        are reused (hundreds of .debs from one mirror), and the CA bundle is loaded once."""
        with self._http_lock:
            if self._http is None:
                self._http = httpx.Client(
                    verify=ssl_context(),
                    timeout=httpx.Timeout(30.0),
                    follow_redirects=True,
                    limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
                )
            return self._http

    def check_ahead(self, drvs: Sequence[Derivation]) -> None:
        """Fails at once when every URL of a fetch is on a host that does not exist or refuses
        connections (GitHub from a machine that reaches only PyPI): otherwise that error
        comes after every build the plan runs first. A slow host is not judged."""
        plans = [(drv, FetchArgs.model_validate(drv.args)) for drv in drvs]
        hosts = {_host(u) for _, args in plans for u in args.urls} - {None}
        with ThreadPoolExecutor(max_workers=16) as pool:
            dead = dict(zip(hosts, pool.map(_unreachable, hosts), strict=True))
        for drv, args in plans:
            why = [(u, dead.get(_host(u))) for u in args.urls]
            if all(reason for _, reason in why):
                detail = "; ".join(f"{u}: {reason}" for u, reason in why)
                raise BuildError(
                    f"could not fetch {drv.name} from any of its URLs ({detail})",
                    hint=args.hint or None,
                )

    def build(self, ctx: BuildContext) -> None:
        assert ctx.drv.fixed_output is not None, "fetch derivations are fixed-output"
        expected = ctx.drv.fixed_output.sha256
        args = ctx.args(FetchArgs)
        urls = args.urls
        failures: dict[str, str] = {}
        mismatches: list[tuple[str, str]] = []
        dead: set[str] = set()
        for round_ in range(ROUNDS):
            for url in urls:
                if url in dead:
                    continue
                ctx.check_cancelled()
                ctx.say(f"fetching {url}")
                try:
                    actual = self._download(url, ctx, args.size)
                except _Transient as e:
                    failures[url] = str(e)
                    ctx.say(f"  failed ({e}); will retry")
                    continue
                except _Permanent as e:
                    failures[url] = str(e)
                    dead.add(url)
                    ctx.say(f"  failed ({e})")
                    continue
                if actual == expected:
                    if args.executable:
                        os.chmod(ctx.out, 0o755)
                    return
                mismatches.append((url, actual))
                dead.add(url)
            if len(dead) == len(urls):
                break
            deadline = time.monotonic() + BACKOFF_S * 2**round_
            while time.monotonic() < deadline:
                ctx.check_cancelled()
                time.sleep(0.05)
        ctx.out.unlink(missing_ok=True)
        if mismatches:
            url, actual = mismatches[0]
            raise HashMismatch(
                f"hash mismatch for {url}: expected sha256 {expected}, got {actual}",
                hint="if the upstream file really changed, update the pinned hash",
            )
        detail = "; ".join(f"{u}: {why}" for u, why in failures.items())
        raise BuildError(
            f"could not fetch {ctx.drv.name} from any of its URLs ({detail})",
            hint=args.hint or None,
        )

    def _download(self, url: str, ctx: BuildContext, size: int | None) -> str:
        """The file at `url` into $out; its sha256. Where `size` is pinned, at most size+1
        bytes are written: one more than pinned proves the source wrong, and is refused."""
        parsed = urllib.parse.urlsplit(url)
        with open(ctx.out, "wb") as f:
            out = _Bounded(HashingWriter(f), size, url)
            if parsed.scheme == "file":
                src = Path(urllib.parse.unquote(parsed.path))
                try:
                    source = open(src, "rb")  # noqa: SIM115
                except OSError as e:
                    raise _Permanent(e.strerror) from None
                with source:
                    while chunk := source.read(CHUNK):
                        ctx.check_cancelled()
                        out.write(chunk)
                return out.hexdigest()
            if parsed.scheme not in ("http", "https"):
                raise _Permanent(f"unsupported URL scheme {parsed.scheme!r}")
            try:
                with self._client().stream("GET", url) as response:
                    if response.status_code >= 500 or response.status_code == 429:
                        raise _Transient(f"HTTP {response.status_code}")
                    if response.status_code >= 400:
                        raise _Permanent(f"HTTP {response.status_code}")
                    total = size or int(response.headers.get("content-length") or 0)
                    for chunk in response.iter_bytes(CHUNK):
                        ctx.check_cancelled()
                        out.write(chunk)
                        ctx.progress(min(out.size, total), total)
                    ctx.say(f"  {out.size} bytes")
            except httpx.TransportError as e:
                raise _Transient(f"{type(e).__name__}: {e}") from None
        return out.hexdigest()


class _Bounded:
    """A HashingWriter that takes at most `limit`+1 bytes, then refuses the source."""

    def __init__(self, inner: HashingWriter, limit: int | None, url: str) -> None:
        self.inner, self.limit, self.url = inner, limit, url

    @property
    def size(self) -> int:
        return self.inner.size

    def hexdigest(self) -> str:
        return self.inner.hash.hexdigest()

    def write(self, chunk: bytes) -> None:
        if self.limit is not None and self.inner.size + len(chunk) > self.limit:
            self.inner.write(chunk[: self.limit + 1 - self.inner.size])
            raise _Permanent(f"it sent more than the {self.limit} bytes pinned; cut off")
        self.inner.write(chunk)


def _host(url: str) -> tuple[str, int] | None:
    """The host and port an http(s) URL connects to; None for other schemes."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def _unreachable(host: tuple[str, int] | None) -> str | None:
    """Why nothing can connect to `host`: its name does not resolve, or it refuses; None when
    it answers, is slow, or a proxy stands between (then only a real request can tell)."""
    if host is None:
        return None
    name, port = host
    if urllib.request.getproxies() and not urllib.request.proxy_bypass(name):
        return None
    try:
        with socket.create_connection((name, port), timeout=5):
            return None
    except socket.gaierror as e:
        if e.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
            return f"host {name} not found"
        return None  # a resolver that is down for now
    except ConnectionRefusedError:
        return f"{name}:{port} refused the connection"
    except OSError:
        return None

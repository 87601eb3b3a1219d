"""HTTP for resolution time (indexes, release files): the system CA bundle, and a download cache.

Builders fetch through fixed-output derivations; this module serves what runs before any
derivation exists (resolving a lock). Files whose hash is known are cached by that hash
outside the store (`$COG_CACHE_DIR`, default `$XDG_CACHE_HOME/cog`), so a second resolve of
the same archive state downloads only the small signed release files.
"""

from __future__ import annotations

import hashlib
import os
import ssl
from pathlib import Path

import httpx

from derivations import ca_cert
from derivations.errors import DerivationError

TIMEOUT = httpx.Timeout(60.0, connect=15.0)


def ssl_context() -> ssl.SSLContext:
    """Trusts the CA bundle named by SSL_CERT_FILE / SSL_CERT_DIR (e.g. a proxy's CA), and
    the certificate COG_CA_CERT gives."""
    context = ssl.create_default_context(
        cafile=os.environ.get("SSL_CERT_FILE") or None,
        capath=os.environ.get("SSL_CERT_DIR") or None,
    )
    extra = ca_cert.from_environment()
    if extra is not None:
        context.load_verify_locations(cadata=extra)
    return context


def cache_dir() -> Path:
    explicit = os.environ.get("COG_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cog"


def client() -> httpx.Client:
    return httpx.Client(verify=ssl_context(), timeout=TIMEOUT, follow_redirects=True)


# What a file of unknown size (a Release file, an index page) may be: past it, the server is
# refused rather than read into memory without end.
SMALL_LIMIT = 256 << 20


class TooLarge(DerivationError):
    """A server sent more bytes than the file can have."""


def get(http: httpx.Client, url: str, limit: int = SMALL_LIMIT) -> bytes:
    """A small file, in memory; any failure is one sentence naming the URL. A server that
    sends more than `limit` bytes is cut off there and refused."""
    chunks: list[bytes] = []
    got = 0
    try:
        with http.stream("GET", url) as response:
            if response.status_code != 200:
                raise DerivationError(
                    f"cannot download {url}: HTTP {response.status_code}",
                    hint="check the mirror URL; the archive may have moved",
                )
            for chunk in response.iter_bytes():
                got += len(chunk)
                if got > limit:
                    raise TooLarge(
                        f"cannot download {url}: it sent more than the {limit} bytes expected",
                        hint="the mirror may be tampered with; use another",
                    )
                chunks.append(chunk)
    except httpx.HTTPError as e:
        raise DerivationError(
            f"cannot download {url}: {e}", hint="check the mirror URL and your network"
        ) from None
    return b"".join(chunks)


def get_verified(http: httpx.Client, url: str, sha256: str, size: int, what: str) -> Path:
    """A file of known hash: from the cache, or downloaded (never past `size`+1 bytes),
    verified, then cached."""
    cached = cache_dir() / "by-sha256" / sha256
    if cached.is_file():
        return cached
    try:
        data, got = get(http, url, limit=size), ""
    except TooLarge:  # refused below, as any other file that is not the one signed
        data, got = b"", "more bytes than that"
    actual = hashlib.sha256(data).hexdigest()
    if got or actual != sha256 or len(data) != size:
        got = got or f"{actual} ({len(data)} bytes)"
        raise DerivationError(
            f"{what} at {url} does not match its signed hash: expected sha256 {sha256} "
            f"({size} bytes), got {got}",
            hint="the mirror may be mid-update or tampered with; retry later or use another",
        )
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(f".{sha256}.{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, cached)
    return cached

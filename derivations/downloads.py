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


def get(http: httpx.Client, url: str) -> bytes:
    """A small file, in memory; any failure is one sentence naming the URL."""
    try:
        response = http.get(url)
    except httpx.HTTPError as e:
        raise DerivationError(
            f"cannot download {url}: {e}", hint="check the mirror URL and your network"
        ) from None
    if response.status_code != 200:
        raise DerivationError(
            f"cannot download {url}: HTTP {response.status_code}",
            hint="check the mirror URL; the archive may have moved",
        )
    return response.content


def get_verified(http: httpx.Client, url: str, sha256: str, size: int, what: str) -> Path:
    """A file of known hash: from the cache, or downloaded, verified, then cached."""
    cached = cache_dir() / "by-sha256" / sha256
    if cached.is_file():
        return cached
    data = get(http, url)
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256 or len(data) != size:
        raise DerivationError(
            f"{what} at {url} does not match its signed hash: expected sha256 {sha256} "
            f"({size} bytes), got {actual} ({len(data)} bytes)",
            hint="the mirror may be mid-update or tampered with; retry later or use another",
        )
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(f".{sha256}.{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, cached)
    return cached

"""A frozen local copy of the parts of Debian's archive that the tests use.

`python -m tests.debian_mirror DIR` (run by `make test-fixtures`, which has the network) copies
each suite's signed InRelease once, the Packages indexes it signs, and every .deb of the test
closure into DIR, laid out like the archive (`debian/dists/…`, `debian/pool/…`). Indexes are
fetched by their signed hash (`by-hash/SHA256/…`, so a mirror mid-update cannot hand over an
index of another day) and every file is checked against the hash it is signed or pinned with.
Files already there (and right) are never fetched again, so reruns are offline and the mirror
stays one consistent snapshot. The tests serve DIR over loopback and point the channel at it.

This copy is not pinned across machines: a fresh machine copies the live archive of its day,
whose bookworm point releases and security updates change the versions the test closure
resolves to (no test asserts a Debian version), and a superseded .deb leaves the live archive.
Pinning it would need snapshot.debian.org, which this project's machines cannot reach.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from cuda_channels.channel import Channel, load
from derivations.apt import RootPins, resolve_root, resolve_toolchain
from derivations.apt.release import parse_release, verify_clearsigned
from derivations.downloads import client, get
from store.hashing import file_sha256

ARCH = "amd64"
PYTHON = "3.11"
SYSTEM_PACKAGES = ("ffmpeg", "libgl1", "jq")  # jq: examples/system-deps
# A header only a system package provides (jq.h), which an sdist's metadata hook looks for
# (tests/derivations/test_lock_system_hooks.py).
HOOK_PACKAGES = ("libjq-dev",)
# Each channel the tests build on, with the Python and system packages they use on it, and
# whether they build sdists there (its toolchain). The channels share the archives' pool, so
# one mirror root serves them all.
TARGETS = (
    ("debian-bookworm", PYTHON, (*SYSTEM_PACKAGES, *HOOK_PACKAGES), True),
    ("debian-trixie", "3.13", (), False),
)


def _fetch_once(url: str, dest: Path, sha256: str | None = None) -> Path:
    """`url` at `dest` unless it is there (with `sha256`, when given)."""
    if dest.is_file() and (sha256 is None or file_sha256(dest) == sha256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with client() as http:
        data = get(http, url)
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise SystemExit(f"error: {url} does not match its signed sha256; retry later")
    tmp = dest.with_suffix(dest.suffix + ".part")
    tmp.write_bytes(data)
    tmp.replace(dest)
    return dest


def mirrored(channel: Channel, base_url: str) -> Channel:
    for archive in channel.archives:
        channel = channel.with_mirror(archive.name, f"{base_url}/{archive.name}")
    return channel


@contextlib.contextmanager
def serve(root: Path) -> Iterator[str]:
    """Serves `root` read-only on 127.0.0.1; yields the base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def prepare(root: Path) -> list[RootPins]:
    return [
        _prepare(root, load(name), python, packages, toolchain)
        for name, python, packages, toolchain in TARGETS
    ]


def _prepare(
    root: Path, channel: Channel, python: str, packages: tuple[str, ...], toolchain: bool
) -> RootPins:
    for archive in channel.archives:
        for suite in archive.suites:
            dists = f"{archive.name}/dists/{suite}"
            release = _fetch_once(
                f"{archive.mirror}/dists/{suite}/InRelease", root / dists / "InRelease"
            )
            text, _ = verify_clearsigned(release.read_bytes(), channel.keyring, str(release))
            files = parse_release(text, f"{archive.mirror}/dists/{suite}", suite).files
            by_hash = "\nAcquire-By-Hash: yes\n" in text
            for component in archive.components:
                index = f"{component}/binary-{ARCH}/Packages.xz"
                if index in files:
                    sha256 = files[index].sha256
                    where = (
                        f"{index.rsplit('/', 1)[0]}/by-hash/SHA256/{sha256}" if by_hash else index
                    )
                    url = f"{archive.mirror}/dists/{suite}/{where}"
                    _fetch_once(url, root / dists / index, sha256)
    with serve(root) as url:
        pins = resolve_root(mirrored(channel, url), ARCH, python, packages)
        tools = resolve_toolchain(mirrored(channel, url), ARCH, python) if toolchain else []
    for pin in (*pins.base, *pins.python, *pins.tools, *pins.system, *tools):
        local = urllib.parse.urlparse(pin.urls[0]).path.lstrip("/")
        archive_name = local.split("/")[0]
        upstream = next(a.mirror for a in channel.archives if a.name == archive_name)
        _fetch_once(f"{upstream}/{local.split('/', 1)[1]}", root / local, pin.sha256)
    return pins


if __name__ == "__main__":
    target = Path(sys.argv[1])
    for (name, *_), found in zip(TARGETS, prepare(target), strict=True):
        more = len(found.python) + len(found.system)
        print(f"debian mirror at {target}: {name}: {len(found.base)} base and {more} more .debs")

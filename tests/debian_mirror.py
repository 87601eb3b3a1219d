"""A frozen local copy of the parts of Debian's archive that the tests use.

`python -m tests.debian_mirror DIR` (run by `make test-fixtures`, which has the network) copies
each suite's signed InRelease once, the Packages indexes it signs, and every .deb of the test
closure into DIR, laid out like the archive (`debian/dists/…`, `debian/pool/…`). Files already
there are never fetched again, so reruns are offline and the mirror stays one consistent
snapshot. The tests serve DIR over loopback and point the channel at it.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from cuda_channels.channel import Channel, load
from derivations.apt import RootPins, resolve_root
from derivations.apt.release import parse_release, verify_clearsigned
from derivations.downloads import client, get

ARCH = "amd64"
PYTHON = "3.11"
SYSTEM_PACKAGES = ("ffmpeg", "libgl1", "jq")  # jq: examples/system-deps


def _fetch_once(url: str, dest: Path) -> Path:
    if not dest.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        with client() as http:
            data = get(http, url)
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


def prepare(root: Path) -> RootPins:
    channel = load()
    for archive in channel.archives:
        for suite in archive.suites:
            dists = f"{archive.name}/dists/{suite}"
            release = _fetch_once(
                f"{archive.mirror}/dists/{suite}/InRelease", root / dists / "InRelease"
            )
            text, _ = verify_clearsigned(release.read_bytes(), channel.keyring, str(release))
            files = parse_release(text, f"{archive.mirror}/dists/{suite}", suite).files
            for component in archive.components:
                index = f"{component}/binary-{ARCH}/Packages.xz"
                if index in files:
                    _fetch_once(f"{archive.mirror}/dists/{suite}/{index}", root / dists / index)
    with serve(root) as url:
        pins = resolve_root(mirrored(channel, url), ARCH, PYTHON, SYSTEM_PACKAGES)
    for pin in (*pins.base, *pins.python, *pins.system):
        local = urllib.parse.urlparse(pin.urls[0]).path.lstrip("/")
        archive = local.split("/")[0]
        upstream = next(a.mirror for a in channel.archives if a.name == archive)
        _fetch_once(f"{upstream}/{local.split('/', 1)[1]}", root / local)
    return pins


if __name__ == "__main__":
    target = Path(sys.argv[1])
    found = prepare(target)
    more = len(found.python) + len(found.system)
    print(f"debian mirror at {target}: {len(found.base)} base and {more} more .debs")

"""Real wheels from PyPI, fetched once into the test cache and used offline afterwards.

`python -m tests.wheel_cache DIR` (run by `make test-fixtures`) resolves the packages the
tests lock (the runtime's own, numpy and pillow) for linux/amd64, Python 3.11, glibc 2.36, with
cog's own resolver, and downloads every wheel that is not in DIR yet, checking its sha256. The
tests then lock with `--no-index --find-links DIR`.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from derivations.downloads import client
from derivations.lock import RUNTIME_REQUIREMENTS
from derivations.pylock import resolve

PACKAGES = [*RUNTIME_REQUIREMENTS, "numpy==2.1.3", "pillow==11.0.0", "tqdm==4.67.1"]


def prepare(target: Path) -> int:
    target.mkdir(parents=True, exist_ok=True)
    pins = resolve(PACKAGES, "3.11", "amd64", "2.36")
    with client() as http:
        for pin in pins:
            path = target / pin.filename
            if path.is_file():
                continue
            data = http.get(pin.url).raise_for_status().content
            if hashlib.sha256(data).hexdigest() != pin.sha256:
                raise SystemExit(f"{pin.url} does not match its sha256")
            tmp = path.with_suffix(".part")
            tmp.write_bytes(data)
            tmp.replace(path)
    return len(pins)


if __name__ == "__main__":
    count = prepare(Path(sys.argv[1]))
    print(f"wheel cache at {sys.argv[1]}: {count} wheels")

"""Real wheels from PyPI, pinned in `tests/fixtures/wheels.json`, fetched once into the test cache.

`python -m tests.wheel_cache DIR` (run by `make test-fixtures`) makes DIR hold exactly the wheels
the pin file names: each is downloaded from its URL and checked against its sha256 (a file
already there with the right hash is kept), and every other wheel in DIR is removed. The tests
lock example projects with `--no-index --find-links DIR` and ranges such as `trio>=0.25`, so a
stray wheel there (left by an older pin file, or copied in by hand) would change what they
resolve; `check(DIR)`, called before a project is locked, fails the test instead. A fresh
machine on any day therefore resolves the same versions from the same bytes.

The pins are data, changed only on purpose: `python -m tests.wheel_cache --update` resolves
PACKAGES (the runtime's requirements, numpy, pillow, tqdm) against today's PyPI with cog's own
resolver, for linux/amd64, Python 3.11, glibc 2.36, and rewrites the pin file. Commit it, then
run `make test-fixtures`.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from derivations.downloads import client
from derivations.lock import (
    BUNDLED_REQUIREMENTS,
    PIP_REQUIREMENTS,
    RUNTIME_REQUIREMENTS,
    SDK_REQUIREMENTS,
)
from derivations.pylock import resolve
from store.hashing import file_sha256

# fire and crcmod publish only sdists (pure Python; a C extension): they and their build
# requirements (setuptools, wheel …) are pinned here too, for tests/builders/test_sdist.py.
PACKAGES = [
    *RUNTIME_REQUIREMENTS,
    *SDK_REQUIREMENTS,
    *BUNDLED_REQUIREMENTS,
    *PIP_REQUIREMENTS,
    "numpy==2.1.3",
    "pillow==11.0.0",
    "tqdm==4.67.1",
    "fire==0.5.0",
    "crcmod==1.7",
    # two small NVIDIA CUDA 12 wheels, sharing the `nvidia` namespace (tests/builders/test_gpu.py)
    "nvidia-cuda-runtime-cu12==12.4.127",
    "nvidia-nvtx-cu12==12.4.127",
]
# Python 3.13 on trixie (tests/derivations/test_python_versions.py): the runtime and the SDK's
# packages.
RUNTIME_TARGETS = (("3.13", "2.41"),)
PIN_FILE = Path(__file__).parent / "fixtures" / "wheels.json"
PLATFORM = {"python": "3.11", "arch": "amd64", "glibc": "2.36"}
UPDATE = "python -m tests.wheel_cache --update"
# What a find-links directory can offer a resolver: anything else in DIR is left alone.
_DISTRIBUTIONS = (".whl", ".tar.gz", ".zip", ".tar.bz2", ".tar.xz", ".tgz", ".egg")


class PinError(Exception):
    """A pinned wheel that cannot be had, or a cache that is not what the pins say."""


@dataclass(frozen=True)
class Pin:
    filename: str
    url: str
    sha256: str
    size: int


def load_pins(pin_file: Path = PIN_FILE) -> list[Pin]:
    data = json.loads(pin_file.read_text())
    if data["requirements"] != PACKAGES or data["platform"] != PLATFORM:
        raise PinError(
            f"{pin_file} pins other requirements than tests/wheel_cache.py asks for; "
            f"run `{UPDATE}` and commit the result"
        )
    return [Pin(w["filename"], w["url"], w["sha256"], int(w["size"])) for w in data["wheels"]]


def update(pin_file: Path = PIN_FILE) -> int:
    """Re-resolves PACKAGES against today's PyPI and rewrites the pin file."""
    found = resolve(PACKAGES, PLATFORM["python"], PLATFORM["arch"], PLATFORM["glibc"])
    for python, glibc in RUNTIME_TARGETS:  # the runtime's compiled wheels for other Pythons
        found += resolve([*RUNTIME_REQUIREMENTS, *SDK_REQUIREMENTS], python, "amd64", glibc)
    files = {w.filename: w for pin in found for w in (pin, *pin.build_requires)}
    wheels = [
        {"filename": w.filename, "url": w.url, "sha256": w.sha256, "size": w.size}
        for w in sorted(files.values(), key=lambda w: w.filename)
    ]
    data = {"requirements": PACKAGES, "platform": PLATFORM, "wheels": wheels}
    pin_file.write_text(json.dumps(data, indent=2) + "\n")
    return len(wheels)


def _strays(target: Path, pins: list[Pin]) -> list[Path]:
    wanted = {p.filename for p in pins}
    return sorted(
        p
        for p in target.iterdir()
        if p.name not in wanted and (p.name.endswith(_DISTRIBUTIONS) or p.name.endswith(".part"))
    )


def prepare(target: Path, pins: list[Pin] | None = None) -> int:
    """Makes `target` hold exactly the pinned wheels; returns how many."""
    pins = load_pins() if pins is None else pins
    target.mkdir(parents=True, exist_ok=True)
    for stray in _strays(target, pins):
        stray.unlink()
    with client() as http:
        for pin in pins:
            path = target / pin.filename
            if path.is_file() and file_sha256(path) == pin.sha256:
                continue
            try:
                response = http.get(pin.url)
            except httpx.HTTPError as e:
                raise PinError(f"cannot download {pin.url}: {e}") from None
            if response.status_code != 200:
                raise PinError(f"cannot download {pin.url}: HTTP {response.status_code}")
            data = response.content
            if hashlib.sha256(data).hexdigest() != pin.sha256 or len(data) != pin.size:
                raise PinError(f"{pin.url} does not match the sha256 and size pinned for it")
            tmp = path.with_name(path.name + ".part")
            tmp.write_bytes(data)
            tmp.replace(path)
    return len(pins)


def check(target: Path) -> None:
    """Fails unless `target` offers exactly the pinned wheels (names only: cheap per test)."""
    pins = load_pins()
    missing = [p.filename for p in pins if not (target / p.filename).is_file()]
    strays = [p.name for p in _strays(target, pins)]
    if missing or strays:
        found = [f"{len(missing)} missing"] + [f"e.g. {m}" for m in missing[:1]]
        found += [f"{len(strays)} not pinned"] + [f"e.g. {s}" for s in strays[:1]]
        raise PinError(
            f"the wheel cache {target} is not what {PIN_FILE.name} pins ({', '.join(found)}); "
            "run `make test-fixtures` to make it match"
        )


def main(argv: list[str]) -> int:
    try:
        if argv == ["--update"]:
            count = update()
            print(f"pinned {count} wheels in {PIN_FILE}; commit it, then `make test-fixtures`")
        elif len(argv) == 1 and not argv[0].startswith("-"):
            count = prepare(Path(argv[0]))
            print(f"wheel cache at {argv[0]}: {count} pinned wheels")
        else:
            print(f"usage: python -m tests.wheel_cache DIR | {UPDATE}", file=sys.stderr)
            return 2
    except PinError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

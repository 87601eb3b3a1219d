"""Python packages for the target platform, resolved by uv and pinned to one wheel each.

`uv pip compile --python-platform --python-version` resolves for the image (linux, the
channel's glibc and architecture, the model's Python), never for the host, and writes a PEP
751 `pylock.toml` that already lists each distribution's wheel URLs, sizes and SHA-256s.
From those wheels we keep the one whose tag the target prefers (packaging's tag order). uv
was chosen over pip's `--report` because pip resolves for the running interpreter, and cross-
platform resolution with pip needs `--only-binary :all:` plus per-tag flags that miss
markers; uv evaluates markers for the target as well.

A previous lock's pins are handed back to uv as preferences, so `cog lock` keeps versions
that still fit unless asked to upgrade (all, or named packages).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

from derivations.downloads import client
from derivations.errors import DerivationError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_MACHINE = {"amd64": "x86_64", "arm64": "aarch64"}


class ResolveError(DerivationError):
    pass


@dataclass(frozen=True)
class Wheel:
    name: str
    version: str
    url: str
    sha256: str
    size: int

    @property
    def filename(self) -> str:
        return urllib.parse.unquote(Path(urllib.parse.urlparse(self.url).path).name)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "url": self.url,
            "sha256": self.sha256,
            "size": self.size,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Wheel:
        return cls(data["name"], data["version"], data["url"], data["sha256"], int(data["size"]))


def uv_platform(arch: str, glibc: str) -> str:
    return f"{_MACHINE[arch]}-manylinux_{glibc.replace('.', '_')}"


def target_tags(python: str, arch: str, glibc: str) -> list[Tag]:
    """The tags the target interpreter accepts, best first (as pip would rank them)."""
    major, minor = (int(p) for p in python.split(".")[:2])
    machine = _MACHINE[arch]
    glibc_major, glibc_minor = (int(p) for p in glibc.split(".")[:2])
    platforms = [f"manylinux_{glibc_major}_{m}_{machine}" for m in range(glibc_minor, 16, -1)]
    platforms += [f"manylinux2014_{machine}"]
    if machine == "x86_64":
        platforms += [f"manylinux2010_{machine}", f"manylinux1_{machine}"]
    platforms += [f"linux_{machine}"]
    version = (major, minor)
    return [
        *cpython_tags(version, platforms=platforms),
        *compatible_tags(version, interpreter=f"cp{major}{minor}", platforms=platforms),
    ]


def best_wheel(name: str, wheels: list[dict[str, Any]], ranks: dict[Tag, int]) -> dict[str, Any]:
    def rank(wheel: dict[str, Any]) -> int:
        filename = urllib.parse.unquote(urllib.parse.urlparse(wheel["url"]).path.rsplit("/", 1)[-1])
        tags = parse_wheel_filename(filename)[3]
        return min((ranks[t] for t in tags if t in ranks), default=len(ranks))

    usable = [w for w in wheels if rank(w) < len(ranks)]
    if not usable:
        raise ResolveError(
            f"{name} has no wheel for the target platform",
            hint="pin a version that publishes a manylinux wheel (sdists are not built)",
        )
    return min(usable, key=lambda w: (rank(w), w["url"]))


def _size(http: httpx.Client, url: str) -> int:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        return os.stat(urllib.parse.unquote(parsed.path)).st_size
    response = http.head(url)
    length = response.headers.get("content-length")
    if response.status_code != 200 or length is None:
        raise ResolveError(f"cannot tell the size of {url} (HTTP {response.status_code})")
    return int(length)


def _preferences(previous: Sequence[Wheel], upgrade: Sequence[str] | bool) -> str:
    """A pylock.toml of the previous pins, which uv reads back as version preferences."""
    if upgrade is True:
        return ""
    skip = {canonicalize_name(n) for n in (upgrade or [])}
    kept = [w for w in previous if canonicalize_name(w.name) not in skip]
    if not kept:
        return ""
    lines = ['lock-version = "1.0"', 'created-by = "uv"', ""]
    for w in kept:
        lines += [
            "[[packages]]",
            f'name = "{w.name}"',
            f'version = "{w.version}"',
            f'wheels = [{{ url = "{w.url}", size = {w.size}, '
            f'hashes = {{ sha256 = "{w.sha256}" }} }}]',
            "",
        ]
    return "\n".join(lines)


def resolve(
    requirements: Sequence[str],
    python: str,
    arch: str,
    glibc: str,
    previous: Sequence[Wheel] = (),
    upgrade: Sequence[str] | bool = False,
) -> list[Wheel]:
    """Pins the closure of `requirements` for the target; sorted by name."""
    if not any(line and not line.startswith("-") for line in requirements):
        return []
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    with tempfile.TemporaryDirectory(prefix="cog-lock-") as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text("\n".join(requirements) + "\n")
        out = Path(tmp) / "pylock.toml"
        preferences = _preferences(previous, upgrade)
        if preferences:
            out.write_text(preferences)
        argv = [uv, "pip", "compile", str(req), "-o", str(out), "--quiet", "--no-header"]
        argv += ["--python-platform", uv_platform(arch, glibc), "--python-version", python]
        argv += ["--only-binary", ":all:"]
        if isinstance(upgrade, bool) and upgrade:
            argv.append("--upgrade")
        for name in upgrade if not isinstance(upgrade, bool) else ():
            argv += ["--upgrade-package", name]
        env = {
            **os.environ,
            "UV_NO_CONFIG": "1",
            "UV_CACHE_DIR": os.environ.get("UV_CACHE_DIR", str(Path(tmp) / "cache")),
        }
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        except OSError as e:
            raise ResolveError(f"cannot run uv to resolve Python packages: {e}") from None
        if proc.returncode != 0:
            detail = " ".join(proc.stderr.split())[-600:]
            raise ResolveError(
                f"the Python requirements cannot be resolved for linux/{arch}, Python "
                f"{python}: {detail}",
                hint="check the package names and versions in your requirements",
            )
        lock = tomllib.loads(out.read_text())
    ranks = {tag: i for i, tag in enumerate(target_tags(python, arch, glibc))}
    pins = []
    with client() as http:
        for package in lock.get("packages", []):
            wheel = best_wheel(package["name"], package.get("wheels", []), ranks)
            size = wheel.get("size") or _size(http, wheel["url"])
            pins.append(
                Wheel(
                    package["name"],
                    package["version"],
                    wheel["url"],
                    wheel["hashes"]["sha256"],
                    size,
                )
            )
    return sorted(pins, key=lambda w: canonicalize_name(w.name))

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

Wheels are preferred: uv first resolves with `--only-binary :all:`, and only when that fails
for want of wheels (not for a name or version no index has) resolves again allowing sdists
(then uv may build an sdist's metadata, so it runs under bubblewrap, over the project's root
with the project's interpreter where the lock gives one: `derivations.buildreqs.HookRoot`). A
package left with no wheel for the target is pinned as its sdist, with its build requirements
resolved for the target and pinned as wheels.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename
from pydantic import ConfigDict, with_config

from derivations import ca_cert
from derivations.buildreqs import (
    HOOK_TIMEOUT,
    HookRoot,
    Hooks,
    backend_requires,
    build_system,
    fetch,
    local_paths,
    needs_sandbox,
    unpack_sdist,
)
from derivations.downloads import client
from derivations.errors import DerivationError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_MACHINE = {"amd64": "x86_64", "arm64": "aarch64"}


class ResolveError(DerivationError):
    pass


class WheelsLacking(ResolveError):
    """The wheels alone do not resolve because a package, or a version asked for, has none
    for the target: its sdist may, once its metadata is built."""


# What uv says when wheels alone fall short ("fire==0.5.0 has no usable wheels", "Building
# source distributions for `x` is disabled"), unlike a name or version no index has: only
# then is the project's root made for sdists' hooks (fetched and unpacked) and uv run again.
_LACKING_WHEELS = re.compile(r"wheel|from source|source distribution", re.IGNORECASE)


@with_config(ConfigDict(extra="forbid"))  # in cog.lock (derivations.lock): no unknown keys
@dataclass(frozen=True)
class Wheel:
    name: str
    version: str
    url: str
    sha256: str
    size: int
    build_requires: tuple[Wheel, ...] = ()  # an sdist's build requirements, as wheels

    @property
    def filename(self) -> str:
        return urllib.parse.unquote(Path(urllib.parse.urlparse(self.url).path).name)

    @property
    def is_sdist(self) -> bool:
        return not self.filename.endswith(".whl")

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "url": self.url,
            "sha256": self.sha256,
            "size": self.size,
        }
        if self.is_sdist:  # only then: locks of wheels keep their bytes
            data["build_requires"] = [w.to_json() for w in self.build_requires]
        return data


# The newest manylinux tag uv's `--python-platform` names; a newer glibc (trixie's 2.41) still
# resolves as 2.40, and the wheel's own tags are ranked against the real glibc afterwards.
_UV_NEWEST_GLIBC = (2, 40)


def uv_platform(arch: str, glibc: str) -> str:
    major, minor = min(tuple(int(p) for p in glibc.split(".")[:2]), _UV_NEWEST_GLIBC)
    return f"{_MACHINE[arch]}-manylinux_{major}_{minor}"


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
        file = f'{{ url = "{w.url}", size = {w.size}, hashes = {{ sha256 = "{w.sha256}" }} }}'
        lines += [
            "[[packages]]",
            f'name = "{w.name}"',
            f'version = "{w.version}"',
            f"sdist = {file}" if w.is_sdist else f"wheels = [{file}]",
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
    sdists: bool = True,
    hooks: Hooks | None = None,
) -> list[Wheel]:
    """Pins the closure of `requirements` for the target; sorted by name. With `sdists`, a
    package that has no wheel for the target is pinned as its sdist (wheels are preferred);
    its code runs (its metadata and build requirements are read) where `hooks` say, made
    only once the wheels alone do not resolve."""
    if not any(line and not line.startswith("-") for line in requirements):
        return []
    with tempfile.TemporaryDirectory(prefix="cog-lock-") as tmp:
        work = Path(tmp)
        root: HookRoot | None = None
        try:
            lock = _compile(requirements, python, arch, glibc, previous, upgrade, work, None)
        except WheelsLacking:
            if not sdists:
                raise
            root = needs_sandbox(hooks, "resolving packages published only as sources")
            lock = _compile(requirements, python, arch, glibc, previous, upgrade, work, root)
        ranks = {tag: i for i, tag in enumerate(target_tags(python, arch, glibc))}
        index_options = [line for line in requirements if line.startswith("-")]
        pins = []
        with client() as http:
            for package in map(_archive_as_file, lock.get("packages", [])):
                name, version = package["name"], package["version"]
                try:
                    wheel = best_wheel(name, package.get("wheels", []), ranks)
                except ResolveError:
                    if not sdists or "sdist" not in package:
                        raise
                    sdist = package["sdist"]
                    pin = Wheel(
                        name,
                        version,
                        sdist["url"],
                        sdist["hashes"]["sha256"],
                        sdist.get("size") or _size(http, sdist["url"]),
                    )
                    root = root or needs_sandbox(hooks, f"reading what {name} needs to build")
                    needs = _build_requires(pin, index_options, python, arch, glibc, work, root)
                    pins.append(replace(pin, build_requires=tuple(needs)))
                    continue
                size = wheel.get("size") or _size(http, wheel["url"])
                pins.append(Wheel(name, version, wheel["url"], wheel["hashes"]["sha256"], size))
    return sorted(pins, key=lambda w: canonicalize_name(w.name))


def _archive_as_file(package: dict[str, Any]) -> dict[str, Any]:
    """A package the requirements name as a file (`./wheels/x.whl`, a direct URL), which uv's
    lock lists as its `archive`, in the shape of an index's wheel or sdist."""
    archive = package.get("archive")
    if not archive or package.get("wheels") or package.get("sdist"):
        return package
    url = archive.get("url") or Path(archive["path"]).resolve().as_uri()
    entry = {"url": url, "hashes": archive["hashes"], "size": archive.get("size")}
    kind = "wheels" if urllib.parse.urlparse(url).path.endswith(".whl") else "sdist"
    return {**package, kind: [entry] if kind == "wheels" else entry}


_TOOL_VARS = ("UV_", "SSL_CERT_", "LANG", "LC_")
_PROXIES = {
    p for name in ("http", "https", "no", "all") for p in (f"{name}_proxy", f"{name.upper()}_PROXY")
}


def _compile(
    requirements: Sequence[str],
    python: str,
    arch: str,
    glibc: str,
    previous: Sequence[Wheel],
    upgrade: Sequence[str] | bool,
    tmp: Path,
    root: HookRoot | None,
) -> dict[str, Any]:
    """uv's PEP 751 lock of `requirements`, of wheels only without `root`. Allowing sdists
    lets uv build their metadata (their setup.py runs), so then uv runs in `root`, with the
    network for the index only, building with the root's interpreter."""
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    req = tmp / "requirements.txt"
    req.write_text("\n".join(requirements) + "\n")
    out = tmp / "pylock.toml"
    out.unlink(missing_ok=True)
    preferences = _preferences(previous, upgrade)
    if preferences:
        out.write_text(preferences)
    argv = [uv, "pip", "compile", str(req), "-o", str(out), "--quiet", "--no-header"]
    argv += ["--python-platform", uv_platform(arch, glibc), "--python-version", python]
    # pip's rule, which Cog's builds follow: every index offers every version. uv's default
    # takes a package only from the first index that has it, and PyTorch's index carries old
    # numpy, pillow, jinja2…, so `--extra-index-url …/whl/cu121` would pin those or fail.
    argv += ["--index-strategy", "unsafe-best-match"]
    if root is None:
        argv += ["--only-binary", ":all:"]
    elif root.python is not None:  # the project's interpreter builds the metadata
        argv += ["--python", root.python]
    if isinstance(upgrade, bool) and upgrade:
        argv.append("--upgrade")
    for name in upgrade if not isinstance(upgrade, bool) else ():
        argv += ["--upgrade-package", name]
    cache = Path(os.environ.get("UV_CACHE_DIR", str(tmp / "cache")))
    # uv's own settings, TLS trust, proxies and the locale: never the rest of cog's
    # environment (tokens, keys), which a package's setup.py would otherwise read.
    env = {k: v for k, v in os.environ.items() if k.startswith(_TOOL_VARS) or k in _PROXIES}
    env |= {"UV_NO_CONFIG": "1", "UV_CACHE_DIR": str(cache), "PATH": os.environ.get("PATH", "")}
    extra = ca_cert.from_environment()
    if extra is not None:  # uv reads one bundle: the host's trust and COG_CA_CERT's
        env["SSL_CERT_FILE"] = str(ca_cert.host_bundle(extra, tmp))
    try:
        if root is None:  # wheels alone: no package's code runs
            proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        else:
            cache.mkdir(parents=True, exist_ok=True)
            readable = local_paths(requirements)
            proc = root.sandbox(argv, env, [tmp, cache], True, readable=readable).run(
                env, HOOK_TIMEOUT
            )
    except OSError as e:
        raise ResolveError(f"cannot run uv to resolve Python packages: {e}") from None
    except subprocess.TimeoutExpired:
        raise ResolveError(
            "the Python requirements could not be resolved: building the metadata of a "
            f"package published only as a source distribution took over {HOOK_TIMEOUT // 60} "
            "minutes",
            hint="pin versions that publish wheels, or find which package hangs with "
            "`uv pip compile` on the requirements",
        ) from None
    if proc.returncode != 0:
        if "Failed to build" in proc.stderr:
            hint = (
                "a package published only as a source distribution is built to read its "
                "metadata, over the project's root (its system_packages, after apt as under "
                "Cog), and that build failed: add the system packages it needs to "
                "build.system_packages, or pin a version that publishes a wheel for "
                f"linux/{arch} and Python {python}"
            )
        else:
            hint = "check the package names and versions in your requirements"
        lacking = root is None and _LACKING_WHEELS.search(proc.stderr) is not None
        raise (WheelsLacking if lacking else ResolveError)(
            f"the Python requirements cannot be resolved for linux/{arch}, Python "
            f"{python}: {_one_line(proc.stderr)}",
            hint=hint,
        )
    return tomllib.loads(out.read_text())


_RAISED = re.compile(r"^\s*((?:[\w.]+\.)?[A-Z]\w*(?:Error|Exception): .{1,200})$", re.MULTILINE)


def _one_line(error: str, limit: int = 600) -> str:
    """uv's error on one line. When it is long, its start (what failed) and its end (uv's
    hints) are kept, cut between words, with the last exception a build raised between
    them (`ModuleNotFoundError: No module named 'pkg_resources'`)."""
    words = error.split()
    text = " ".join(words[1:] if words[:1] == ["error:"] else words)
    if len(text) <= limit:
        return text
    head = text[: limit // 2].rsplit(" ", 1)[0]
    tail = text[-(limit // 2) :].split(" ", 1)[-1]
    raised = [" ".join(r.split()) for r in _RAISED.findall(error)]
    if raised and raised[-1] not in head and raised[-1] not in tail:
        return f"{head} … {raised[-1]} … {tail}"
    return f"{head} … {tail}"


def _build_requires(
    sdist: Wheel,
    index_options: list[str],
    python: str,
    arch: str,
    glibc: str,
    tmp: Path,
    root: HookRoot,
) -> list[Wheel]:
    """The sdist's build requirements, pinned as wheels for the target: `[build-system]
    requires`, then whatever the backend's get_requires_for_build_wheel adds (run in `root`)."""
    work = tmp / f"sdist-{canonicalize_name(sdist.name)}"
    work.mkdir()
    archive = fetch(sdist.url, sdist.sha256, work / sdist.filename)
    src = unpack_sdist(archive, work / "src")
    system = build_system(src)

    def pinned(requires: Sequence[str]) -> list[Wheel]:
        try:
            return resolve([*index_options, *requires], python, arch, glibc, sdists=False)
        except ResolveError as e:
            raise ResolveError(
                f"the build requirements of {sdist.name} {sdist.version} "
                f"({', '.join(requires)}) cannot be had as wheels: {e}",
                hint="build requirements are installed from wheels; sdists are not built for them",
            ) from None

    found = pinned(system.requires)
    files = [fetch(w.url, w.sha256, work / w.filename) for w in found]
    more = backend_requires(sdist.name, src, system, files, root)
    return pinned([*system.requires, *more]) if more else found

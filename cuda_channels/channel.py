"""Channels: versioned data that pins where a build's userland comes from.

A channel names its Debian archives (a mirror, and a snapshot URL pattern that keeps old
packages reachable), the keyring that signs them, the base package set of a minimal Python
userland, the tools every Cog image carries (apt, curl, git …), and an interpreter source per
Python version. Its revision is a hash of its data, so a lock that records the revision
notices any edit.

Channels are JSON files: the built-in ones ship in `cuda_channels/data/`; directories listed in
`COG_CHANNEL_PATH` (colon-separated) are searched first, so a team can pin its own.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from store.errors import CogError
from store.hashing import canonical_json

BUILTIN_DIR = Path(__file__).parent / "data"
DEFAULT_CHANNEL = "debian-bookworm"


class ChannelError(CogError):
    """A channel that cannot be found, read or used for the target."""


@dataclass(frozen=True)
class Archive:
    name: str
    mirror: str  # base URL of a live mirror (has `dists/` and `pool/`)
    snapshot: str  # base URL pattern with `{timestamp}` (YYYYMMDDTHHMMSSZ)
    suites: tuple[str, ...]
    components: tuple[str, ...]


@dataclass(frozen=True)
class PythonSource:
    source: str  # "debian" or "python-build-standalone"
    version: str
    packages: tuple[str, ...] = ()  # debian: the interpreter's packages
    platforms: dict[str, dict[str, str]] = field(default_factory=dict)  # arch -> url, sha256


@dataclass(frozen=True)
class StandaloneMirrors:
    """Where python-build-standalone archives are fetched: a pinned `url` starts with `release`
    (GitHub's release assets); each mirror serves the same files under the rest of that URL."""

    release: str = ""
    mirrors: tuple[str, ...] = ()

    def urls(self, url: str) -> list[str]:
        """The places to fetch `url` from, in order: the user's mirrors
        (`COG_PYTHON_INSTALL_MIRROR`, space-separated, `file://` works), the URL itself, then
        the channel's mirrors. The sha256 is pinned, so a mirror can only serve the right bytes."""
        if not self.release or not url.startswith(self.release):
            return [url]
        rest = url.removeprefix(self.release)
        user = os.environ.get("COG_PYTHON_INSTALL_MIRROR", "").split()
        return [
            *(f"{m.rstrip('/')}/{rest}" for m in user),
            url,
            *(f"{m.rstrip('/')}/{rest}" for m in self.mirrors),
        ]


@dataclass(frozen=True)
class Channel:
    name: str
    description: str
    architectures: tuple[str, ...]
    glibc: str  # the userland's glibc: wheels for the target are chosen by it
    keyring: str
    archives: tuple[Archive, ...]
    base_packages: tuple[str, ...]
    python: dict[str, PythonSource]
    revision: str  # sha256 of the channel's canonical JSON
    standalone: StandaloneMirrors = StandaloneMirrors()
    # Compilers for sdists (gcc, libc6-dev …): a build-only layer, never in an image.
    toolchain_packages: tuple[str, ...] = ()
    # What Cog's images hold beyond a minimal userland (apt, curl, wget, git …): a root layer
    # of every image, above the interpreter, so `run:` steps and models find them.
    tool_packages: tuple[str, ...] = ()

    def python_source(self, version: str) -> PythonSource:
        try:
            return self.python[version]
        except KeyError:
            known = ", ".join(sorted(self.python))
            raise ChannelError(
                f"channel {self.name} has no Python {version}",
                hint=f"choose one of: {known}",
            ) from None

    def check_arch(self, arch: str) -> None:
        if arch not in self.architectures:
            raise ChannelError(
                f"channel {self.name} does not support architecture {arch}",
                hint=f"choose one of: {', '.join(self.architectures)}",
            )

    def with_mirror(self, archive: str, url: str) -> Channel:
        """The same channel fetching `archive` from `url` (a local mirror, a cache)."""
        archives = tuple(replace(a, mirror=url) if a.name == archive else a for a in self.archives)
        return replace(self, archives=archives)


def _search_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("COG_CHANNEL_PATH", "").split(":") if p]
    return [*extra, BUILTIN_DIR]


def _channel_files(d: Path) -> list[Path]:
    """The OS channels in `d`; `cuda-*.json` beside them is CUDA data (cuda_channels.cuda)."""
    return sorted(p for p in d.glob("*.json") if not p.name.startswith("cuda-"))


def available() -> list[str]:
    names = {p.stem for d in _search_dirs() if d.is_dir() for p in _channel_files(d)}
    return sorted(names)


def load(name: str = DEFAULT_CHANNEL) -> Channel:
    for d in _search_dirs():
        path = d / f"{name}.json"
        if path.is_file():
            return parse(json.loads(path.read_text()), str(path))
    raise ChannelError(
        f"there is no channel named {name!r}",
        hint=f"known channels: {', '.join(available())}",
    )


def default_for(python_version: str) -> str:
    """The channel a project without a lock starts on: the default one when its Debian ships
    that Python, else the first built-in channel whose Debian does (trixie for 3.13), else the
    default one (with a python-build-standalone interpreter)."""
    names = [DEFAULT_CHANNEL, *(p.stem for p in _channel_files(BUILTIN_DIR))]
    for name in names:
        source = load(name).python.get(python_version)
        if source is not None and source.source == "debian":
            return name
    return DEFAULT_CHANNEL


def parse(data: dict[str, Any], where: str) -> Channel:
    try:
        archives = tuple(
            Archive(
                name=a["name"],
                mirror=a["mirror"].rstrip("/"),
                snapshot=a["snapshot"].rstrip("/"),
                suites=tuple(a["suites"]),
                components=tuple(a["components"]),
            )
            for a in data["archives"]
        )
        python = {
            version: PythonSource(
                source=p["source"],
                version=p["version"],
                packages=tuple(p.get("packages", ())),
                platforms={k: dict(v) for k, v in p.get("platforms", {}).items()},
            )
            for version, p in data["python"].items()
        }
        channel = Channel(
            name=data["name"],
            description=data.get("description", ""),
            architectures=tuple(data["architectures"]),
            glibc=str(data["glibc"]),
            keyring=data["keyring"],
            archives=archives,
            base_packages=tuple(data["base_packages"]),
            python=python,
            revision=hashlib.sha256(canonical_json(data).encode()).hexdigest(),
            standalone=StandaloneMirrors(
                release=data.get("python_standalone", {}).get("release", ""),
                mirrors=tuple(data.get("python_standalone", {}).get("mirrors", ())),
            ),
            toolchain_packages=tuple(data.get("toolchain_packages", ())),
            tool_packages=tuple(data.get("tool_packages", ())),
        )
    except (KeyError, TypeError, AttributeError) as e:
        raise ChannelError(f"channel file {where} is malformed (missing or bad {e})") from None
    for version, p in python.items():
        if p.source not in ("debian", "python-build-standalone"):
            raise ChannelError(f"channel file {where}: Python {version} has unknown source")
    return channel

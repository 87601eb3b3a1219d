"""Resolving a closure of Debian packages, deterministically, from a channel's signed indexes.

Pre-Depends and Depends are followed with their alternatives, version constraints and
Provides; `:any`/`:native` qualifiers are read as the one target architecture (plus `all`).
Choices never depend on the host: a group already satisfied by a chosen package adds
nothing; otherwise the first alternative that can be satisfied wins, a real package before a
virtual one, the highest version first, and among several providers the one of highest
Debian priority (required, important, …), then first by name.
Conflicts and Breaks are not consulted: the choices above never pick two packages that
replace one another, and nothing is configured by dpkg.
"""

from __future__ import annotations

import difflib
import re
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cmp_to_key
from typing import NoReturn

from debian.deb822 import PkgRelation
from debian.debian_support import version_compare

from cuda_channels.channel import Channel
from derivations.apt.index import Candidate, fetch_packages
from derivations.apt.release import fetch_release
from derivations.downloads import client
from derivations.errors import DerivationError

_OPS = {
    "<<": lambda c: c < 0,
    "<=": lambda c: c <= 0,
    "=": lambda c: c == 0,
    ">=": lambda c: c >= 0,
    ">>": lambda c: c > 0,
}

# Names of NVIDIA's CUDA apt repository (cudnn9-cuda-12, libcudnn8, libnccl2, cuda-toolkit-12-4,
# libnvinfer8 …): Cog's GPU base images have it, Debian's archive does not.
_NVIDIA_REPOSITORY = re.compile(
    r"^(lib)?(cudnn|cuda-|cublas|cufft|curand|cusolver|cusparse|nccl|nvinfer|nvjpeg|tensorrt)"
)


_PRIORITY_RANK = {"required": 0, "important": 1, "standard": 2, "optional": 3, "extra": 4}


class UnknownPackage(DerivationError):
    pass


class Unsatisfiable(DerivationError):
    pass


@dataclass(frozen=True)
class Need:
    """One alternative of a dependency: a name and an optional (operator, version)."""

    name: str
    constraint: tuple[str, str] | None

    def __str__(self) -> str:
        return f"{self.name} ({' '.join(self.constraint)})" if self.constraint else self.name

    def accepts(self, version: str | None) -> bool:
        if self.constraint is None:
            return True
        if version is None:  # an unversioned Provides never satisfies a versioned need
            return False
        op, wanted = self.constraint
        return bool(_OPS[op](version_compare(version, wanted)))


def relations(text: str) -> list[list[Need]]:
    groups = PkgRelation.parse_relations(text) if text else []
    return [[Need(alt["name"], alt["version"]) for alt in group] for group in groups]


def _provides(candidate: Candidate) -> list[tuple[str, str | None]]:
    out = []
    for group in relations(candidate.provides):
        for need in group:
            out.append((need.name, need.constraint[1] if need.constraint else None))
    return out


class Universe:
    """Every candidate package of a channel's archives for one architecture."""

    def __init__(self, candidates: Iterable[Candidate], label: str) -> None:
        self.label = label
        self.by_name: dict[str, list[Candidate]] = {}
        for c in candidates:  # archive order is kept among equal versions
            self.by_name.setdefault(c.name, []).append(c)

        def newer(a: Candidate, b: Candidate) -> int:
            return int(version_compare(b.version, a.version))

        newest_first = cmp_to_key(newer)
        self.providers: dict[str, list[tuple[Candidate, str | None]]] = {}
        for name in sorted(self.by_name):
            self.by_name[name].sort(key=newest_first)
            for c in self.by_name[name]:
                if c.provides:
                    for virtual, version in _provides(c):
                        self.providers.setdefault(virtual, []).append((c, version))
        for offers in self.providers.values():  # Debian's own preference, then by name
            offers.sort(key=lambda o: (_PRIORITY_RANK.get(o[0].priority, 9), o[0].name))

    def candidates(self, need: Need) -> list[Candidate]:
        """Who could satisfy `need`: real packages newest first, then providers by name."""
        real = [c for c in self.by_name.get(need.name, []) if need.accepts(c.version)]
        virtual = [c for c, v in self.providers.get(need.name, []) if need.accepts(v)]
        return real + [c for c in virtual if c.name != need.name]

    def find(self, name: str, version: str) -> Candidate | None:
        return next((c for c in self.by_name.get(name, []) if c.version == version), None)

    def close_matches(self, name: str) -> list[str]:
        return difflib.get_close_matches(name, self.by_name.keys(), n=3, cutoff=0.7)


def load_universe(channel: Channel, arch: str) -> Universe:
    """Downloads (or takes from the cache) and verifies every index of the channel."""
    channel.check_arch(arch)
    found: list[Candidate] = []
    with client() as http:
        for archive in channel.archives:
            for suite in archive.suites:
                release = fetch_release(http, archive.mirror, suite, channel.keyring)
                for component in archive.components:
                    found += fetch_packages(http, release, archive, component, arch)
    return Universe(found, f"channel {channel.name} ({arch})")


def _parse_request(item: str) -> Need:
    name, eq, version = item.partition("=")
    name = name.strip()
    if not name:
        raise UnknownPackage(f"{item!r} is not a package name")
    return Need(name, ("=", version.strip()) if eq else None)


class Resolver:
    def __init__(self, universe: Universe) -> None:
        self.universe = universe

    def resolve(
        self, requested: Sequence[str], installed: Sequence[Candidate] = ()
    ) -> list[Candidate]:
        """The packages to add on top of `installed` so every request and dependency holds.

        Requests are names, optionally `name=version`. The result is sorted by name.
        """
        chosen: dict[str, Candidate] = {c.name: c for c in installed}
        provided: dict[str, list[str | None]] = {}
        for c in installed:
            self._note_provides(c, provided)
        parent: dict[str, str] = {}
        added: list[Candidate] = []
        queue: deque[Candidate] = deque()

        def take(c: Candidate, why: str | None) -> None:
            chosen[c.name] = c
            self._note_provides(c, provided)
            if why is not None:
                parent[c.name] = why
            added.append(c)
            queue.append(c)

        for item in sorted(set(requested)):
            need = _parse_request(item)
            if self._satisfied(need, chosen, provided):
                continue
            options = self.universe.candidates(need)
            if not options:
                self._fail_request(need)
            take(options[0], None)

        while queue:
            pkg = queue.popleft()
            for group in relations(pkg.pre_depends) + relations(pkg.depends):
                if any(self._satisfied(n, chosen, provided) for n in group):
                    continue
                pick = next((o[0] for n in group if (o := self.universe.candidates(n))), None)
                if pick is None or pick.name in chosen:  # nothing, or a second version
                    self._fail_dependency(pkg, group, parent, chosen)
                take(pick, pkg.name)
        return sorted(added, key=lambda c: c.name)

    @staticmethod
    def _note_provides(c: Candidate, provided: dict[str, list[str | None]]) -> None:
        for virtual, version in _provides(c) if c.provides else ():
            provided.setdefault(virtual, []).append(version)

    @staticmethod
    def _satisfied(
        need: Need, chosen: dict[str, Candidate], provided: dict[str, list[str | None]]
    ) -> bool:
        have = chosen.get(need.name)
        if have is not None and need.accepts(have.version):
            return True
        return any(need.accepts(v) for v in provided.get(need.name, ()))

    def _fail_request(self, need: Need) -> NoReturn:
        if need.name in self.universe.by_name or need.name in self.universe.providers:
            versions = ", ".join(c.version for c in self.universe.by_name.get(need.name, []))
            raise UnknownPackage(
                f"{self.universe.label} has no {need}; it has version(s) {versions or 'none'}",
                hint="ask for one of those versions, or drop the version",
            )
        close = self.universe.close_matches(need.name)
        if _NVIDIA_REPOSITORY.match(need.name):
            hint = (
                "packages of NVIDIA's CUDA apt repository (which Cog's nvidia/cuda base images "
                "carry) are not in the channel: with gpu: true, CUDA and cuDNN come from "
                "NVIDIA's wheels, pinned in cog.lock (docs/gpus.md); drop it from "
                "system_packages, or name the wheel (nvidia-cudnn-cu12 …) in python_packages"
            )
        else:
            hint = f"did you mean {', '.join(close)}?" if close else "check the spelling"
        raise UnknownPackage(
            f"there is no package named {need.name!r} in {self.universe.label}", hint=hint
        )

    def _fail_dependency(
        self,
        pkg: Candidate,
        group: list[Need],
        parent: dict[str, str],
        chosen: dict[str, Candidate],
    ) -> NoReturn:
        chain = [pkg.name]
        while chain[-1] in parent:
            chain.append(parent[chain[-1]])
        path = " -> ".join(reversed(chain))
        wanted = " | ".join(str(n) for n in group)
        found = []
        for n in group:
            versions = [c.version for c in self.universe.by_name.get(n.name, [])]
            if n.name in chosen:
                found.append(f"{n.name} {chosen[n.name].version} is already chosen")
            elif versions:
                found.append(f"the archive has {n.name} {', '.join(versions)}")
            else:
                found.append(f"nothing provides {n.name}")
        raise Unsatisfiable(
            f"cannot satisfy {wanted}, needed by {path}: {'; '.join(found)}",
            hint="pin a different version of the package you asked for, or change channel",
        )

"""Debian packages for root layers: signed indexes, a deterministic resolver, lockable pins."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cuda_channels.channel import Channel
from derivations.apt.index import Candidate
from derivations.apt.pins import DebPin
from derivations.apt.release import SignatureError
from derivations.apt.resolve import Resolver, Universe, UnknownPackage, Unsatisfiable, load_universe


@dataclass(frozen=True)
class RootPins:
    """The two root layers' packages: the channel's base set, and what the model adds on top."""

    base: tuple[DebPin, ...]
    system: tuple[DebPin, ...]


def root_packages(
    channel: Channel, python_version: str, system_packages: Sequence[str]
) -> list[str]:
    """What the system layer asks the resolver for: the model's packages and Debian's Python."""
    source = channel.python_source(python_version)
    extra = list(source.packages) if source.source == "debian" else []
    return sorted(set(system_packages) | set(extra))


def resolve_root(
    channel: Channel, arch: str, packages: Sequence[str], universe: Universe | None = None
) -> RootPins:
    """Resolves the base set, then `packages` (system packages, Debian's Python) on top of it."""
    universe = universe or load_universe(channel, arch)
    resolver = Resolver(universe)
    base: list[Candidate] = resolver.resolve(channel.base_packages)
    system = resolver.resolve(packages, installed=base)
    return RootPins(tuple(map(DebPin.of, base)), tuple(map(DebPin.of, system)))


__all__ = [
    "Candidate",
    "DebPin",
    "Resolver",
    "RootPins",
    "SignatureError",
    "Universe",
    "UnknownPackage",
    "Unsatisfiable",
    "load_universe",
    "resolve_root",
    "root_packages",
]

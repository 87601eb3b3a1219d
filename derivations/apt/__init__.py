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
    """The root layers' packages: the channel's base set; Debian's Python (none for a
    standalone interpreter); the model's system packages; and, between the interpreter and
    the system packages, the tools Cog's images carry (apt, curl, git …; none in a lock
    written before the channel named them). Each resolves on top of the ones before it, so a
    system package never changes the base, the interpreter or the tools."""

    base: tuple[DebPin, ...]
    python: tuple[DebPin, ...]
    system: tuple[DebPin, ...]
    tools: tuple[DebPin, ...] = ()


def python_packages(channel: Channel, python_version: str | None) -> list[str]:
    if python_version is None:
        return []
    source = channel.python_source(python_version)
    return list(source.packages) if source.source == "debian" else []


def resolve_root(
    channel: Channel,
    arch: str,
    python_version: str | None,
    system_packages: Sequence[str],
    universe: Universe | None = None,
) -> RootPins:
    universe = universe or load_universe(channel, arch)
    resolver = Resolver(universe)
    base: list[Candidate] = resolver.resolve(channel.base_packages)
    python = resolver.resolve(python_packages(channel, python_version), installed=base)
    tools = resolver.resolve(channel.tool_packages, installed=base + python)
    system = resolver.resolve(system_packages, installed=base + python + tools)
    base_pins, python_pins, tool_pins, system_pins = (
        tuple(map(DebPin.of, group)) for group in (base, python, tools, system)
    )
    return RootPins(base_pins, python_pins, system_pins, tool_pins)


def resolve_toolchain(
    channel: Channel, arch: str, python_version: str, universe: Universe | None = None
) -> tuple[DebPin, ...]:
    """The compilers sdists are built with (the channel's `toolchain_packages`, plus Debian's
    `pythonX.Y-dev` headers for Debian's Python; a standalone one has its own), resolved on
    top of the base and Python layers: never the host's compiler."""
    universe = universe or load_universe(channel, arch)
    resolver = Resolver(universe)
    base = resolver.resolve(channel.base_packages)
    python = resolver.resolve(python_packages(channel, python_version), installed=base)
    headers = [f"python{python_version}-dev"] if python else []
    found = resolver.resolve([*channel.toolchain_packages, *headers], installed=base + python)
    return tuple(map(DebPin.of, found))


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
    "python_packages",
    "resolve_root",
    "resolve_toolchain",
]

"""The derivations of a model's userland: its root layers and, where needed, an interpreter.

The root layers, lowest first: the channel's base set; Debian's Python (empty for a
python-build-standalone interpreter, a fixed-output fetch unpacked into its own store path,
`/cog/store/<hash>-python-3.X.Y`, relocatable, run on the base layer); the tools Cog's images
carry (apt with its sources, curl, wget, git …); the model's system packages.

The tools sit above the interpreter, so the view where bytecode is compiled (base and
Python) and every wheel built over it are the same with or without them; the tools layer
writes dpkg's records of the base and Python packages too (builders.rootfs), so apt in a
`run:` step sees an installed system.
"""

from __future__ import annotations

import posixpath
import urllib.parse
from dataclasses import dataclass

from builders import apt_config
from builders.fetch import fetch_derivation
from builders.rootfs import root_layer_derivation
from builders.rootview import view_derivation
from builders.unpack import unpack_derivation
from cuda_channels.channel import Channel, ChannelError
from derivations.apt import RootPins
from derivations.hashing import output_path
from derivations.model import Derivation


@dataclass(frozen=True)
class Userland:
    base: Derivation  # the channel's base set, at /
    python_layer: Derivation  # Debian's Python on the base (empty for a standalone one)
    system: Derivation  # the model's system packages, on all the others
    python: Derivation | None  # a standalone interpreter's store path; None for Debian's
    python_root: Derivation  # base + python layer merged: where bytecode is compiled
    interpreter: str  # the python binary's path inside the image
    tools: Derivation | None = None  # Cog's tools (None for a lock that pins none)

    @property
    def root_layers(self) -> tuple[Derivation, ...]:
        return (self.base, self.python_layer, *self.tool_layers, self.system)

    @property
    def tool_layers(self) -> tuple[Derivation, ...]:
        return (self.tools,) if self.tools is not None else ()


def standalone_python(channel: Channel, python_version: str, arch: str) -> Derivation:
    source = channel.python_source(python_version)
    platform = source.platforms.get(arch)
    if source.source != "python-build-standalone" or platform is None:
        raise ChannelError(
            f"channel {channel.name} has no standalone Python {python_version} for {arch}"
        )
    url = platform["url"]
    tarball = fetch_derivation(
        posixpath.basename(urllib.parse.unquote(urllib.parse.urlparse(url).path)),
        channel.standalone.urls(url),
        platform["sha256"],
        hint="set COG_PYTHON_INSTALL_MIRROR to a mirror of python-build-standalone's releases "
        f"(file:// works), or use a Python that {channel.name}'s Debian ships",
    )
    return unpack_derivation(f"python-{source.version}", tarball.dep(), subdir="python")


def userland(channel: Channel, arch: str, python_version: str, pins: RootPins) -> Userland:
    channel.check_arch(arch)
    base = root_layer_derivation("rootfs-base", pins.base, arch)
    python_layer = root_layer_derivation("rootfs-python", pins.python, arch, [base])
    tools = (
        root_layer_derivation(
            "rootfs-tools",
            pins.tools,
            arch,
            [base, python_layer],
            apt_config.sources(channel),
            dpkg_database=True,
            listed=[*pins.base, *pins.python],
        )
        if pins.tools
        else None
    )
    below = [base, python_layer, *((tools,) if tools is not None else ())]
    system = root_layer_derivation(
        "rootfs-system", pins.system, arch, below, dpkg_database=tools is not None
    )
    source = channel.python_source(python_version)
    if source.source == "python-build-standalone":
        python: Derivation | None = standalone_python(channel, python_version, arch)
        interpreter = f"{output_path(python)}/bin/python3"  # type: ignore[arg-type]
    else:
        python, interpreter = None, f"/usr/bin/python{python_version}"
    root = view_derivation("python-root", [base, python_layer])
    return Userland(base, python_layer, system, python, root, interpreter, tools)

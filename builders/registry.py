"""Which builder builds each kind of derivation.

A builder's module is imported the first time a derivation of its kind is built, so planning a
build, `cog store …` and `--help` never load the machinery (docker's ignore rules, the image
writer, the sandbox) of kinds they do not build. The kind and version stay on the builder class,
beside the functions that make derivations of that kind, so one module says what a kind is.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from builders.base import Builder

# kind -> "module:class"; tests/test_layers.py checks each names a builder of that kind.
KNOWN: dict[str, str] = {
    "fetch": "builders.fetch:FetchBuilder",
    "unpack": "builders.unpack:UnpackBuilder",
    "command": "builders.command:CommandBuilder",
    "rootfs": "builders.rootfs:RootfsBuilder",
    "ca-cert": "builders.ca_cert:CaCertBuilder",
    "wheel": "builders.wheel:WheelBuilder",
    "pyenv": "builders.pyenv:EnvBuilder",
    "python-binary": "builders.pyenv:BinaryBuilder",
    "pywheel": "builders.sdk:PyWheelBuilder",
    "sdist": "builders.sdist:SdistBuilder",
    "rootview": "builders.rootview:ViewBuilder",
    "oci-image": "builders.image:ImageBuilder",
    "oci-layer": "builders.image:LayerBuilder",
    "image-rootfs": "builders.image_rootfs:ImageRootfsBuilder",
    "oci-blob": "builders.oci_pull:OciBlobBuilder",
    "oci-layout": "builders.oci_pull:OciLayoutBuilder",
    # With no secrets: `run_step.with_secrets` gives the build's.
    "run-step": "builders.run_step:RunStepBuilder",
}


class Builders(Mapping[str, Builder]):
    """The known builders, each made when first asked for, with `overrides` (a builder holding
    a build's secrets, a test's builder) taking precedence."""

    def __init__(self, overrides: Mapping[str, Builder] | None = None) -> None:
        self._made: dict[str, Builder] = dict(overrides or {})

    def __getitem__(self, kind: str) -> Builder:
        if kind not in self._made:
            if kind not in KNOWN:
                raise KeyError(kind)
            module, name = KNOWN[kind].split(":")
            builder: Builder = getattr(importlib.import_module(module), name)()
            self._made[kind] = builder
        return self._made[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*KNOWN, *self._made]))

    def __len__(self) -> int:
        return len(set(KNOWN) | set(self._made))

    def __or__(self, overrides: Mapping[str, Builder]) -> Builders:
        return Builders({**self._made, **overrides})

"""A resolved .deb as a lock records it: enough to fetch and verify it without any index."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import ConfigDict, with_config

from derivations.apt.index import Candidate

_UNSAFE = re.compile(r"[^A-Za-z0-9+._?=-]")


@with_config(ConfigDict(extra="forbid"))  # in cog.lock (derivations.lock): no unknown keys
@dataclass(frozen=True)
class DebPin:
    name: str
    version: str
    arch: str
    sha256: str
    size: int
    urls: tuple[str, ...]

    @classmethod
    def of(cls, c: Candidate) -> DebPin:
        return cls(c.name, c.version, c.arch, c.sha256, c.size, c.urls)

    @property
    def file_name(self) -> str:
        """`name_version_arch.deb`, with characters a store name cannot hold (`:`, `~`) as `_`."""
        return _UNSAFE.sub("_", f"{self.name}_{self.version}_{self.arch}.deb")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "arch": self.arch,
            "sha256": self.sha256,
            "size": self.size,
            "urls": list(self.urls),
        }

"""What a build is asked to do, as the services take it: typed values, not parsed flags (the
command line makes these from its flags; a test or another tool makes them directly)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from builders.image import MAX_LAYERS


@dataclass(frozen=True)
class CacheOptions:
    """Binary caches: `read_write` are asked and filled, `read_only` only asked (URLs such
    as oci://HOST/REPO or file://DIR); what is published is signed with `signing_key`
    (default: $COG_SIGNING_KEY); paths signed by `trusted_keys` (and $COG_TRUSTED_KEYS) are
    accepted."""

    read_write: tuple[str, ...] = ()
    read_only: tuple[str, ...] = ()
    signing_key: Path | None = None
    trusted_keys: tuple[Path, ...] = ()

    @property
    def any(self) -> bool:
        return bool(self.read_write or self.read_only)


@dataclass(frozen=True)
class BuildOptions:
    """How to lock (`locked`: refuse a missing or stale cog.lock; `frozen`: use it as it
    is), for which platform, with which `--secret id=NAME,src=FILE` specs (relative sources
    read from `cwd`), how many builds at once, how to lay out and compress the image's
    layers, and the caches."""

    arch: str = "amd64"
    locked: bool = False
    frozen: bool = False
    jobs: int | None = None
    secrets: tuple[str, ...] = ()
    cwd: Path = field(default_factory=Path.cwd)
    max_layers: int = MAX_LAYERS
    compression: str = "gzip"
    caches: CacheOptions = CacheOptions()

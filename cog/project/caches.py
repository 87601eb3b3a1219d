"""`--cache`, `--cache-from`, `--signing-key`, `--trusted-key`: binary caches for build and push.

Caches are asked, first given first, before anything is built; what was built goes to the
`--cache` ones (read-write) afterwards, signed with the signing key. A cache that cannot be
reached is left out with one line, and the build goes on without it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cog.project.options import CacheOptions
from store.cache import BlobFinder, FileCache, OciCache, Substituter, open_cache, publish
from store.errors import StoreError
from store.local import Store
from store.paths import StorePath
from store.signing import SigningKey, TrustedKeys


def _say(line: str) -> None:
    print(line, file=sys.stderr)


@dataclass
class Caches:
    substituter: Substituter | None
    writable: list[OciCache | FileCache]
    key: SigningKey | None
    every: list[OciCache | FileCache]  # the read-write ones, then the read-only ones

    @classmethod
    def open(cls, options: CacheOptions) -> Caches:
        """The caches `options` name (checked now: a bad URL or key fails before any build)."""
        read_write = [open_cache(u) for u in options.read_write]
        read_only = [open_cache(u) for u in options.read_only]
        key_file = options.signing_key or os.environ.get("COG_SIGNING_KEY")
        key = SigningKey.load(Path(key_file)) if key_file else None
        trusted = list(options.trusted_keys)
        trusted += [Path(p) for p in os.environ.get("COG_TRUSTED_KEYS", "").split(":") if p]
        keys = TrustedKeys.load(trusted)
        everything = [*read_write, *read_only]
        substituter = Substituter(everything, keys, say=_say) if everything else None
        if read_write and key is None:
            _say(
                "no signing key (--signing-key or COG_SIGNING_KEY): what goes to the cache is "
                "unsigned, and other machines use only its content-addressed paths"
            )
        return cls(substituter, read_write, key, everything)

    def publish(
        self,
        store: Store,
        paths: Iterable[StorePath],
        jobs: int = 4,
        find_blob: BlobFinder = lambda _: None,
    ) -> None:
        """Copies the closure of `paths` to every --cache (what it was found to hold is not
        asked again); a cache that fails is one line."""
        wanted = list(paths)
        for cache in self.writable:
            held = self.substituter.held_by(cache) if self.substituter else set()
            try:
                result = publish(
                    store, cache, wanted, self.key, jobs=jobs, find_blob=find_blob, present=held
                )
            except (StoreError, OSError) as e:
                _say(f"cache {cache.url}: nothing more was published ({e})")
                continue
            _say(
                f"cache {cache.url}: {len(result.uploaded)} paths published, "
                f"{len(result.present)} already there"
            )

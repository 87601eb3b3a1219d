"""Paths that stay in a cache: their infos, to plan an image of them, and an image layout read
from a cache, to push an image whose layers the registry mounts from the cache."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from store.archive import hash_tree
from store.cache.entry import CacheError, unpack
from store.cache.substituter import Substituter
from store.db import PathInfo
from store.local import Store
from store.oci import Layout
from store.paths import StorePath, closure_order


class PathInfos:
    """Path infos from the local store, then from the caches' entries: enough to plan an image
    of paths that stay in a cache."""

    def __init__(self, store: Store, substituter: Substituter | None) -> None:
        self.store, self.substituter = store, substituter

    def info(self, path: StorePath) -> PathInfo:
        if self.store.is_valid(path) or self.substituter is None:
            return self.store.info(path)
        info = self.substituter.info(path)
        if info is None:
            return self.store.info(path)  # raises PathNotValid, as the store does
        return info

    def closure(self, paths: Iterable[StorePath]) -> list[StorePath]:
        """Every path reachable through references, each after everything it refers to."""
        starts = list(paths)
        if self.substituter is not None:
            self.substituter.closure(starts, self.store)  # looks the remote ones up, in batches
        return closure_order(starts, lambda p: self.info(p).references)


def cached_layout(substituter: Substituter, path: StorePath, where: Path) -> Layout:
    """The image layout `path` holds, read from its cache into `where` (not into the store:
    its layers stay in the cache), checked against its entry. Its layer blobs are not here:
    a push mounts them from the cache's repository."""
    cache, entry = substituter.found[path]
    blob = where / "blob"
    cache.download(entry, blob)
    substituter.downloaded += blob.stat().st_size
    tree = unpack(entry, blob, where / "tree")
    digest = hash_tree(tree, path.layer_prefix)
    if (digest.nar_hash, digest.tar_sha256) != (entry.info.nar_hash, entry.info.tar_sha256):
        raise CacheError(f"{cache.url}'s blob for {path} does not match its entry")
    return Layout.open(tree)

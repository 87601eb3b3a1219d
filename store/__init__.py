"""The content-addressed store: paths, canonical archives, metadata, locks, roots, gc, verify."""

from store.db import PathInfo
from store.errors import ArchiveError, PathNotValid, StoreError
from store.local import Store
from store.paths import STORE_DIR, StorePath

__all__ = [
    "STORE_DIR",
    "ArchiveError",
    "PathInfo",
    "PathNotValid",
    "Store",
    "StoreError",
    "StorePath",
]

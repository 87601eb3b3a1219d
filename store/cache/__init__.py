"""Binary caches: other places that hold store paths, so a path built once is never built again.

A cache holds, per store path, an *entry* (the path info, signed, and the descriptor of one
blob) and that blob. This package is the caches' public face; each job has its module:

- `entry`: the entry format, its checks before any use, and the tree its blob unpacks to;
- `protocol`: what every backend does (`Cache`), and `open_cache` for a cache URL;
- `oci`: the `oci://HOST/REPO` backend (one artifact per path, the entry in its manifest);
- `file`: the `file://DIR` backend (`DIR/<hash>.json` and `DIR/blobs/sha256/<hex>`);
- `trust`: whether an entry may be believed (a trusted signature, or its content address);
- `substituter`: paths found in caches and installed, checked, into the local store;
- `publish`: entries made and signed for local paths, and their closure copied to a cache;
- `in_cache`: paths that stay in a cache, for planning and pushing an image of them.

Nothing from a cache is trusted before it is checked, and what is published must come from the
bytes its path registered.
"""

from store.cache.entry import CacheError, Entry, unpack
from store.cache.file import FileCache
from store.cache.in_cache import PathInfos, cached_layout
from store.cache.oci import ARTIFACT_TYPE, ENTRY_ANNOTATION, OciCache
from store.cache.protocol import Cache, open_cache
from store.cache.publish import LAYER_OUTPUT, BlobFinder, Published, entry_for, publish
from store.cache.substituter import Substituter
from store.cache.trust import trust_problem

__all__ = [
    "ARTIFACT_TYPE",
    "ENTRY_ANNOTATION",
    "LAYER_OUTPUT",
    "BlobFinder",
    "Cache",
    "CacheError",
    "Entry",
    "FileCache",
    "OciCache",
    "PathInfos",
    "Published",
    "Substituter",
    "cached_layout",
    "entry_for",
    "open_cache",
    "publish",
    "trust_problem",
    "unpack",
]

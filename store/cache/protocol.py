"""What every cache backend does, and the backend a cache URL names."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from store.cache.entry import CacheError, Entry
from store.cache.file import FileCache
from store.cache.oci import OciCache
from store.paths import StorePath
from store.reference import Reference


class Cache(Protocol):
    url: str

    def lookup(self, path: StorePath) -> Entry | None:
        """The cache's entry for `path` (unchecked), or None."""
        ...

    def download(self, entry: Entry, target: Path) -> None:
        """Writes the entry's blob to `target`, checked against its digest and size."""
        ...

    def upload(self, entry: Entry, blob: Path) -> None:
        """Stores the blob (unless there) and then the entry."""
        ...


def open_cache(url: str) -> OciCache | FileCache:
    """A cache from its URL: oci://HOST/REPO or file://DIR."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme == "oci" and rest:
        ref = Reference.parse(rest)
        if ref.tag or ref.digest:
            raise CacheError(
                f"the cache {url} names a tag or digest", hint="give oci://HOST/REPOSITORY"
            )
        return OciCache(url, ref)
    if sep and scheme == "file" and rest:
        root = Path(rest).absolute()
        return FileCache(f"file://{root}", root)
    raise CacheError(
        f"{url!r} is not a cache URL", hint="give oci://HOST/REPOSITORY or file://DIRECTORY"
    )

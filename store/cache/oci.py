"""A cache in an OCI registry repository (`oci://HOST/REPO`).

Each store path is an OCI artifact tagged by its hash part, whose one layer is the entry's blob
and whose manifest annotation is the entry: a lookup is one manifest GET, never a tag listing.
An image pushed to the same repository mounts its layers from the cache's blobs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from store.cache.entry import CacheError, Entry
from store.hashing import canonical_json
from store.oci import MANIFEST, BlobReader, Part, digest_of
from store.paths import StorePath
from store.push import upload_with_retries
from store.reference import Reference
from store.registry import Registry

ENTRY_ANNOTATION = "run.cog.store.entry"
ARTIFACT_TYPE = "application/vnd.cog.store-path.v1"
EMPTY_CONFIG = b"{}"
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"


class _OneBlob:
    """One blob, a file or bytes, as a push reads blobs (store.oci.BlobSource)."""

    def __init__(self, digest: str, source: Path | bytes) -> None:
        self.digest = digest
        self.part: Part = source if isinstance(source, bytes) else (source, source.stat().st_size)

    def blob_size(self, digest: str) -> int:
        return len(self.part) if isinstance(self.part, bytes) else self.part[1]

    def open_blob(self, digest: str, start: int = 0, end: int | None = None) -> BlobReader:
        size = self.blob_size(digest)
        whole = start == 0 and (end is None or end >= size)
        where = "memory" if isinstance(self.part, bytes) else str(self.part[0])
        return BlobReader([self.part], start, end, (digest, where) if whole else None)

    def verify_blob(self, digest: str) -> None:
        reader = self.open_blob(digest)
        try:
            while reader.read(1 << 20):
                pass
        finally:
            reader.close()


class OciCache:
    """A cache in an OCI registry repository."""

    def __init__(self, url: str, ref: Reference) -> None:
        self.url, self.ref = url, ref
        self.registry = Registry.shared(ref.host, ref.insecure)
        self.has_empty_config = False

    @property
    def repository(self) -> str:
        return self.ref.repository

    def lookup(self, path: StorePath) -> Entry | None:
        data = self.registry.find_manifest(self.repository, path.hash)
        if data is None:
            return None
        try:
            manifest = json.loads(data)
            entry = Entry.from_json(
                json.loads(manifest["annotations"][ENTRY_ANNOTATION]), path, self.url
            )
            [layer] = manifest["layers"]
        except (ValueError, KeyError, TypeError):
            raise CacheError(f"{self.url} holds no readable entry for {path}") from None
        # The manifest's layer is what a standard client reads: it must be the entry's blob in
        # every field the signature covers, its media type too.
        described = tuple(layer.get(k) for k in ("digest", "size", "mediaType"))
        if described != tuple(entry.blob[k] for k in ("digest", "size", "mediaType")):
            raise CacheError(f"{self.url}'s entry for {path} names another blob than it holds")
        return entry

    def download(self, entry: Entry, target: Path) -> None:
        self.registry.fetch_blob(
            self.repository, entry.blob["digest"], int(entry.blob["size"]), target
        )

    def has_blob(self, digest: str) -> bool:
        return self.registry.blob_exists(self.repository, digest)

    def _put_blob(self, digest: str, source: Path | bytes) -> None:
        if not self.registry.blob_exists(self.repository, digest):
            chunk = int(os.environ.get("COG_PUSH_CHUNK_SIZE", str(64 << 20)))
            blobs = _OneBlob(digest, source)
            upload_with_retries(self.registry, self.repository, digest, blobs, chunk)

    def upload(self, entry: Entry, blob: Path) -> None:
        self._put_blob(entry.blob["digest"], blob)
        empty = digest_of(EMPTY_CONFIG)
        if not self.has_empty_config:  # one check per run, not one per path
            self._put_blob(empty, EMPTY_CONFIG)
            self.has_empty_config = True
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "artifactType": ARTIFACT_TYPE,
            "config": {"mediaType": EMPTY_MEDIA_TYPE, "digest": empty, "size": len(EMPTY_CONFIG)},
            "layers": [entry.blob],
            "annotations": {
                ENTRY_ANNOTATION: canonical_json(entry.to_json()),
                "org.opencontainers.image.title": entry.path.name,
            },
        }
        data = canonical_json(manifest).encode()
        self.registry.put_manifest(self.repository, entry.path.hash, data, MANIFEST)

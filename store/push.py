"""Pushing an image: every blob (present, mounted from another repository, or uploaded), then
the manifest's exact bytes."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from store.errors import RegistryError
from store.oci import BlobSource, Layout
from store.reference import Reference
from store.registry import Registry, backoff

CHECKS = 16  # blob checks (HEAD, mount) in flight at once; uploads are `jobs` at most


@dataclass
class PushResult:
    digest: str  # the manifest's, with its size and media type: the image's descriptor
    size: int
    media_type: str
    uploaded: list[str] = field(default_factory=list)
    mounted: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0


class KnownBlobs:
    """Which repository of a registry holds which blob, as far as this machine has seen:
    a hint that lets a push mount a blob instead of uploading it again."""

    def __init__(self, directory: Path, host: str) -> None:
        self.file = directory / f"{host.replace(':', '_').replace('/', '_')}.json"
        try:
            self.where: dict[str, str] = json.loads(self.file.read_text())
        except (OSError, ValueError):
            self.where = {}
        self.lock = threading.Lock()

    def note(self, digest: str, repository: str) -> None:
        with self.lock:
            self.where[digest] = repository

    def save(self) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        partial = self.file.with_suffix(".partial")
        partial.write_text(json.dumps(self.where, sort_keys=True))
        partial.replace(self.file)


def push(
    layout: Layout,
    ref: Reference,
    known: KnownBlobs,
    jobs: int = 4,
    say: Callable[[str], None] = lambda _: None,
    registry: Registry | None = None,
    mount_from: str | None = None,
) -> PushResult:
    """Pushes the layout's image as `ref`; every blob first (`jobs` uploads at once), then the
    manifest's exact bytes.
    A blob the target lacks is mounted from where this machine saw it, else from
    `mount_from` (a binary cache's repository on the same registry), else uploaded."""
    registry = registry or Registry(ref.host, ref.insecure)
    chunk = int(os.environ.get("COG_PUSH_CHUNK_SIZE", str(64 << 20)))
    result = PushResult(
        layout.manifest_digest, len(layout.manifest_bytes), layout.manifest_media_type
    )
    lock = threading.Lock()
    uploads = threading.BoundedSemaphore(max(1, jobs))

    def send(descriptor: dict[str, Any]) -> None:
        digest, size = descriptor["digest"], int(descriptor["size"])
        if registry.blob_exists(ref.repository, digest):
            outcome = "present"
        else:
            # (a cache holds layers, never an image's config)
            cached = mount_from if digest != layout.manifest["config"]["digest"] else None
            sources = [known.where.get(digest), cached]
            if any(
                source
                and source != ref.repository
                and registry.mount(ref.repository, digest, source)
                for source in dict.fromkeys(sources)
            ):
                outcome = "mounted"
            else:
                with uploads:
                    upload_with_retries(registry, ref.repository, digest, layout, chunk)
                outcome = "uploaded"
        known.note(digest, ref.repository)
        with lock:
            getattr(result, outcome).append(digest)
            if outcome == "uploaded":
                result.bytes_uploaded += size
            # Under the lock: a print from two threads at once can interleave its line ends.
            say(f"{outcome:>8} {digest[:19]} {size / 2**20:9.1f} MiB")

    # The checks are small requests, so more of them are in flight than uploads: an edit's push
    # is ~50 HEADs and one or two uploads.
    with ThreadPoolExecutor(max_workers=max(CHECKS, jobs)) as pool:
        for future in [pool.submit(send, d) for d in layout.descriptors()]:
            future.result()
    known.save()
    registry.put_manifest(
        ref.repository, ref.tag or "latest", layout.manifest_bytes, layout.manifest_media_type
    )
    return result


def upload_with_retries(
    registry: Registry, repository: str, digest: str, layout: BlobSource, chunk: int
) -> None:
    for attempt in range(registry.attempts):
        try:
            registry.upload(repository, digest, layout, chunk)
            return
        except RegistryError:
            if attempt + 1 == registry.attempts:
                raise
            backoff(attempt)
            if registry.blob_exists(repository, digest):  # the failed answer's request landed
                return

"""Weight files in the store: each file one fixed-output store path, found by its SHA-256.

A weight file's path is `StorePath.make("fixed:out", "sha256:<hex>", "weight")` with the content
address `fixed:sha256:<hex>`, as a fixed-output derivation's output is named: the path follows
from the digest alone, so "is this file here?" is one lookup, `cog store verify` checks the
bytes against the name, and the same bytes are stored once whatever their names in any weight.

A file is added in one pass over its bytes: they are written into a temp dir of the store while
SHA-256 (the file's digest, checked against the one expected) and BLAKE3 of its nar form (what
the store registers) are computed, on two threads; the store's `install` then renames and
registers it under the path's lock. A crash leaves a temp dir whose owner is gone, which the next
cog command removes, or an unregistered path, which the next add replaces and gc removes: never
a valid partial file.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import IO

from store.archive import NAR_PREFIX, ArchiveDigest, Entry, layer_preamble, padding, tar_header
from store.archive import trailer as tar_trailer
from store.errors import HashMismatch, StoreError
from store.failpoints import failpoint
from store.hashing import Blake3Sink
from store.local import Store
from store.paths import StorePath

NAME = "weight"
CHUNK = 1 << 20
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def weight_path(digest: str) -> StorePath:
    """The store path of the file whose bytes have `digest` (`sha256:<hex>`)."""
    if not _DIGEST.match(digest):
        raise StoreError(f"{digest!r} is not a sha256 digest", hint="check weights.lock")
    return StorePath.make("fixed:out", digest, NAME)


def stored(store: Store, digest: str) -> Path | None:
    """Where the file of `digest` is on disk, if the store holds it."""
    path = weight_path(digest)
    return store.real_path(path) if store.is_valid(path) else None


def add_stream(store: Store, source: IO[bytes], size: int, expect: str | None = None) -> StorePath:
    """Stores `size` bytes of `source` as a weight file and returns its path. With `expect`,
    bytes that are not that digest are refused and nothing is kept."""
    with store.writing(), store.temp_dir("weight-") as tmp:
        out = tmp / "out"
        nar = Blake3Sink()
        sha256 = hashlib.sha256()
        nar.write(tar_header(Entry("", "file", "", size), NAR_PREFIX))
        written = 0
        try:
            with open(out, "wb") as f:
                while written < size:
                    data = source.read(min(CHUNK, size - written))
                    if not data:
                        break
                    f.write(data)
                    sha256.update(data)
                    nar.write(data)
                    written += len(data)
                    failpoint("weight:partial")
            nar.write(padding(size))
            nar.write(tar_trailer(nar.size))
        finally:
            nar.close()
        digest = f"sha256:{sha256.hexdigest()}"
        if written != size or (expect is not None and digest != expect):
            raise HashMismatch(
                f"a weight file has the wrong content ({digest}, {written} bytes) where "
                f"{expect or 'another digest'} of {size} bytes was expected",
                hint="run the command again; if it persists, import the weights again",
            )
        path = weight_path(digest)
        if store.is_valid(path):  # already there: links to it (running models) stay as they are
            return path
        # The layer form's size, which the store records for every path: its headers and the
        # bytes (its SHA-256 is left for the pass that first needs one, as `install` does).
        header = tar_header(Entry("", "file", "", size), path.layer_prefix)
        layer = len(layer_preamble()) + len(header) + size + len(padding(size))
        digests = ArchiveDigest(
            nar_hash=nar.hexdigest(),
            nar_size=nar.size,
            tar_sha256="",
            tar_size=layer + len(tar_trailer(layer)),
            references=frozenset(),
        )
        with store.output_lock(path):
            if not store.is_valid(path):
                store.install(out, path, ca=f"fixed:{digest}", nar=digests)
        return path


def add_file(store: Store, file: Path, size: int, expect: str | None = None) -> StorePath:
    """Stores the file at `file` (which must still have `size` bytes, and `expect`'s digest)."""
    with open(file, "rb") as source:
        return add_stream(store, source, size, expect)

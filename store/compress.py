"""Deterministic layer compression: the same tree always gives the same blob bytes.

gzip: no file name, mtime 0, one level, this zlib; zstd: one thread, one level, no checksum,
this libzstd. An image's layer for one store path and that path's blob in a binary cache are
made here, so they are the same bytes and a registry stores them once.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import zstandard

GZIP_LEVEL = 6
ZSTD_LEVEL = 9
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
# The compressors are part of the bytes, so their versions and levels are part of every
# builder version that writes blobs.
COMPRESSORS = (
    f"zlib{zlib.ZLIB_VERSION}-gzip{GZIP_LEVEL}"
    f"-zstd{'.'.join(map(str, zstandard.ZSTD_VERSION))}-{ZSTD_LEVEL}"
)


class CompressedBlob:
    """Writes one compressed blob to `target` while hashing it, and the data before
    compression too (the diff_id)."""

    def __init__(self, target: Path, compression: str) -> None:
        self.target = target
        self.tmp = target.with_name(f".incoming-{os.getpid()}-{target.name}")
        self.file: BinaryIO = open(self.tmp, "wb")  # noqa: SIM115 (closed in finish)
        self.digest = hashlib.sha256()
        self.diff = hashlib.sha256()
        self.size = 0
        self.compressor: Any
        if compression == "gzip":
            self.compressor = gzip.GzipFile(
                filename="", mode="wb", fileobj=self, compresslevel=GZIP_LEVEL, mtime=0
            )
        else:  # zstd, on one thread: the frame layout is then fixed
            zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=0, write_checksum=False)
            self.compressor = zstd.stream_writer(self, closefd=False)  # type: ignore[arg-type]

    def write(self, data: bytes) -> int:  # the sink of the compressor
        self.file.write(data)
        self.digest.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def feed(self, chunk: bytes) -> None:
        self.diff.update(chunk)
        self.compressor.write(chunk)

    def finish(self) -> tuple[str, int, str]:
        """(digest, size, diff_id) of the finished blob, now at `target`."""
        self.compressor.close()
        self.file.close()
        os.replace(self.tmp, self.target)
        return f"sha256:{self.digest.hexdigest()}", self.size, f"sha256:{self.diff.hexdigest()}"

    def abort(self) -> None:
        self.file.close()
        self.tmp.unlink(missing_ok=True)

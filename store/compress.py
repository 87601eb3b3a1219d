"""Deterministic layer compression: the same tree always gives the same blob bytes, on any
number of cores.

gzip is made as pigz makes it: the data is cut into 1 MiB blocks, each deflated on its own
(on every core at once), primed with the previous block's last 32 KiB and ended by a sync
flush, so the blocks join into one valid deflate stream. The cut depends only on the data,
so the bytes never depend on the thread count; they do depend on this zlib and the level.
zstd uses libzstd's multi-threaded mode, whose output is the same for any number of worker
threads (but not the single-threaded mode's). An image's layer for one store path and that
path's blob in a binary cache are made here, so they are the same bytes and a registry
stores them once.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import zlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

import zstandard

from store.hashing import HashingWriter

# Level 4: on torch's and cuDNN's libraries, 1.5x level 6's speed for 0.6 % more bytes
# (bench/README.md); compressing ~7 GB is most of a cold GPU build.
GZIP_LEVEL = 4
ZSTD_LEVEL = 9
# libzstd's multi-threaded mode already keeps every core busy on one blob, and each context
# holds tens of MiB of job buffers: more blobs at once only add memory.
ZSTD_AT_ONCE = threading.BoundedSemaphore(1)
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
# The compressors are part of the bytes, so their versions and levels are part of every
# builder version that writes blobs.
BLOCK = 1 << 20  # part of the bytes: never derived from the machine
WINDOW = 32 << 10  # deflate's window: what a block may refer back to
COMPRESSORS = (
    f"zlib{zlib.ZLIB_VERSION}-pgzip{GZIP_LEVEL}b{BLOCK}"
    f"-zstd{'.'.join(map(str, zstandard.ZSTD_VERSION))}-{ZSTD_LEVEL}mt"
)
# The header GzipFile writes with no name and mtime 0: magic, deflate, no flags, mtime,
# no extra flags (levels 2 to 8), unknown OS.
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _shared_pool() -> ThreadPoolExecutor:
    """One pool for every blob of the process, so concurrent layers share the cores."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="gz")
        return _pool


def _deflate(block: bytes, primer: bytes, last: bool) -> bytes:
    if primer:
        c = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, primer)
    else:
        c = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -15)
    return c.compress(block) + c.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


class ParallelGzip:
    """A gzip stream written to `sink`, its blocks deflated in `pool` (default: one shared
    pool with a thread per core); the same bytes for any pool size."""

    def __init__(self, sink: Callable[[bytes], Any], pool: ThreadPoolExecutor | None = None):
        self.sink = sink
        self.pool = pool or _shared_pool()
        self.ahead = 2 * (os.cpu_count() or 1)  # blocks in flight: bounded memory
        self.buffer = bytearray()
        self.pending: deque[Future[bytes]] = deque()
        self.primer = b""
        self.crc = 0
        self.size = 0
        sink(GZIP_HEADER)

    def write(self, data: bytes) -> int:
        self.crc = zlib.crc32(data, self.crc)
        self.size += len(data)
        self.buffer += data
        while len(self.buffer) > BLOCK:  # (the last block is never empty unless all is)
            block = bytes(self.buffer[:BLOCK])
            del self.buffer[:BLOCK]
            self._submit(block, last=False)
        return len(data)

    def _submit(self, block: bytes, last: bool) -> None:
        self.pending.append(self.pool.submit(_deflate, block, self.primer, last))
        self.primer = block[-WINDOW:]
        while len(self.pending) > self.ahead:
            self.sink(self.pending.popleft().result())

    def close(self) -> None:
        self._submit(bytes(self.buffer), last=True)
        self.buffer.clear()
        while self.pending:
            self.sink(self.pending.popleft().result())
        self.sink(struct.pack("<II", self.crc & 0xFFFFFFFF, self.size & 0xFFFFFFFF))


def zstd_writer(sink: Any, threads: int | None = None) -> Any:
    """A zstd stream to `sink` in libzstd's multi-threaded mode (default: a thread per core),
    whose frames are the same for any number of threads."""
    zstd = zstandard.ZstdCompressor(
        level=ZSTD_LEVEL, threads=threads or os.cpu_count() or 1, write_checksum=False
    )
    return zstd.stream_writer(sink, closefd=False)


class CompressedBlob:
    """Writes one compressed blob to `target` while hashing it, and the data before
    compression too (the diff_id). Used as a context manager: leaving it unfinished aborts
    it. zstd blobs are written one at a time (ZSTD_AT_ONCE)."""

    def __init__(self, target: Path, compression: str) -> None:
        self.target = target
        self.tmp = target.with_name(f".incoming-{os.getpid()}-{target.name}")
        self.slot: threading.BoundedSemaphore | None = None  # held while a zstd blob is open
        self.file: BinaryIO = open(self.tmp, "wb")  # noqa: SIM115 (closed in finish)
        try:  # a failure here still closes the file and gives the zstd turn back
            self.out = HashingWriter(self.file)  # the sink of the compressor
            self.diff = hashlib.sha256()
            self.compressor: Any
            if compression == "gzip":
                self.compressor = ParallelGzip(self.out.write)
            else:
                self.slot = ZSTD_AT_ONCE
                self.slot.acquire()
                self.compressor = zstd_writer(self.out)
        except BaseException:
            self.abort()
            raise

    def __enter__(self) -> CompressedBlob:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.file.closed:
            self.abort()

    def _release(self) -> None:
        # The compressor goes first: a zstd context keeps its ~100 MiB of job buffers until it
        # is freed, and the next blob must not allocate its own before then.
        self.compressor = None
        if self.slot is not None:
            self.slot.release()
            self.slot = None

    def feed(self, chunk: bytes) -> None:
        self.diff.update(chunk)
        self.compressor.write(chunk)

    def finish(self) -> tuple[str, int, str]:
        """(digest, size, diff_id) of the finished blob, now at `target`."""
        try:
            self.compressor.close()
        finally:
            self._release()
        self.file.close()
        os.replace(self.tmp, self.target)
        return self.out.digest, self.out.size, f"sha256:{self.diff.hexdigest()}"

    def abort(self) -> None:
        self._release()
        self.file.close()
        self.tmp.unlink(missing_ok=True)

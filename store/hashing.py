"""Hash sinks that run in their own threads, so BLAKE3 and SHA-256 of one stream overlap.

Both `blake3` and `hashlib` release the GIL on large buffers, so feeding each hasher from its
own thread lets one read pass hash two byte streams at once. Pieces are batched (by reference,
never copied: the bytes are immutable and both sinks of a stream share them) until a batch holds
BATCH bytes, so a tree of small files crosses the thread boundary once per MiB, not once per
header; memory stays bounded by the queue depth. A caller whose other work already runs in
another process hashes on its own thread instead (`on_thread=False`).
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import queue
import threading
from collections.abc import Callable, Iterable
from typing import IO, Any

import blake3

from store.paths import ALPHABET, HASH_LEN

BATCH = 1 << 20
_QUEUE_DEPTH = 8

# What a sink is fed: bytes, or a read-only map of a file only this process writes (a large
# file's copy being added, hashed without reading it into memory).
Piece = bytes | mmap.mmap


def canonical_json(value: Any) -> str:
    """The one text of a JSON value that is hashed or signed: sorted keys, no spaces, UTF-8
    (the same value always gives the same bytes, on every machine)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class HashingWriter:
    """Writes to `out` while hashing what passes (SHA-256) and counting it: a download, a copy
    or a compressed blob is checked in the same pass that stores it."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.out.write(data)
        self.hash.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self.out.flush()

    @property
    def digest(self) -> str:
        """`sha256:<hex>`, as OCI names blobs."""
        return f"sha256:{self.hash.hexdigest()}"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The hex SHA-256 of a file's bytes, read in bounded chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(BATCH):
            digest.update(chunk)
    return digest.hexdigest()


class HashSink:
    """Accepts bytes on the caller's thread and feeds them to `consume`: on a worker thread,
    or with `on_thread` false on the caller's own (for a caller whose other work is already
    in another process, where a thread would only contend with it for the GIL)."""

    def __init__(self, consume: Callable[[Piece], None], on_thread: bool = True) -> None:
        self._consume = consume
        self._queue: queue.Queue[list[Piece] | None] = queue.Queue(_QUEUE_DEPTH)
        self._batch: list[Piece] = []
        self._batched = 0
        self.size = 0
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if on_thread:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            if self._error is None:
                try:
                    for piece in batch:
                        self._consume(piece)
                except BaseException as e:  # re-raised on the caller's thread by close()
                    self._error = e

    def write(self, data: Piece) -> None:
        """Queues `data`, which must not change afterwards (bytes, not a reused buffer)."""
        self.size += len(data)
        if self._thread is None:
            self._consume(data)
            return
        self._batch.append(data)
        self._batched += len(data)
        if self._batched >= BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._batch:
            self._queue.put(self._batch)
            self._batch = []
            self._batched = 0

    def close(self) -> None:
        if self._thread is None:
            return
        self._flush()
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


# Bytes of the store alphabet map to "a", all others to NUL: a run of HASH_LEN "a"s marks where
# a hash part could be, found with C-speed translate() and find() rather than a regex that must
# try every offset (the difference is ~20x on a 500 MB root layer).
_MARK = bytes(0x61 if chr(b) in ALPHABET else 0 for b in range(256))
_RUN = b"a" * HASH_LEN
_LONG_RUN = 4096


class ReferenceScanner:
    """Finds which of a set of store hash parts occur in a byte stream (as Nix scans outputs)."""

    _OVERLAP = HASH_LEN - 1

    def __init__(self, hash_parts: Iterable[str]) -> None:
        self._remaining = {h.encode() for h in hash_parts}
        self.found: set[str] = set()
        self._tail = b""

    def _hit(self, h: bytes) -> None:
        self._remaining.discard(h)
        self.found.add(h.decode())

    def feed(self, data: bytes) -> None:
        if not self._remaining:
            return
        if len(self._remaining) <= 16:  # a handful of needles: one fast search each
            # A match either lies inside `data` or starts in the tail: searching the two apart
            # finds the same hits as searching their concatenation, without copying `data`.
            seam = self._tail + data[: self._OVERLAP]
            for h in [h for h in self._remaining if h in seam or h in data]:
                self._hit(h)
            self._tail = (seam if len(data) < self._OVERLAP else data)[-self._OVERLAP :]
            return
        window = self._tail + data
        self._tail = window[-self._OVERLAP :]
        marked = window.translate(_MARK)
        start = marked.find(_RUN)
        while start != -1 and self._remaining:
            end = marked.find(0, start)
            end = len(marked) if end == -1 else end
            run = window[start:end]
            if len(run) > _LONG_RUN:  # e.g. a file of letters: search per needle instead
                for h in [h for h in self._remaining if h in run]:
                    self._hit(h)
            else:
                for i in range(len(run) - HASH_LEN + 1):
                    if run[i : i + HASH_LEN] in self._remaining:
                        self._hit(run[i : i + HASH_LEN])
            start = marked.find(_RUN, end)


class Blake3Sink(HashSink):
    def __init__(self, scanner: ReferenceScanner | None = None, on_thread: bool = True) -> None:
        self._hasher = blake3.blake3()
        self._scanner = scanner
        super().__init__(self._update, on_thread)

    def _update(self, data: Piece) -> None:
        self._hasher.update(data)
        if self._scanner is not None:  # (`in` on a map looks for one byte, not a string)
            self._scanner.feed(data if isinstance(data, bytes) else bytes(data))

    def hexdigest(self) -> str:
        return self._hasher.hexdigest()


class Sha256Sink(HashSink):
    def __init__(self, on_thread: bool = True) -> None:
        self._hasher = hashlib.sha256()
        super().__init__(self._hasher.update, on_thread)

    def hexdigest(self) -> str:
        return self._hasher.hexdigest()

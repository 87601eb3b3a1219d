"""Hash sinks that run in their own threads, so BLAKE3 and SHA-256 of one stream overlap.

Both `blake3` and `hashlib` release the GIL on large buffers, so feeding each hasher from its
own thread lets one read pass hash two byte streams at once. Small pieces (tar headers, tiny
files) are batched before they cross a thread boundary; memory stays bounded by the queue depth.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Iterable

import blake3

from store.paths import hash_part_pattern

BATCH = 1 << 20
_QUEUE_DEPTH = 8


class ThreadedSink:
    """Accepts bytes on the caller's thread and feeds them to `consume` on a worker thread."""

    def __init__(self, consume: Callable[[bytes], None]) -> None:
        self._consume = consume
        self._queue: queue.Queue[bytes | None] = queue.Queue(_QUEUE_DEPTH)
        self._batch = bytearray()
        self.size = 0
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is None:
                try:
                    self._consume(item)
                except BaseException as e:  # re-raised on the caller's thread by close()
                    self._error = e

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if len(data) >= BATCH:
            self._flush()
            self._queue.put(data)
            return
        self._batch += data
        if len(self._batch) >= BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._batch:
            self._queue.put(bytes(self._batch))
            self._batch.clear()

    def close(self) -> None:
        self._flush()
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


class ReferenceScanner:
    """Finds which of a set of store hash parts occur in a byte stream (as Nix scans outputs)."""

    _OVERLAP = 31

    def __init__(self, hash_parts: Iterable[str]) -> None:
        self._remaining = {h.encode() for h in hash_parts}
        self.found: set[str] = set()
        self._tail = b""
        # A handful of needles: one fast substring search each; many: one regex pass.
        self._pattern = hash_part_pattern() if len(self._remaining) > 16 else None

    def feed(self, data: bytes) -> None:
        if not self._remaining:
            return
        window = self._tail + data
        if self._pattern is None:
            for h in [h for h in self._remaining if h in window]:
                self._remaining.discard(h)
                self.found.add(h.decode())
        else:
            for m in self._pattern.finditer(window):
                h = m.group()
                if h in self._remaining:
                    self._remaining.discard(h)
                    self.found.add(h.decode())
        self._tail = window[-self._OVERLAP :]


class Blake3Sink(ThreadedSink):
    def __init__(self, scanner: ReferenceScanner | None = None) -> None:
        self._hasher = blake3.blake3()
        self._scanner = scanner
        super().__init__(self._update)

    def _update(self, data: bytes) -> None:
        self._hasher.update(data)
        if self._scanner is not None:
            self._scanner.feed(data)

    def hexdigest(self) -> str:
        return self._hasher.hexdigest()


class Sha256Sink(ThreadedSink):
    def __init__(self) -> None:
        self._hasher = hashlib.sha256()
        super().__init__(self._hasher.update)

    def hexdigest(self) -> str:
        return self._hasher.hexdigest()

"""Layer compression: the same bytes for any number of threads, readable by real tools."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import random
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import zstandard

from store.compress import BLOCK, ZSTD_AT_ONCE, CompressedBlob, ParallelGzip, zstd_writer


def _data() -> bytes:
    """Some 5.5 MiB that compress unevenly: text, random bytes, runs, across block edges."""
    rng = random.Random(11)
    parts = [
        b"".join(f"line {i} of a text file\n".encode() for i in range(60000)),
        rng.randbytes(BLOCK + 12345),
        b"\0" * (BLOCK // 2),
        Path(__file__).read_bytes() * 200,
    ]
    return b"".join(parts)


def _gzip(data: bytes, workers: int, chunk: int) -> bytes:
    out: list[bytes] = []
    with ThreadPoolExecutor(workers) as pool:
        writer = ParallelGzip(out.append, pool)
        for i in range(0, len(data), chunk):
            writer.write(data[i : i + chunk])
        writer.close()
    return b"".join(out)


def test_parallel_gzip_is_the_same_for_any_thread_count_and_valid(tmp_path: Path) -> None:
    data = _data()
    made = {
        (workers, chunk): _gzip(data, workers, chunk)
        for workers, chunk in [(1, 1 << 16), (2, 4096 + 1), (4, BLOCK), (3, 3 * BLOCK + 5)]
    }
    digests = {hashlib.sha256(blob).hexdigest() for blob in made.values()}
    assert len(digests) == 1
    blob = next(iter(made.values()))
    assert gzip.decompress(blob) == data
    # The system's gzip reads it too, and finds its CRC and length right.
    (tmp_path / "layer.gz").write_bytes(blob)
    tested = subprocess.run(["gzip", "-t", str(tmp_path / "layer.gz")], check=False)
    assert tested.returncode == 0
    assert len(blob) < len(data) // 2  # blocks primed with their predecessor still compress


def test_parallel_gzip_of_nothing_is_an_empty_gzip() -> None:
    assert gzip.decompress(_gzip(b"", 2, 1)) == b""


def test_zstd_is_the_same_for_any_thread_count() -> None:
    data = _data()
    made = set()
    for threads in (1, 2, (os.cpu_count() or 1) + 2):
        out = io.BytesIO()
        writer = zstd_writer(out, threads)
        for i in range(0, len(data), 70001):
            writer.write(data[i : i + 70001])
        writer.close()
        made.add(out.getvalue())
    assert len(made) == 1
    assert zstandard.ZstdDecompressor().decompressobj().decompress(made.pop()) == data


def test_zstd_blobs_are_written_one_at_a_time_and_a_failed_one_lets_go(tmp_path: Path) -> None:
    """Each libzstd multi-threaded context holds tens of MiB and already uses every core, so
    a second zstd blob waits for the first; gzip blobs do not wait; and a blob left by an
    error (the context manager aborts it) frees its turn, or every later build would hang."""
    first = CompressedBlob(tmp_path / "first", "zstd")
    first.feed(b"x" * 1000)
    with ThreadPoolExecutor(max_workers=2) as pool:
        second = pool.submit(lambda: CompressedBlob(tmp_path / "second", "zstd"))
        with CompressedBlob(tmp_path / "plain", "gzip") as plain:  # not held up
            plain.feed(b"y")
            plain.finish()
        time.sleep(0.3)
        assert not second.done()  # waiting for the first one's turn
        digest, _, _ = first.finish()
        waited = second.result(timeout=10)
        waited.abort()
    assert zstandard.ZstdDecompressor().decompressobj().decompress(
        (tmp_path / "first").read_bytes()
    ) == b"x" * 1000 and digest.startswith("sha256:")

    with contextlib.suppress(RuntimeError), CompressedBlob(tmp_path / "failed", "zstd") as blob:
        blob.feed(b"z")
        raise RuntimeError("the tree could not be read")
    assert not (tmp_path / "failed").exists()
    with ThreadPoolExecutor(max_workers=1) as pool:  # its turn was given back
        after = pool.submit(lambda: CompressedBlob(tmp_path / "after", "zstd")).result(timeout=10)
    after.abort()

    with pytest.raises(FileNotFoundError):  # its file cannot be made: it takes no turn
        CompressedBlob(tmp_path / "no-such-dir" / "blob", "zstd")
    assert ZSTD_AT_ONCE.acquire(timeout=5)  # free (asked directly: a lost turn must not hang)
    ZSTD_AT_ONCE.release()

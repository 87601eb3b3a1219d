"""Benchmark: layer compression, the single-stream compressors against the parallel ones.

One run on the same data for every contender: a layer tar of a real tree (default: this
machine's /usr/lib/x86_64-linux-gnu, shared libraries as a CUDA layer has them), read into
memory first so the disk is not measured. Contenders: Python's gzip (one stream, at the
layers' level), the parallel deterministic gzip (store.compress.ParallelGzip,
1 MiB blocks, a thread per core), zstd level 9 single-threaded and in libzstd's
multi-threaded mode. For each: wall time, MiB/s of input, compressed size, and whether the
bytes are the same with 1 thread as with all (what keeps digests independent of the machine).

    python bench/compress.py [TREE] [--limit MiB]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import sys
import tarfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from store.compress import GZIP_LEVEL, ParallelGzip, zstd_writer

Compressor = Callable[[bytes], bytes]


def layer_bytes(tree: Path, limit: int) -> bytes:
    """An uncompressed tar of `tree` (symlinks as links), cut at `limit` bytes."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(tree.rglob("*")):
            if out.tell() >= limit:
                break
            tar.add(path, arcname=str(path.relative_to(tree)), recursive=False)
    return out.getvalue()[:limit]


def timed(name: str, fn: Compressor, data: bytes) -> tuple[str, float, bytes]:
    start = time.monotonic()
    blob = fn(data)
    return name, time.monotonic() - start, blob


def gzip_single(data: bytes) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=GZIP_LEVEL, mtime=0) as g:
        for i in range(0, len(data), 1 << 20):
            g.write(data[i : i + (1 << 20)])
    return out.getvalue()


def gzip_parallel(workers: int) -> Compressor:
    def run(data: bytes) -> bytes:
        parts: list[bytes] = []
        with ThreadPoolExecutor(workers) as pool:
            writer = ParallelGzip(parts.append, pool)
            for i in range(0, len(data), 1 << 20):
                writer.write(data[i : i + (1 << 20)])
            writer.close()
        return b"".join(parts)

    return run


def zstd(threads: int) -> Compressor:
    def run(data: bytes) -> bytes:
        out = io.BytesIO()
        if threads == 0:
            import zstandard

            single = zstandard.ZstdCompressor(level=9, threads=0, write_checksum=False)
            return single.compress(data)
        w = zstd_writer(out, threads)
        for i in range(0, len(data), 1 << 20):
            w.write(data[i : i + (1 << 20)])
        w.close()
        return out.getvalue()

    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("tree", nargs="?", default="/usr/lib/x86_64-linux-gnu")
    parser.add_argument("--limit", type=int, default=1024, help="MiB of layer to compress")
    args = parser.parse_args()
    data = layer_bytes(Path(args.tree), args.limit << 20)
    cores = os.cpu_count() or 1
    mib = len(data) / 2**20
    print(f"{mib:.0f} MiB layer of {args.tree}, {cores} cores")
    rows = [
        timed("gzip, one stream (before)", gzip_single, data),
        timed("gzip, parallel, 1 thread", gzip_parallel(1), data),
        timed(f"gzip, parallel, {cores} threads", gzip_parallel(cores), data),
        timed("zstd 9, single-threaded", zstd(0), data),
        timed("zstd 9, MT, 1 thread", zstd(1), data),
        timed(f"zstd 9, MT, {cores} threads", zstd(cores), data),
    ]
    base = rows[0][1]
    print("| compressor | wall | MiB/s | size | vs gzip one stream |")
    print("|---|---|---|---|---|")
    for name, seconds, blob in rows:
        print(
            f"| {name} | {seconds:.2f} s | {mib / seconds:.0f} | {len(blob) / 2**20:.1f} MiB "
            f"| {base / seconds:.2f}x |"
        )
    same_gzip = hashlib.sha256(rows[1][2]).digest() == hashlib.sha256(rows[2][2]).digest()
    same_zstd = rows[4][2] == rows[5][2]
    print(f"parallel gzip: 1 thread and {cores} threads give the same bytes: {same_gzip}")
    print(f"zstd MT: 1 thread and {cores} threads give the same bytes: {same_zstd}")


if __name__ == "__main__":
    main()

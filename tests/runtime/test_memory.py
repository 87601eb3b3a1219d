"""Memory that builds free goes back to the system: large blocks are unmapped when freed, and a
finished zstd blob frees its multi-threaded context at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

RSS = """
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) << 10
"""

# Four 16 MiB blocks, each followed by a small one so that none sits at the top of the heap,
# where glibc would trim it anyway; what stays resident after they are freed is printed.
FRAGMENTED = (
    """
import ctypes, sys
from cog.cli.malloc import return_large_frees
if sys.argv[1] == "on":
    return_large_frees()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def touched(n):
    p = libc.malloc(n)
    ctypes.memset(p, 1, n)
    return p
libc.free(touched(24 << 20))  # glibc's own threshold now rises past 16 MiB
"""
    + RSS
    + """
before = rss()
blocks, pins = [], []
for _ in range(4):
    blocks.append(touched(16 << 20))
    pins.append(touched(64 << 10))
for p in blocks:
    libc.free(p)
print(rss() - before)
"""
)

ZSTD_BLOB = (
    """
import random, sys
from pathlib import Path
from cog.cli.malloc import return_large_frees
from store.compress import CompressedBlob
return_large_frees()
"""
    + RSS
    + """
chunk = random.Random(5).randbytes(1 << 20) + bytes(1 << 20)
before = rss()
blob = CompressedBlob(Path(sys.argv[1]), "zstd")
for _ in range(24):
    blob.feed(chunk)
during = rss()
blob.finish()
print(during - before, rss() - before)  # `blob` is still referenced
"""
)


def _run(code: str, *args: str) -> list[int]:
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [int(n) for n in out.split()]


def test_freed_large_blocks_leave_memory() -> None:
    [kept_by_default] = _run(FRAGMENTED, "off")
    [kept] = _run(FRAGMENTED, "on")
    assert kept_by_default >= 48 << 20  # glibc alone keeps them: the case this is for
    assert kept < 4 << 20


def test_a_finished_zstd_blob_frees_its_context(tmp_path: Path) -> None:
    during, after = _run(ZSTD_BLOB, str(tmp_path / "blob"))
    assert during >= 32 << 20  # the context's job buffers
    assert after < 8 << 20

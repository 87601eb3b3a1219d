"""How the cog process asks glibc to hand freed memory back."""

from __future__ import annotations

import ctypes
import os

M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's malloc.h
LARGE = 4 << 20


def return_large_frees() -> None:
    """Has glibc map every allocation of LARGE bytes or more on its own, and unmap it when it
    is freed. By default glibc raises that threshold after each large free, up to 32 MiB.
    After that, buffers such as zstd's 16 MiB job buffers come from the arenas of the threads
    that allocate them, and stay resident there once freed. With each zstd context freed as its
    blob ends (store/compress.py), this took the cold torch build's peak with zstd from 429 MiB
    to 257 MiB (bench/README.md). Blocks of 1 MiB (reads and gzip blocks)
    stay below LARGE, so they are still reused rather than mapped and faulted in each time.
    This does nothing where the C library is not glibc."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return
        ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, LARGE)
    except (ValueError, OSError, AttributeError):  # no such confstr name, or no mallopt
        return

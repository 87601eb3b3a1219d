"""`suppress_output()`: silences the process's stdout and stderr, C libraries' writes included."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def suppress_output() -> Iterator[None]:
    """Points file descriptors 1 and 2 at /dev/null inside the block, and back after it."""
    out_fd = sys.stdout.fileno()
    err_fd = sys.stderr.fileno()
    saved_out = os.dup(out_fd)
    saved_err = os.dup(err_fd)
    try:
        with (
            open(os.devnull, "w", encoding="utf-8") as null_out,
            open(os.devnull, "w", encoding="utf-8") as null_err,
        ):
            os.dup2(null_out.fileno(), out_fd)
            os.dup2(null_err.fileno(), err_fd)
            try:
                yield
            finally:
                os.dup2(saved_out, out_fd)
                os.dup2(saved_err, err_fd)
    finally:
        os.close(saved_out)
        os.close(saved_err)

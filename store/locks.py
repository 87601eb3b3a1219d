"""File locks shared between processes (flock), and temp dirs whose owner can be seen to be gone."""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


class FileLock:
    """An flock on a file; `acquire(blocking=False)` returns whether it was taken."""

    def __init__(self, path: Path, shared: bool = False) -> None:
        self.path = path
        self._mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        self._fd: int | None = None

    def acquire(self, blocking: bool = True) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, self._mode | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def remove_tree(path: Path) -> None:
    """Removes a file or tree, read-only store directories included."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return

    def retry_writable(func: Callable[..., object], p: str, _exc: object) -> None:
        os.chmod(os.path.dirname(p), 0o755)
        if os.path.isdir(p) and not os.path.islink(p):
            os.chmod(p, 0o755)
        func(p)

    for dirpath, dirnames, _ in os.walk(path):
        os.chmod(dirpath, 0o755)
        for d in dirnames:
            full = os.path.join(dirpath, d)
            if not os.path.islink(full):
                os.chmod(full, 0o755)
    shutil.rmtree(path, onerror=retry_writable)


@contextmanager
def owned_temp_dir(parent: Path, prefix: str) -> Iterator[Path]:
    """A fresh directory under `parent`, removed on exit; a lock marks it as in use.

    If the owner dies (even by SIGKILL) the lock goes with it, so `stale_temp_dirs` can tell a
    leftover from a directory another live process is still writing.
    """
    name = f"{prefix}{int(time.time())}-{secrets.token_hex(6)}"
    lock = FileLock(parent / f"{name}.lock")
    lock.acquire()
    path = parent / name
    try:
        path.mkdir()
        yield path
    finally:
        remove_tree(path)
        os.unlink(lock.path)
        lock.release()


def stale_temp_dirs(parent: Path) -> list[Path]:
    """Temp dirs (and lock files) under `parent` whose owner is gone."""
    stale = []
    for entry in sorted(parent.iterdir()):
        if entry.suffix == ".lock":
            continue
        lock = FileLock(parent / f"{entry.name}.lock")
        if lock.acquire(blocking=False):
            lock.release()
            stale += [entry, lock.path]
    for entry in parent.glob("*.lock"):
        if not (parent / entry.stem).exists():
            lock = FileLock(entry)
            if lock.acquire(blocking=False):
                lock.release()
                stale.append(entry)
    return stale

"""Creating the small files of a tree being added, in a process of its own.

Adding a tree of many small files is mostly the kernel's work: creating each file and copying
its bytes. Done on threads of the adding process, that work, the reading back and the hashing
passed the GIL to each other several times per file, and on two cores a thread given the GIL
often waited for a core: a 10,000-file, 1 GiB tree took 2.2-2.5 s of CPU this way, against
1.6 s in one thread, and the threads gained only 0.1 s of wall time. A child process has no
GIL to share: the same tree's copy fell from 1.2-1.4 s to 0.8-1.1 s. `Placer` is the adding
process's end; the child is `store/copying.py`, which says how the two talk.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import os
import subprocess
import sys

from store import copying


class Placer:
    """Places files, in the order given, in a child process, up to a batch ahead of the
    caller; `result` gives the bytes each copy got, in the same order. The first files of a
    tree are placed inline: a small tree is not worth a process (~15 ms to start)."""

    _BATCH = 32
    INLINE = 64

    def __init__(self) -> None:
        self._child: subprocess.Popen[bytes] | None = None
        self._inline = 0
        self._sending: list[bytes] = []
        self._targets: collections.deque[str] = collections.deque()  # sent, not yet answered
        self._received: collections.deque[int | OSError] = collections.deque()
        self._answers = b""
        self._failed = False  # a file placed inline failed (the child keeps its own count)

    def place(self, src_path: str, target: str, mode: int, size: int) -> None:
        if self._failed:  # nothing after a failure is placed (the child skips them alike)
            self._received.append(_skipped(target))
            return
        if self._inline < self.INLINE or not sys.executable:  # (no interpreter to run)
            self._inline += 1
            try:
                self._received.append(copying.place(src_path, target, mode, size))
            except OSError as e:
                self._failed = True
                self._received.append(e)
            return
        self._sending.append(
            b"%o\0%d\0%s\0%s\0" % (mode, size, os.fsencode(src_path), os.fsencode(target))
        )
        self._targets.append(target)
        if len(self._sending) >= self._BATCH:
            self._send()

    def _send(self) -> None:
        if not self._sending:
            return
        if self._child is None:
            self._child = subprocess.Popen(
                [sys.executable, "-I", "-S", copying.__file__],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                start_new_session=True,  # Ctrl-C is the parent's to handle: it kills the child
            )
        assert self._child.stdin is not None
        try:
            self._child.stdin.write(b"".join(self._sending) + b"\0")
            self._child.stdin.flush()
        except BrokenPipeError:
            raise _stopped() from None
        self._sending = []

    def result(self) -> int:
        """The bytes copied into the next file placed; raises the OSError that stopped it."""
        while not self._received:
            self._send()  # the file waited for may not have been sent yet
            self._receive()
        done = self._received.popleft()
        if isinstance(done, OSError):
            raise done
        return done

    def _receive(self) -> None:
        assert self._child is not None and self._child.stdout is not None
        chunk = os.read(self._child.stdout.fileno(), 1 << 16)
        if not chunk:
            raise _stopped()
        *lines, self._answers = (self._answers + chunk).split(b"\n")
        for line in lines:
            target = self._targets.popleft()
            if line.startswith(b"E"):
                code = int(line[1:])
                self._received.append(OSError(code, os.strerror(code), target))
            elif line == b"S":
                self._received.append(_skipped(target))
            else:
                self._received.append(int(line))

    def close(self) -> None:
        """Stops the child: at once if files it placed were not asked for (the caller
        failed), else once it has seen the end of its input."""
        child, self._child = self._child, None
        if child is None:
            return
        assert child.stdin is not None and child.stdout is not None
        if self._targets or self._sending:
            child.kill()
        with contextlib.suppress(BrokenPipeError):
            child.stdin.close()
        child.wait()
        child.stdout.close()


def _skipped(target: str) -> OSError:
    return OSError(errno.ECANCELED, "not placed", target)


def _stopped() -> OSError:
    return OSError(errno.EPIPE, "the process that places the files being added stopped")

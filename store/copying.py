"""Copying a file into the store, and the process that places an added tree's small files.

Run as a script (`python -I -S copying.py`: it imports nothing outside the standard library,
and little of that, to start in ~15 ms), this is the child that `store.placing.Placer` starts:
it reads files to place from stdin and answers on stdout. The protocol: a file is four
NUL-terminated fields (its final mode in octal, its size when walked, its path, the target's
path); an empty field ends a batch, and the child then answers each file of the batch with a
line: the bytes copied (one more than its size: the file grew), `E<errno>` if it could not be
placed, or `S` for one skipped after such a failure.
"""

from __future__ import annotations

import errno
import os

_BUFFER = 1 << 20  # where the kernel cannot copy


def copy_range(src: int, dst: int, count: int, offset: int) -> int:
    """Copies up to `count` bytes at `offset` of `src` to the same offset of `dst`; the number
    copied, fewer only at the end of `src`."""
    done = 0
    try:
        while done < count:
            want = count - done
            n = os.copy_file_range(src, dst, want, offset + done, offset + done)
            done += n
            if n < want:  # the end of the file: no second call just to see nothing more
                break
        return done
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    # A filesystem (or kernel) that cannot copy in the kernel: through a buffer, then.
    while done < count:
        chunk = os.pread(src, min(_BUFFER, count - done), offset + done)
        if not chunk:
            break
        written = 0
        while written < len(chunk):
            written += os.pwrite(dst, memoryview(chunk)[written:], offset + done + written)
        done += len(chunk)
    return done


def open_pair(src_path: str | bytes, target: str | bytes, mode: int) -> tuple[int, int]:
    """`src_path`, open for reading, and `target`, created with `mode` (its descriptor may
    still write; no umask applies) and open for reading and writing."""
    src = os.open(src_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        dst = os.open(target, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(dst, mode)
        except BaseException:
            os.close(dst)
            raise
    except BaseException:
        os.close(src)
        raise
    return src, dst


def place(src_path: str | bytes, target: str | bytes, mode: int, size: int) -> int:
    """Creates `target` with `mode` as a copy of the file walked at `size` bytes: the bytes
    copied, one more than `size` if the file grew."""
    src, dst = open_pair(src_path, target, mode)
    try:
        return copy_range(src, dst, size + 1, 0)
    finally:
        os.close(src)
        os.close(dst)


def serve() -> None:
    """The child: places what stdin asks for, answering each batch on stdout."""
    pending = b""
    fields: list[bytes] = []
    answers: list[bytes] = []
    failed = False
    while chunk := os.read(0, 1 << 16):
        *complete, pending = (pending + chunk).split(b"\0")
        for field in complete:
            if not fields and not field:  # the end of a batch
                os.write(1, b"".join(answers))
                answers = []
                continue
            fields.append(field)
            if len(fields) < 4:
                continue
            mode, size, src_path, target = fields
            fields = []
            if failed:  # nothing after a failure is placed; the parent raises at it
                answers.append(b"S\n")
                continue
            try:
                answers.append(b"%d\n" % place(src_path, target, int(mode, 8), int(size)))
            except OSError as e:
                failed = True
                answers.append(b"E%d\n" % (e.errno or errno.EIO))


if __name__ == "__main__":
    serve()

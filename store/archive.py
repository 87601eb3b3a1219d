"""The canonical archive: one deterministic tar serialisation of a file tree.

Entries are sorted (byte order of names, depth first), mtime 0, uid/gid 0, no owner names,
modes normalised (0755 for directories and executables, 0644 for other files, 0777 for
symlinks, 1777 for sticky directories such as a root layer's /tmp), no xattrs, hardlinks
stored as plain files; only regular files, directories and symlinks are allowed. PAX headers
are used only where a name or link target needs them.

A tree is serialised in two forms that share every data byte:

- the *nar* form, entries named `./…`: independent of where the tree lives; its BLAKE3 is the
  content hash (as Nix's narHash) that content-addressed paths are named after;
- the *layer* form, entries named `cog/store/<hash>-<name>/…` after `cog/` and `cog/store/`:
  exactly the OCI layer that puts the path at `/cog/store`; its SHA-256 is the layer `diff_id`.

One read pass feeds both forms to their hashers, each in its own thread. The layer form's
SHA-256 is optional: most paths get it later, from the pass that compresses their layer.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import mmap
import os
import queue
import stat
import tarfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from store.copying import copy_range, open_pair
from store.errors import ArchiveError, StoreError
from store.hashing import Blake3Sink, Piece, ReferenceScanner, Sha256Sink, file_sha256
from store.paths import HASH_LEN, STORE_DIR, StorePath
from store.placing import Placer

CHUNK = 1 << 20
WINDOW = 16 << 20  # a large file is copied a window at a time, each hashed while the next copies
BLOCK = 512
RECORD = 20 * BLOCK
NAR_PREFIX = "."
_MAX_LINK_FOLLOWS = 40

Kind = Literal["dir", "file", "symlink"]


@dataclass(frozen=True, slots=True)
class Entry:
    rel: str  # "" for the root, else "a/b"
    kind: Kind
    path: str  # where it is on disk now
    size: int = 0
    executable: bool = False
    target: str = ""
    sticky: bool = False  # directories only: world-writable with the sticky bit (`/tmp`)
    mode: int = 0  # permission bits on disk now (st_mode & 0o7777), to skip needless chmods


@dataclass(frozen=True)
class ArchiveDigest:
    nar_hash: str  # BLAKE3 (hex) of the nar form
    nar_size: int
    tar_sha256: str  # SHA-256 (hex) of the layer form; "" when not computed
    tar_size: int  # the layer form's size, counted even when it is not hashed
    references: frozenset[str]  # hash parts found in the contents


def is_store_reference(target: str) -> bool:
    if not target.startswith(STORE_DIR + "/"):
        return False
    try:
        StorePath.parse(target)
    except StoreError:
        return False
    return True


def symlink_stays_inside(root: str, link_rel: str, target: str) -> bool:
    """Whether resolving `target` (of the link at `link_rel`) stays inside `root` or the store.

    Resolution follows the links it meets inside the tree, as the kernel would, so a chain like
    `d/l -> ..` then `x -> d/l/..` is caught even though each string looks harmless alone.
    """
    if target.startswith("/"):
        return is_store_reference(target)
    here = link_rel.split("/")[:-1] if link_rel else []
    todo = target.split("/")
    follows = 0
    while todo:
        part = todo.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not here:
                return False
            here.pop()
            continue
        candidate = os.path.join(root, *here, part)
        try:
            st = os.lstat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            here.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            follows += 1
            if follows > _MAX_LINK_FOLLOWS:
                return False
            inner = os.readlink(candidate)
            if inner.startswith("/"):
                return is_store_reference(inner)
            todo = inner.split("/") + todo
            continue
        here.append(part)
    return True


def _check_name(name: str, where: str) -> None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ArchiveError(
            f"{where!r} has a file name that is not UTF-8; rename it before adding it"
        ) from None


def walk(root: Path | str) -> Iterator[Entry]:
    """Canonical entries of the tree at `root`, validated; raises ArchiveError on anything else."""
    root_s = os.fspath(root)
    yield from _walk(root_s, root_s, "", os.lstat(root_s))


def _walk(root: str, path: str, rel: str, st: os.stat_result) -> Iterator[Entry]:
    mode = st.st_mode
    if stat.S_ISREG(mode):
        yield Entry(rel, "file", path, st.st_size, bool(mode & 0o111), mode=mode & 0o7777)
    elif stat.S_ISLNK(mode):
        target = os.readlink(path)
        if "\0" in target or not symlink_stays_inside(root, rel, target):
            raise ArchiveError(
                f"symlink {path!r} -> {target!r} points outside the tree and the store; "
                "make it relative and inside, or copy what it points to"
            )
        _check_name(target, path)
        yield Entry(rel, "symlink", path, target=target)
    elif stat.S_ISDIR(mode):
        yield Entry(rel, "dir", path, sticky=bool(mode & stat.S_ISVTX), mode=mode & 0o7777)
        with os.scandir(path) as it:
            children = sorted(it, key=lambda d: os.fsencode(d.name))
        for child in children:
            _check_name(child.name, child.path)
            child_rel = f"{rel}/{child.name}" if rel else child.name
            yield from _walk(root, child.path, child_rel, child.stat(follow_symlinks=False))
    else:
        raise ArchiveError(
            f"{path!r} is {describe_mode(mode)}; only regular files, directories and symlinks "
            "can be stored"
        )


def describe_mode(mode: int) -> str:
    """What kind of unstorable file `mode` is, for error messages."""
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    if stat.S_ISFIFO(mode):
        return "a fifo"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def tar_header(entry: Entry, prefix: str) -> bytes:
    """The entry's header; with an empty prefix, names are relative to the root (a root layer)."""
    name = "/".join(p for p in (prefix, entry.rel) if p)
    if entry.kind == "dir":
        mode, kind = (0o1777 if entry.sticky else 0o755), tarfile.DIRTYPE
        name += "" if name.endswith("/") else "/"  # as tarfile names a directory
    elif entry.kind == "file":
        mode, kind = (0o755 if entry.executable else 0o644), tarfile.REGTYPE
    else:
        mode, kind = 0o777, tarfile.SYMTYPE
    plain = name.isascii() and len(name) <= 100 and entry.size < _USTAR_MAX_SIZE
    if plain and entry.target.isascii() and len(entry.target) <= 100:
        return _ustar_header(name.encode(), mode, entry.size, kind, entry.target.encode())
    return _pax_header(entry, prefix, mode)


_USTAR_MAX_SIZE = 8**11  # 11 octal digits; larger sizes need a PAX record

# The fixed part of every ustar header we write: uid/gid 0, mtime 0, magic "ustar\0" "00", no
# owner names or device numbers; the checksum field counts as spaces while it is summed.
_USTAR_TEMPLATE = bytes(
    bytearray(100)
    + b"0000000\0" * 3  # mode (overwritten), uid, gid
    + b"00000000000\0" * 2  # size (overwritten), mtime
    + b" " * 8  # checksum
    + bytearray(101)  # type, link name
    + tarfile.POSIX_MAGIC
    + bytearray(BLOCK - 265)
)

_TEMPLATE_SUM = sum(_USTAR_TEMPLATE)
_ZEROS = sum(b"0" * (7 + 11))  # the template's mode and size digits, replaced


def _ustar_header(name: bytes, mode: int, size: int, kind: bytes, link: bytes) -> bytes:
    """What `tarfile` writes for a PAX_FORMAT entry that needs no PAX record (ASCII names and
    link of at most 100 bytes, size below 8 GiB), built directly: tarfile costs ~20 µs a header,
    which is a large part of adding a tree of small files."""
    buf = bytearray(_USTAR_TEMPLATE)
    buf[: len(name)] = name
    buf[100:107] = octal_mode = b"%07o" % mode
    buf[124:135] = octal_size = b"%011o" % size
    buf[156:157] = kind
    buf[157 : 157 + len(link)] = link
    # The checksum is the sum of all bytes: the template's, plus what the fields above changed.
    changed = sum(name) + sum(link) + sum(octal_mode) + sum(octal_size) + kind[0] - _ZEROS
    buf[148:155] = b"%06o\0" % (_TEMPLATE_SUM + changed)
    return bytes(buf)


def _pax_header(entry: Entry, prefix: str, mode: int) -> bytes:
    """The entry's header made by `tarfile` (long or non-ASCII names and links, huge files)."""
    info = tarfile.TarInfo("/".join(p for p in (prefix, entry.rel) if p))
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = mode
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
    elif entry.kind == "file":
        info.type, info.size = tarfile.REGTYPE, entry.size
    else:
        info.type, info.linkname = tarfile.SYMTYPE, entry.target
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "strict")


def _dir_header(name: str) -> bytes:
    return tar_header(Entry("", "dir", ""), name)


def layer_preamble() -> bytes:
    """Headers of the parent directories every layer form starts with."""
    top = STORE_DIR.strip("/").split("/")
    return b"".join(_dir_header("/".join(top[: i + 1])) for i in range(len(top)))


def padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


def trailer(size_so_far: int) -> bytes:
    end = 2 * BLOCK
    return b"\0" * (end + (-(size_so_far + end) % RECORD))


def read_chunks(entry: Entry, expected: int) -> Iterator[bytes]:
    """The file's bytes; it must keep the size it had when walked (nothing may change under us)."""
    seen = 0
    fd = os.open(entry.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        # At most one byte more than is left: a small file's buffer is its size, not CHUNK's,
        # and a file that grew is still seen.
        while chunk := os.read(fd, min(CHUNK, expected - seen + 1)):
            seen += len(chunk)
            if seen > expected:
                break
            yield chunk
    finally:
        os.close(fd)
    if seen != expected:
        raise ArchiveError(f"{entry.path!r} changed size while it was being read; try again")


class _Counter:
    """Stands in for the layer form's hasher when only its size is wanted."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: Piece) -> None:
        self.size += len(data)

    def close(self) -> None:
        pass

    def hexdigest(self) -> str:
        return ""


class _Hasher:
    """Turns walk events into the nar form (BLAKE3) and the layer form (SHA-256, or only its
    size unless `layer_hash`); references are scanned for in the nar form."""

    def __init__(
        self,
        layer_prefix: str | None,
        scan: Iterable[str],
        layer_hash: bool = True,
        on_threads: bool = True,
    ) -> None:
        hash_parts = list(scan)
        self.scanner = ReferenceScanner(hash_parts) if hash_parts else None
        self.nar = Blake3Sink(self.scanner, on_threads)
        self.layer: Sha256Sink | _Counter | None = None
        if layer_prefix is not None:
            self.layer = Sha256Sink(on_threads) if layer_hash else _Counter()
            self.layer.write(layer_preamble())
        self.layer_prefix = layer_prefix

    def entry(self, entry: Entry) -> None:
        self.nar.write(tar_header(entry, NAR_PREFIX))
        if self.layer is not None and self.layer_prefix is not None:
            self.layer.write(tar_header(entry, self.layer_prefix))

    def data(self, chunk: Piece) -> None:
        self.nar.write(chunk)
        if self.layer is not None:
            self.layer.write(chunk)

    def finish(self) -> ArchiveDigest:
        for sink in (self.nar, self.layer):
            if sink is not None:
                sink.write(trailer(sink.size))
        try:
            self.nar.close()
        finally:
            if self.layer is not None:
                self.layer.close()
        return ArchiveDigest(
            nar_hash=self.nar.hexdigest(),
            nar_size=self.nar.size,
            tar_sha256=self.layer.hexdigest() if self.layer is not None else "",
            tar_size=self.layer.size if self.layer is not None else 0,
            references=frozenset(self.scanner.found if self.scanner else ()),
        )

    def abort(self) -> None:
        for sink in (self.nar, self.layer):
            if sink is not None:
                with contextlib.suppress(BaseException):
                    sink.close()


def _hash_walk(
    entries: Iterable[Entry],
    hasher: _Hasher,
    after_entry: Callable[[Entry], None] | None = None,
) -> ArchiveDigest:
    try:
        for entry in entries:
            # A symlink's target is in its header, which the reference scanner reads too.
            hasher.entry(entry)
            if entry.kind == "file":
                for chunk in read_chunks(entry, entry.size):
                    hasher.data(chunk)
                hasher.data(padding(entry.size))
            if after_entry is not None:
                after_entry(entry)
    except BaseException:
        hasher.abort()
        raise
    return hasher.finish()


def hash_tree(
    root: Path | str,
    layer_prefix: str | None = None,
    scan: Iterable[str] = (),
    after_entry: Callable[[Entry], None] | None = None,
    layer_hash: bool = True,
) -> ArchiveDigest:
    """Hashes the tree in place: nar BLAKE3, the layer form when a prefix is given (its
    SHA-256, or with `layer_hash` false only its size), references."""
    return _hash_walk(walk(root), _Hasher(layer_prefix, scan, layer_hash), after_entry)


def copy_tree(src: Path | str, dest: Path | str, name: str) -> ArchiveDigest:
    """Copies the tree at `src` to `dest` (which must not exist) canonically and read-only (but
    for `dest` itself), hashing it on the way, for a store path called `name`.

    Only the nar form is hashed: the layer form needs the final path, which this hash decides.
    Its size is counted, though: a header's size depends only on the lengths of the names in
    it, so a placeholder hash of the same length stands in. What is hashed is read back from
    the copy, so the hash is of what the store holds even if the source changes meanwhile.
    A child process creates the small files (and has the kernel copy them) up to _AHEAD
    entries ahead of the hashing (store/placing.py says why a process, not a thread); this
    thread walks, reads back and hashes, with no thread of its own to share the GIL with.
    """
    src_s, dest_s = os.fspath(src), os.fspath(dest)
    prefix = StorePath("0" * HASH_LEN, name).layer_prefix
    hasher = _Hasher(prefix, (), layer_hash=False, on_threads=False)  # the placer is a process
    directories: list[tuple[str, Entry]] = []
    placer = Placer()
    placed: collections.deque[tuple[Entry, str]] = collections.deque()  # in order, not hashed

    def hash_next() -> None:
        entry, target = placed.popleft()
        hasher.entry(entry)
        if entry.kind == "file":
            _finish_copy(entry, target, placer.result(), hasher.data)
            hasher.data(padding(entry.size))

    try:
        for entry in walk(src_s):
            target = os.path.join(dest_s, entry.rel) if entry.rel else dest_s
            if entry.kind == "file" and entry.size > WINDOW:
                while placed:  # everything before it, first
                    hash_next()
                hasher.entry(entry)
                _copy_large(entry, target, hasher.data)
                hasher.data(padding(entry.size))
                continue
            if entry.kind == "file":
                placer.place(entry.path, target, _read_only_mode(entry), entry.size)
            elif entry.kind == "dir":
                os.mkdir(target, 0o755)  # here: what comes after it may be inside it
                if entry.sticky:
                    os.chmod(target, 0o1755)
                if entry.rel:
                    directories.append((target, entry))
            else:
                os.symlink(entry.target, target)
            placed.append((entry, target))
            if len(placed) > _AHEAD:
                hash_next()
        while placed:
            hash_next()
        for target, entry in directories:  # only now: they were being filled
            os.chmod(target, _read_only_mode(entry))
    except BaseException:
        hasher.abort()
        raise
    finally:
        placer.close()
    return hasher.finish()


_AHEAD = 128


def _finish_copy(entry: Entry, target: str, copied: int, out: Callable[[bytes], None]) -> None:
    """Reads the copy back into `out`; a file that changed size is refused."""
    dst = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _read_back(dst, 0, min(copied, entry.size), out)
    finally:
        os.close(dst)
    _check_copied(entry, copied)


def _check_copied(entry: Entry, copied: int) -> None:
    if copied != entry.size:
        raise ArchiveError(f"{entry.path!r} changed size while it was being read; try again")


def _copy_large(entry: Entry, target: str, out: Callable[[Piece], None]) -> None:
    """Copies a file larger than a window and passes its bytes, mapped from the copy, to
    `out`. The kernel copies (copy_file_range: no bytes pass through Python, and a filesystem
    that can shares the blocks instead), on a second thread a window ahead of the hashing,
    so copying and hashing overlap."""
    src, dst = open_pair(entry.path, target, _read_only_mode(entry))
    try:
        copied = _copy_ahead(src, dst, entry.size, out)
    finally:
        os.close(src)
        os.close(dst)
    _check_copied(entry, copied)


def _copy_ahead(src: int, dst: int, size: int, out: Callable[[Piece], None]) -> int:
    """Copies `size` bytes (and one more, if the file grew) a window at a time on a thread of
    its own, passing each window to `out` while the next one copies."""
    ready: queue.Queue[int | BaseException | None] = queue.Queue()
    stop = threading.Event()  # the reading side failed: copy no further

    def copy() -> None:
        try:
            done = 0
            while done <= size and not stop.is_set():
                want = min(WINDOW, size + 1 - done)
                n = copy_range(src, dst, want, done)
                done += n
                ready.put(done)
                if n < want:
                    break
            ready.put(None)
        except BaseException as e:  # raised again on the reading side
            ready.put(e)

    copier = threading.Thread(target=copy, daemon=True)
    copier.start()
    read = 0
    try:
        while (done := ready.get()) is not None:
            if isinstance(done, BaseException):
                raise done
            _map_back(dst, read, min(done, size) - read, out)
            read = done
    finally:
        stop.set()
        copier.join()  # the descriptors are closed only after the copier is done with them
    return read


def _map_back(fd: int, offset: int, count: int, out: Callable[[Piece], None]) -> None:
    """Passes `count` bytes of the copy at `offset` to `out` as a read-only map of the pages
    the kernel just wrote: reading a 1 GiB file's copy back into memory cost 0.3 s of the
    1.0 s its add took here, and mapping it costs next to nothing. The copy is in this
    store's own temp dir, where nothing else writes, so it cannot shrink under the map."""
    if count == 0:
        return
    try:
        window = mmap.mmap(
            fd, count, offset=offset, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE, prot=mmap.PROT_READ
        )
    except ValueError:  # past the end of the file
        raise ArchiveError("a file being added shrank in the store's temp dir; try again") from None
    out(window)


def _read_back(fd: int, offset: int, count: int, out: Callable[[bytes], None]) -> None:
    end = offset + count
    while offset < end:
        chunk = os.pread(fd, min(CHUNK, end - offset), offset)
        if not chunk:
            raise ArchiveError("a file being added shrank in the store's temp dir; try again")
        out(chunk)
        offset += len(chunk)


def archive_stream(root: Path | str, prefix: str) -> Iterator[bytes]:
    """The canonical tar of the tree: the nar form for ".", the store layer form for a path's
    layer prefix, or the tree placed at `/prefix` (`""`: at `/` itself, a root layer)."""
    return trees_stream([(root, prefix)])


def trees_stream(trees: Sequence[tuple[Path | str, str]]) -> Iterator[bytes]:
    """Several trees in one tar, each at its prefix (an image layer grouping small store
    paths); the store's parent directories come once, first. One tree is `archive_stream`."""
    for part in tree_parts(trees):
        if isinstance(part, Entry):
            yield from read_chunks(part, part.size)
        else:
            yield part


def tree_parts(trees: Sequence[tuple[Path | str, str]]) -> Iterator[bytes | Entry]:
    """`trees_stream` as tar metadata (bytes) and the files whose contents go between (each
    Entry stands for its `size` bytes), for a blob described rather than copied."""
    size = 0
    if any(prefix.startswith(STORE_DIR.lstrip("/") + "/") for _, prefix in trees):
        size += len(preamble := layer_preamble())
        yield preamble
    for root, prefix in trees:
        for entry in walk(root):
            if not prefix and not entry.rel:
                continue  # a root layer: the tree's root is `/` itself
            header = tar_header(entry, prefix)
            size += len(header)
            yield header
            if entry.kind == "file":
                yield entry
                size += entry.size + len(pad := padding(entry.size))
                yield pad
    yield trailer(size)


def _read_only_mode(entry: Entry) -> int:
    if entry.kind == "dir":
        return 0o1555 if entry.sticky else 0o555
    return 0o555 if entry.executable else 0o444


def make_read_only(entry: Entry) -> None:
    """Store contents are immutable: files 0444/0555, directories 0555 (the root after rename);
    a sticky directory keeps its sticky bit, which the canonical form records."""
    if entry.kind == "symlink" or not entry.rel:
        return
    mode = _read_only_mode(entry)
    if entry.mode != mode:  # already so (a builder's output may be): no chmod
        os.chmod(entry.path, mode)


def tree_sha256(tree: Path | str) -> str:
    """SHA-256 of a tree's canonical archive: what a fixed-output tree (a build.run step's
    output) is pinned by."""
    digest = hashlib.sha256()
    for chunk in archive_stream(tree, "."):
        digest.update(chunk)
    return digest.hexdigest()


def fixed_output_sha256(path: Path) -> str:
    """What a fixed-output derivation's sha256 is of: a file's bytes, or a tree's archive."""
    if path.is_dir() and not path.is_symlink():
        return tree_sha256(path)
    if path.is_symlink() or not path.is_file():
        return "(not a regular file)"
    return file_sha256(path)

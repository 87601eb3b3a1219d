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

One read pass feeds both forms to their hashers, each in its own thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tarfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from store.errors import ArchiveError, StoreError
from store.hashing import Blake3Sink, ReferenceScanner, Sha256Sink, file_sha256
from store.paths import STORE_DIR, StorePath

CHUNK = 1 << 20
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
    tar_size: int
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


class _Hasher:
    """Turns walk events into the nar form (BLAKE3, optional) and the layer form (SHA-256,
    optional); references are scanned for in the nar form."""

    def __init__(self, layer_prefix: str | None, scan: Iterable[str], nar: bool = True) -> None:
        hash_parts = list(scan)
        if hash_parts and not nar:
            raise ValueError("references are scanned for in the nar form, which is not hashed")
        self.scanner = ReferenceScanner(hash_parts) if hash_parts else None
        self.nar = Blake3Sink(self.scanner) if nar else None
        self.layer = Sha256Sink() if layer_prefix is not None else None
        self.layer_prefix = layer_prefix
        if self.layer is not None:
            self.layer.write(layer_preamble())

    def entry(self, entry: Entry) -> None:
        if self.nar is not None:
            self.nar.write(tar_header(entry, NAR_PREFIX))
        if self.layer is not None and self.layer_prefix is not None:
            self.layer.write(tar_header(entry, self.layer_prefix))

    def data(self, chunk: bytes) -> None:
        if self.nar is not None:
            self.nar.write(chunk)
        if self.layer is not None:
            self.layer.write(chunk)

    def finish(self) -> ArchiveDigest:
        for sink in (self.nar, self.layer):
            if sink is not None:
                sink.write(trailer(sink.size))
        try:
            if self.nar is not None:
                self.nar.close()
        finally:
            if self.layer is not None:
                self.layer.close()
        return ArchiveDigest(
            nar_hash=self.nar.hexdigest() if self.nar is not None else "",
            nar_size=self.nar.size if self.nar is not None else 0,
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
    layer_prefix: str | None,
    scan: Iterable[str],
    after_entry: Callable[[Entry], None] | None = None,
    nar: bool = True,
) -> ArchiveDigest:
    hasher = _Hasher(layer_prefix, scan, nar)
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
    nar: bool = True,
) -> ArchiveDigest:
    """Hashes the tree in place: nar BLAKE3 (unless `nar` is false: then nar_hash is "" and
    nothing is scanned), layer SHA-256 (when a prefix is given), references."""
    return _hash_walk(walk(root), layer_prefix, scan, after_entry, nar)


def copy_tree(src: Path | str, dest: Path | str) -> ArchiveDigest:
    """Copies the tree at `src` to `dest` (which must not exist) canonically, hashing it on the way.

    Only the nar form is hashed: the layer form needs the final path, which this hash decides.
    Files are created with their final read-only modes, so `make_read_only` has nothing left to
    do for them; directories stay writable until then, for their children.
    """
    src_s, dest_s = os.fspath(src), os.fspath(dest)
    hasher = _Hasher(None, ())
    try:
        for entry in walk(src_s):
            target = os.path.join(dest_s, entry.rel) if entry.rel else dest_s
            hasher.entry(entry)
            if entry.kind == "dir":
                os.mkdir(target, 0o755)
                if entry.sticky:
                    os.chmod(target, 0o1755)
            elif entry.kind == "symlink":
                os.symlink(entry.target, target)
            else:
                _copy_file(entry, target, hasher.data)
                hasher.data(padding(entry.size))
    except BaseException:
        hasher.abort()
        raise
    return hasher.finish()


def _copy_file(entry: Entry, target: str, out: Callable[[bytes], None]) -> None:
    """Copies one file, passing its bytes to `out` as they are written."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, _read_only_mode(entry))  # the open still may write; the umask plays no part
        for chunk in read_chunks(entry, entry.size):
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
            out(chunk)
    finally:
        os.close(fd)


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
    if entry.mode != mode:  # `add` creates its files read-only already
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

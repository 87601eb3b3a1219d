"""Safe extraction of tar (plain, gz, bz2, xz, zst) and zip archives into a fresh directory.

Rules: names are relative, without `..` or NUL; only files, directories, hardlinks to files
already extracted and symlinks; nothing is ever written through a symlink, because symlinks are
created last, and each one is then resolved as the kernel would, inside the tree, and refused if
it leads out (only links into `/cog/store/` may be absolute, and only when allowed).

A tar that claims to be a store path's canonical archive (a cache's blob, an import stream) is
read under `Limits`: its members are only what the canonical archive writes (no sparse files,
no devices, no hardlinks, no PAX records but names and sizes), its uncompressed stream stops at
the size it declared, and the file bytes written stop at theirs, so a bomb fails after at
most the declared bytes, not after filling the disk.
"""

from __future__ import annotations

import gzip
import os
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, cast

import zstandard

from store.archive import CHUNK, describe_mode, is_store_reference, symlink_stays_inside
from store.errors import ArchiveError

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_ZIP_MAGIC = b"PK\x03\x04"


def safe_relative(name: str, archive: str) -> str:
    """`name` made relative and checked; "" is the archive's root."""
    if "\0" in name:
        raise ArchiveError(f"{archive} has an entry whose name contains NUL; refusing to unpack it")
    if name.startswith("/"):
        raise ArchiveError(f"{archive} has an absolute entry {name!r}; refusing to unpack it")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"{archive} has an entry {name!r} that climbs out with '..'")
    return "/".join(parts)


@dataclass(frozen=True)
class Limits:
    """What a canonical archive declared: its uncompressed size and its files' total size."""

    stream: int  # the most bytes the uncompressed tar may have
    written: int  # the most file bytes it may write


class _Capped:
    """Reads an uncompressed stream, refusing to go past `limit` bytes."""

    def __init__(self, raw: IO[bytes] | gzip.GzipFile, limit: int, archive: str) -> None:
        self.raw, self.left, self.archive = raw, limit, archive

    def read(self, n: int = -1) -> bytes:
        want = CHUNK if n is None or n < 0 else n
        data = self.raw.read(min(want, self.left + 1))
        self.left -= len(data)
        if self.left < 0:
            raise ArchiveError(f"{self.archive} unpacks to more bytes than it declares")
        return data


_CANONICAL_TYPES = (tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE)
_CANONICAL_PAX = frozenset({"path", "linkpath", "size"})


class _Extractor:
    def __init__(
        self, dest: Path, archive: str, allow_store_links: bool, limits: Limits | None = None
    ) -> None:
        self.dest = os.fspath(dest)
        self.archive = archive
        self.allow_store_links = allow_store_links
        self.limits = limits
        self.written = 0
        self.dirs: set[str] = {""}
        self.files: set[str] = set()
        self.symlinks: dict[str, str] = {}
        os.makedirs(self.dest, exist_ok=True)

    def _path(self, rel: str) -> str:
        return os.path.join(self.dest, rel) if rel else self.dest

    def _parents(self, rel: str) -> None:
        parts = rel.split("/")[:-1]
        for i in range(len(parts)):
            sub = "/".join(parts[: i + 1])
            if sub in self.dirs:
                continue
            if sub in self.files or sub in self.symlinks:
                raise ArchiveError(
                    f"{self.archive} has an entry {rel!r} beneath {sub!r}, which is not a directory"
                )
            os.mkdir(self._path(sub), 0o755)
            self.dirs.add(sub)

    def _clear(self, rel: str) -> None:
        """A later entry of the same name replaces a file; it never replaces a directory."""
        if rel in self.dirs:
            raise ArchiveError(f"{self.archive} has {rel!r} both as a directory and as a file")
        if rel in self.files:
            os.unlink(self._path(rel))
            self.files.discard(rel)
        self.symlinks.pop(rel, None)

    def directory(self, name: str, sticky: bool = False) -> None:
        rel = safe_relative(name, self.archive)
        if rel in self.dirs:
            return
        self._parents(rel)
        self._clear(rel)
        os.mkdir(self._path(rel), 0o755)
        if sticky:
            os.chmod(self._path(rel), 0o1755)
        self.dirs.add(rel)

    def file(self, name: str, data: IO[bytes], executable: bool, size: int = 0) -> None:
        """`size`: what the archive declares for it, counted against the limits first."""
        rel = safe_relative(name, self.archive)
        if not rel:
            raise ArchiveError(f"{self.archive} has a file entry at its root")
        self._parents(rel)
        self._clear(rel)
        if self.limits is not None and self.written + size > self.limits.written:
            raise ArchiveError(f"{self.archive} holds more file bytes than it declares")
        self.written += size
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self._path(rel), flags, 0o755 if executable else 0o644)
        with os.fdopen(fd, "wb") as out:
            while chunk := data.read(CHUNK):
                out.write(chunk)
        self.files.add(rel)

    def hardlink(self, name: str, target: str) -> None:
        rel = safe_relative(name, self.archive)
        target_rel = safe_relative(target, self.archive)
        if target_rel not in self.files:
            raise ArchiveError(
                f"{self.archive} has a hardlink {name!r} to {target!r}, which is not a file "
                "extracted before it"
            )
        self._parents(rel)
        self._clear(rel)
        os.link(self._path(target_rel), self._path(rel))
        self.files.add(rel)

    def symlink(self, name: str, target: str) -> None:
        rel = safe_relative(name, self.archive)
        if not rel or "\0" in target or not target:
            raise ArchiveError(f"{self.archive} has an invalid symlink {name!r}")
        if target.startswith("/") and not (self.allow_store_links and is_store_reference(target)):
            raise ArchiveError(
                f"{self.archive} has a symlink {name!r} to the absolute path {target!r}"
            )
        if rel in self.dirs:
            raise ArchiveError(f"{self.archive} has {rel!r} both as a directory and as a symlink")
        self.symlinks[rel] = target

    def finish(self) -> None:
        for rel, target in self.symlinks.items():
            self._parents(rel)
            if rel in self.files:
                os.unlink(self._path(rel))
                self.files.discard(rel)
            os.symlink(target, self._path(rel))
        escaping = [
            (rel, target)
            for rel, target in self.symlinks.items()
            if not symlink_stays_inside(self.dest, rel, target)
        ]
        if escaping:
            for rel in self.symlinks:  # leave no link that leads out, even in a temp dir
                os.unlink(self._path(rel))
            rel, target = escaping[0]
            raise ArchiveError(
                f"{self.archive} has a symlink {rel!r} -> {target!r} that leads outside it"
            )


_TAR_MODES = {
    tarfile.CHRTYPE: stat.S_IFCHR,
    tarfile.BLKTYPE: stat.S_IFBLK,
    tarfile.FIFOTYPE: stat.S_IFIFO,
}


def extract_tar_stream(
    fileobj: BinaryIO,
    dest: Path,
    archive: str = "archive",
    allow_store_links: bool = False,
    limits: Limits | None = None,
) -> None:
    """Extracts a tar read sequentially (compression detected by tarfile: gz, bz2, xz or none).
    With `limits`, a canonical archive (gzip or none), read within them."""
    ex = _Extractor(dest, archive, allow_store_links, limits)
    try:
        if limits is None:
            tar = tarfile.open(fileobj=fileobj, mode="r|*")  # noqa: SIM115 (closed below)
        else:
            canonical = _canonical_stream(fileobj, limits, archive)
            tar = tarfile.open(fileobj=canonical, mode="r|")  # noqa: SIM115 (closed below)
        with tar:
            for member in tar:
                if limits is not None:
                    _check_canonical(member, archive)
                if member.isdir():
                    ex.directory(member.name, bool(member.mode & stat.S_ISVTX))
                elif member.isreg():
                    data = tar.extractfile(member)
                    assert data is not None
                    ex.file(member.name, data, bool(member.mode & 0o111), member.size)
                elif member.issym():
                    ex.symlink(member.name, member.linkname)
                elif member.islnk():
                    ex.hardlink(member.name, member.linkname)
                else:
                    kind = describe_mode(_TAR_MODES.get(member.type, 0))
                    raise ArchiveError(f"{archive} has {member.name!r}, {kind}; refusing it")
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise ArchiveError(f"{archive} is not a readable tar archive ({e})") from None
    ex.finish()


def _canonical_stream(fileobj: BinaryIO, limits: Limits, archive: str) -> IO[bytes]:
    """The uncompressed tar of a canonical blob (gzip or plain), cut at its declared size."""
    head = fileobj.read(2)
    rest = cast(IO[bytes], _Prefixed(head, fileobj))
    raw = gzip.GzipFile(fileobj=rest, mode="rb") if head == b"\x1f\x8b" else rest
    return cast(IO[bytes], _Capped(raw, limits.stream, archive))


class _Prefixed:
    """A stream with bytes already read from it put back in front (its magic number)."""

    def __init__(self, head: bytes, raw: BinaryIO) -> None:
        self.head, self.raw = head, raw

    def read(self, n: int = -1) -> bytes:
        if not self.head:
            return self.raw.read(n)
        if n is None or n < 0:
            data, self.head = self.head + self.raw.read(), b""
            return data
        data, self.head = self.head[:n], self.head[n:]
        return data + (self.raw.read(n - len(data)) if n > len(data) else b"")


def _check_canonical(member: tarfile.TarInfo, archive: str) -> None:
    """Refuses what the canonical archive never writes: a sparse file (a few bytes that
    unpack to gigabytes), a hardlink, a device, or PAX records beyond names and sizes."""
    odd = sorted(set(member.pax_headers) - _CANONICAL_PAX)
    if member.type not in _CANONICAL_TYPES or member.issparse() or odd:
        what = f"PAX records {', '.join(odd)}" if odd else f"type {member.type.decode()!r}"
        raise ArchiveError(
            f"{archive} has {member.name!r} with {what}, which a store path's archive never has"
        )


def extract_zip(path: Path, dest: Path) -> None:
    archive = str(path)
    ex = _Extractor(dest, archive, allow_store_links=False)
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    ex.symlink(info.filename, zf.read(info).decode("utf-8", "strict"))
                elif info.is_dir():
                    ex.directory(info.filename)
                elif stat.S_IFMT(mode) not in (0, stat.S_IFREG):
                    raise ArchiveError(f"{archive} has {info.filename!r}, {describe_mode(mode)}")
                else:
                    with zf.open(info) as data:
                        ex.file(info.filename, data, bool(mode & 0o111))
    except (zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise ArchiveError(f"{archive} is not a readable zip archive ({e})") from None
    ex.finish()


def extract_archive(path: Path, dest: Path) -> str:
    """Extracts the archive at `path` by its contents (not its name); returns the format found."""
    with open(path, "rb") as f:
        magic = f.read(4)
        f.seek(0)
        if magic == _ZIP_MAGIC:
            fmt = "zip"
        elif magic == _ZSTD_MAGIC:
            with zstandard.ZstdDecompressor().stream_reader(f) as reader:
                extract_tar_stream(reader, dest, str(path))
            return "tar.zst"
        else:
            extract_tar_stream(f, dest, str(path))
            return "tar"
    extract_zip(path, dest)
    return fmt

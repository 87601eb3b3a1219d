"""Unpacking: every compression unpacks; every malicious archive is refused, nothing escapes."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from store.errors import ArchiveError
from store.extract import extract_archive


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def entry(
    name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, mode
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return info


GOOD = tar_bytes(
    [
        (entry("pkg", tarfile.DIRTYPE, mode=0o755), b""),
        (entry("pkg/bin/tool", mode=0o755), b"#!/bin/sh\n"),
        (entry("pkg/data.txt"), b"data"),
        (entry("pkg/alias", tarfile.SYMTYPE, "data.txt"), b""),
        (entry("pkg/hard", tarfile.LNKTYPE, "pkg/data.txt"), b""),
    ]
)

COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "tar": lambda b: b,
    "gz": gzip.compress,
    "bz2": bz2.compress,
    "xz": lzma.compress,
    "zst": lambda b: zstandard.ZstdCompressor().compress(b),
}


@pytest.mark.parametrize("fmt", list(COMPRESSORS))
def test_each_compression_unpacks(tmp_path: Path, fmt: str) -> None:
    archive = tmp_path / "a.bin"  # no telling extension: the format is read from the contents
    archive.write_bytes(COMPRESSORS[fmt](GOOD))
    dest = tmp_path / "out"
    extract_archive(archive, dest)
    assert (dest / "pkg/data.txt").read_text() == "data"
    assert os.readlink(dest / "pkg/alias") == "data.txt"
    assert os.stat(dest / "pkg/bin/tool").st_mode & 0o111
    assert os.stat(dest / "pkg/hard").st_ino == os.stat(dest / "pkg/data.txt").st_ino


def test_zip_unpacks_with_modes_and_symlinks(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("pkg/data.txt", "data")
        tool = zipfile.ZipInfo("pkg/tool")
        tool.external_attr = (stat.S_IFREG | 0o755) << 16
        zf.writestr(tool, "#!/bin/sh\n")
        link = zipfile.ZipInfo("pkg/alias")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "data.txt")
    extract_archive(archive, tmp_path / "out")
    assert (tmp_path / "out/pkg/data.txt").read_text() == "data"
    assert os.stat(tmp_path / "out/pkg/tool").st_mode & 0o100
    assert os.readlink(tmp_path / "out/pkg/alias") == "data.txt"


def zip_bytes(entries: list[tuple[str, int, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, mode, data in entries:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            zf.writestr(info, data)
    return buf.getvalue()


MALICIOUS: dict[str, tuple[str, bytes]] = {
    "tar-dotdot": ("gz", tar_bytes([(entry("../evil"), b"x")])),
    "tar-nested-dotdot": ("xz", tar_bytes([(entry("a/../../evil"), b"x")])),
    "tar-absolute": ("bz2", tar_bytes([(entry("/tmp/evil-absolute"), b"x")])),
    "tar-symlink-then-write-through": (
        "zst",
        tar_bytes([(entry("link", tarfile.SYMTYPE, ".."), b""), (entry("link/evil"), b"x")]),
    ),
    "tar-symlink-out": ("tar", tar_bytes([(entry("out", tarfile.SYMTYPE, "../../../etc"), b"")])),
    "tar-symlink-absolute": (
        "tar",
        tar_bytes([(entry("pw", tarfile.SYMTYPE, "/etc/passwd"), b"")]),
    ),
    "tar-symlink-chain": (
        "gz",
        tar_bytes(
            [
                (entry("d", tarfile.DIRTYPE), b""),
                (entry("d/l", tarfile.SYMTYPE, ".."), b""),
                (entry("esc", tarfile.SYMTYPE, "d/l/.."), b""),
            ]
        ),
    ),
    "tar-hardlink-absolute": (
        "tar",
        tar_bytes([(entry("pw", tarfile.LNKTYPE, "/etc/passwd"), b"")]),
    ),
    "tar-hardlink-dotdot": (
        "tar",
        tar_bytes([(entry("h", tarfile.LNKTYPE, "../outside.txt"), b"")]),
    ),
    "tar-char-device": ("tar", tar_bytes([(entry("null", tarfile.CHRTYPE), b"")])),
    "tar-fifo": ("tar", tar_bytes([(entry("pipe", tarfile.FIFOTYPE), b"")])),
    "zip-dotdot": ("tar", zip_bytes([("../evil", stat.S_IFREG | 0o644, b"x")])),
    "zip-absolute": ("tar", zip_bytes([("/tmp/evil-absolute", stat.S_IFREG | 0o644, b"x")])),
    "zip-symlink-out": ("tar", zip_bytes([("l", stat.S_IFLNK | 0o777, b"../../etc")])),
    "zip-symlink-then-write-through": (
        "tar",
        zip_bytes([("l", stat.S_IFLNK | 0o777, b".."), ("l/evil", stat.S_IFREG | 0o644, b"x")]),
    ),
}


@pytest.mark.parametrize("case", list(MALICIOUS))
def test_malicious_archive_is_refused_and_nothing_escapes(tmp_path: Path, case: str) -> None:
    fmt, raw = MALICIOUS[case]
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    (tmp_path / "outside.txt").write_text("outside")
    archive = tmp_path / "evil.archive"
    archive.write_bytes(COMPRESSORS[fmt](raw))
    before = sorted(p.name for p in tmp_path.iterdir())
    dest = sandbox / "a" / "b" / "out"
    with pytest.raises(ArchiveError) as err:
        extract_archive(archive, dest)
    assert str(err.value)  # one sentence naming the problem
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not Path("/tmp/evil-absolute").exists()
    assert not (sandbox / "evil").exists() and not (sandbox / "a" / "evil").exists()
    assert (tmp_path / "outside.txt").read_text() == "outside"
    # Whatever was written stays inside dest, and holds no link that leads out of it.
    for dirpath, dirs, files in os.walk(sandbox):
        for name in dirs + files:
            p = Path(dirpath) / name
            assert p == sandbox / "a" or p.is_relative_to(sandbox / "a")
            if p.is_symlink():
                assert Path(os.path.realpath(p)).is_relative_to(dest)

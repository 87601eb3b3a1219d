"""The canonical archive: same tree, same path; any content change, another path."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import socket
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import blake3
import pytest

from store.archive import (
    NAR_PREFIX,
    WINDOW,
    Entry,
    _copy_large,
    _finish_copy,
    archive_stream,
    hash_tree,
    walk,
)
from store.copying import place
from store.errors import ArchiveError, StoreError
from store.local import Store
from store.placing import Placer
from store.transfer import export_paths, import_paths
from tests.conftest import make_tree

FILES: dict[str, bytes | str] = {
    "predict.py": "print('hi')\n",
    "bin/run": "#!/bin/sh\necho run\n",
    "weights/a.bin": os.urandom(300_000),
    "deep/er/still/x.txt": "x" * 5000,
    "link": "->predict.py",
    "deep/up": "->../bin/run",
    "n" * 150: "long name needs a PAX header",
}


def build_tree(root: Path, order: list[str], umask: int) -> Path:
    old = os.umask(umask)
    try:
        root.mkdir(parents=True)
        (root / "empty").mkdir()
        for rel in order:
            make_tree(root, {rel: FILES[rel]})
        os.chmod(root / "bin/run", 0o700 if umask == 0o077 else 0o755)
    finally:
        os.umask(old)
    return root


def test_same_tree_gives_same_path_whatever_mtimes_owners_umask_and_order(tmp_path: Path) -> None:
    a = build_tree(tmp_path / "a" / "model", list(FILES), 0o022)
    b = build_tree(tmp_path / "b" / "model", list(reversed(FILES)), 0o077)
    for dirpath, dirs, files in os.walk(b):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            os.utime(p, (1_000_000, 1_000_000), follow_symlinks=False)
            os.lchown(p, 1234, 4321)
    os.utime(b / "predict.py", (2_000_000_000, 2_000_000_000))
    s1, s2 = Store(tmp_path / "s1"), Store(tmp_path / "s2")
    p1, p2 = s1.add(a), s2.add(b)
    assert p1 == p2
    assert s1.layer_info(p1).tar_sha256 == s2.layer_info(p2).tar_sha256
    assert s1.info(p1).nar_hash == s2.info(p2).nar_hash


@pytest.mark.parametrize(
    "change",
    ["content", "exec-bit", "symlink-target", "rename", "empty-dir", "hardlink-to-copy-same"],
)
def test_any_content_change_gives_another_path(tmp_path: Path, change: str) -> None:
    base = build_tree(tmp_path / "base" / "model", list(FILES), 0o022)
    other = build_tree(tmp_path / "other" / "model", list(FILES), 0o022)
    if change == "content":
        (other / "deep/er/still/x.txt").write_text("x" * 4999 + "y")
    elif change == "exec-bit":
        os.chmod(other / "predict.py", 0o755)
    elif change == "symlink-target":
        os.unlink(other / "link")
        os.symlink("bin/run", other / "link")
    elif change == "rename":
        os.rename(other / "predict.py", other / "predict2.py")
    elif change == "empty-dir":
        (other / "empty" / "more").mkdir()
    else:
        # A hardlink is stored as a plain copy: same bytes, so the *same* path is expected here.
        os.unlink(other / "weights/a.bin")
        os.link(base / "weights/a.bin", other / "weights/a.bin")
    s = Store(tmp_path / "s")
    if change == "hardlink-to-copy-same":
        assert s.add(base) == s.add(other)
    else:
        assert s.add(base) != s.add(other)


def test_layer_form_is_a_valid_tar_at_the_store_path_and_hashes_match(
    store: Store, tmp_path: Path
) -> None:
    src = build_tree(tmp_path / "model", list(FILES), 0o022)
    path = store.add(src)
    # The layer's size is known at registration; its hash when it is first asked for.
    assert store.info(path).tar_sha256 == ""
    info = store.layer_info(path)
    assert store.info(path) == info
    data = b"".join(archive_stream(store.real_path(path), path.layer_prefix))
    assert len(data) == info.tar_size
    assert hashlib.sha256(data).hexdigest() == info.tar_sha256
    nar = b"".join(archive_stream(store.real_path(path), NAR_PREFIX))
    assert blake3.blake3(nar).hexdigest() == info.nar_hash
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names[:3] == ["cog", "cog/store", f"cog/store/{path.base}"]
        assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" for m in members)
        by_name = {m.name.removeprefix(f"cog/store/{path.base}/"): m for m in members}
        assert by_name["bin/run"].mode == 0o755
        assert by_name["predict.py"].mode == 0o644
        assert by_name["empty"].isdir() and by_name["empty"].mode == 0o755
        assert by_name["link"].issym() and by_name["link"].linkname == "predict.py"
        assert tar.extractfile(by_name["n" * 150]).read() == b"long name needs a PAX header"  # type: ignore[union-attr]
        assert tar.extractfile(by_name["weights/a.bin"]).read() == FILES["weights/a.bin"]  # type: ignore[union-attr]


def test_store_contents_are_read_only(store: Store, tmp_path: Path) -> None:
    path = store.add(build_tree(tmp_path / "m", list(FILES), 0o022))
    real = store.real_path(path)
    assert stat.S_IMODE(os.stat(real).st_mode) == 0o555
    assert stat.S_IMODE(os.stat(real / "predict.py").st_mode) == 0o444
    assert stat.S_IMODE(os.stat(real / "bin/run").st_mode) == 0o555
    assert stat.S_IMODE(os.stat(real / "deep/er").st_mode) == 0o555
    assert stat.S_IMODE(os.stat(real / "empty").st_mode) == 0o555


def test_format_is_stable(store: Store, tmp_path: Path) -> None:
    """The bytes of the archive must not drift between versions of this code or of Python:
    every store path and image digest depends on them. Update only with a builder version bump."""
    src = make_tree(
        tmp_path / "fixed", {"a.txt": "hello\n", "sub/b": "->../a.txt"}, {"a.txt": 0o755}
    )
    path = store.add(src)
    # The same archive written independently by tarfile's own writer.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, mode, data, link in [
            (".", tarfile.DIRTYPE, 0o755, b"", ""),
            ("./a.txt", tarfile.REGTYPE, 0o755, b"hello\n", ""),
            ("./sub", tarfile.DIRTYPE, 0o755, b"", ""),
            ("./sub/b", tarfile.SYMTYPE, 0o777, b"", "../a.txt"),
        ]:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.size, info.linkname = kind, mode, len(data), link
            info.mtime, info.uname, info.gname = 0, "", ""
            tar.addfile(info, io.BytesIO(data) if data else None)
    assert store.info(path).nar_hash == blake3.blake3(buf.getvalue()).hexdigest()
    assert store.info(path).nar_hash == GOLDEN_NAR_HASH


GOLDEN_NAR_HASH = "002f0bd47274b983c802902a19b6034185b8d9b72e6d21f53849fd9015958047"


@pytest.mark.parametrize(
    "kind", ["fifo", "socket", "device", "absolute-link", "escaping-link", "chained-escape"]
)
def test_unstorable_entries_are_rejected(store: Store, tmp_path: Path, kind: str) -> None:
    src = make_tree(tmp_path / "bad", {"ok.txt": "fine", "d/x": "x"})
    if kind == "fifo":
        os.mkfifo(src / "pipe")
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(src / "sock"))
    elif kind == "device":
        os.mknod(src / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    elif kind == "absolute-link":
        os.symlink("/etc/passwd", src / "pw")
    elif kind == "escaping-link":
        os.symlink("../../outside", src / "d/out")
    else:
        os.symlink("..", src / "d/up")  # harmless alone: points at the root
        os.symlink("d/up/..", src / "esc")  # but through it, one level above the root
    with pytest.raises(ArchiveError) as err:
        store.add(src)
    assert str(src) in str(err.value)
    assert store.db.all_paths() == []
    assert list(store.tmp.iterdir()) == []


def test_links_into_the_store_are_allowed_and_become_references(
    store: Store, tmp_path: Path
) -> None:
    dep = store.add(make_tree(tmp_path / "dep", {"lib.so": "lib"}))
    out = make_tree(tmp_path / "out", {"lib": f"->{dep}/lib.so"})
    with store.temp_dir() as tmp:
        import shutil

        shutil.copytree(out, tmp / "tree", symlinks=True)
        from store.paths import StorePath

        target = StorePath.make("output:out", "0" * 64, "thing")
        with store.output_lock(target):
            info = store.install(tmp / "tree", target, scan=[dep])
    assert info.references == (dep,)


def test_sticky_directories_survive_add_export_and_import(store: Store, tmp_path: Path) -> None:
    """A root layer's /tmp must stay world-writable with the sticky bit in the image."""
    src = make_tree(tmp_path / "root", {"tmp/.keep": "", "etc/hosts": "x"})
    os.chmod(src / "tmp", 0o1777)
    path = store.add(src)
    plain = store.add(make_tree(tmp_path / "plain", {"tmp/.keep": "", "etc/hosts": "x"}))
    assert path.hash != plain.hash  # the bit is part of the content
    real = store.real_path(path)
    assert stat.S_IMODE(os.stat(real / "tmp").st_mode) == 0o1555
    data = b"".join(archive_stream(real, path.layer_prefix))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        modes = {m.name.rsplit("/", 1)[-1]: m.mode for m in tar.getmembers() if m.isdir()}
    assert modes["tmp"] == 0o1777 and modes["etc"] == 0o755

    stream = io.BytesIO()
    export_paths(store, [path], stream)
    other = Store(tmp_path / "other-store")
    try:
        stream.seek(0)
        assert import_paths(other, stream) == [path]
        assert other.info(path).nar_hash == store.info(path).nar_hash
        assert stat.S_IMODE(os.stat(other.real_path(path) / "tmp").st_mode) == 0o1555
    finally:
        other.close()


@pytest.fixture
def other_filesystem() -> Iterator[Path]:
    """A directory on tmpfs: the kernel cannot copy from it into the store's ext4 in one call
    (copy_file_range fails with EXDEV), so `add` copies through a buffer instead."""
    where = Path(tempfile.mkdtemp(dir="/dev/shm"))
    yield where
    shutil.rmtree(where)


def test_files_of_every_size_copy_exactly_from_this_or_another_filesystem(
    store: Store, tmp_path: Path, other_filesystem: Path
) -> None:
    # Below, at, and well over the window a second thread copies ahead in (and not a multiple).
    files = {
        "small": os.urandom(100_000),
        "window": os.urandom(WINDOW),
        "big": os.urandom(2 * WINDOW + 4321),
        "empty": b"",
    }
    paths = []
    for root in (tmp_path / "here", other_filesystem / "there"):
        for name, data in files.items():
            (root / "model" / name).parent.mkdir(parents=True, exist_ok=True)
            (root / "model" / name).write_bytes(data)
        paths.append(store.add(root / "model"))
    assert paths[0] == paths[1]
    real = store.real_path(paths[0])
    assert {name: (real / name).read_bytes() for name in files} == files
    nar = b"".join(archive_stream(real, NAR_PREFIX))
    assert store.info(paths[0]).nar_hash == blake3.blake3(nar).hexdigest()


@pytest.mark.parametrize("size", [1000, 2 * WINDOW + 1000])
@pytest.mark.parametrize("change", ["grew", "shrank"])
def test_a_file_that_changes_size_while_it_is_copied_is_refused(
    tmp_path: Path, size: int, change: str
) -> None:
    """The walk saw one size; the copy finds another (the file changed in between)."""
    src = tmp_path / "f"
    src.write_bytes(os.urandom(size))
    seen = size - 10 if change == "grew" else size + 10
    entry = Entry("f", "file", str(src), seen)
    hashed: list[bytes] = []
    with pytest.raises(ArchiveError, match="changed size"):
        if size > WINDOW:
            _copy_large(entry, str(tmp_path / "copy"), hashed.append)
        else:  # as copy_tree does it: placed by the placer, read back by the hashing
            copy = str(tmp_path / "copy")
            _finish_copy(entry, copy, place(entry.path, copy, 0o444, entry.size), hashed.append)
    assert sum(map(len, hashed)) <= min(size, seen)


def test_the_layer_hash_is_refused_for_contents_changed_on_disk(
    store: Store, tmp_path: Path
) -> None:
    """Asked for the first time after the contents changed, the layer hash is not computed
    over them (and then signed and pushed as if they were the path)."""
    path = store.add(make_tree(tmp_path / "m", {"a.txt": "hello\n"}))
    victim = store.real_path(path) / "a.txt"
    os.chmod(victim, 0o644)
    victim.write_text("HELLO\n")
    with pytest.raises(StoreError, match="no longer matches"):
        store.layer_info(path)
    assert store.info(path).tar_sha256 == ""


def many_files(root: Path) -> Path:
    """More files than `Placer.INLINE`, so most are placed by the child process: sizes around
    the block and batch edges, executables, nested directories, symlinks, an empty file."""
    sizes = [0, 1, 511, 512, 513, 4096, 100_001]
    files: dict[str, bytes | str] = {
        f"d{i % 7}/sub{i % 3}/f{i:03d}": os.urandom(sizes[i % len(sizes)]) for i in range(300)
    }
    files["d0/link"] = "->sub0/f000"
    make_tree(root, files, modes={f"d{i % 7}/sub{i % 3}/f{i:03d}": 0o755 for i in range(0, 300, 5)})
    return root


@pytest.fixture
def children(monkeypatch: pytest.MonkeyPatch) -> list[subprocess.Popen[bytes]]:
    """The processes started through `subprocess.Popen` during the test (the placer's child)."""
    started: list[subprocess.Popen[bytes]] = []
    real_popen = subprocess.Popen

    def keep(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        started.append(real_popen(args, **kwargs))
        return started[-1]

    monkeypatch.setattr(subprocess, "Popen", keep)
    return started


def test_a_tree_placed_by_the_child_process_is_the_tree_placed_inline(
    store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    children: list[subprocess.Popen[bytes]],
) -> None:
    """The child places files exactly as this process would: same path, bytes and modes, and
    the nar hash is of the tree (hashed in place, by the threaded hasher, as a cross-check)."""
    tree = many_files(tmp_path / "model")
    by_child = store.add(tree)
    assert [Path(c.args[-1]).name for c in children] == ["copying.py"]  # one, for the tree

    monkeypatch.setattr(Placer, "INLINE", 10**9)
    other = Store(tmp_path / "other-store")
    try:
        assert other.add(tree) == by_child
        assert len(children) == 1  # all inline this time
    finally:
        other.close()
    assert store.info(by_child).nar_hash == hash_tree(tree).nar_hash
    real = store.real_path(by_child)
    for entry in walk(tree):
        copy = real / entry.rel
        if entry.kind == "file":
            assert copy.read_bytes() == Path(entry.path).read_bytes()
            assert stat.S_IMODE(copy.stat().st_mode) == (0o555 if entry.executable else 0o444)
        elif entry.kind == "symlink":
            assert os.readlink(copy) == entry.target


@pytest.mark.parametrize("inline", [0, 10**9], ids=["child", "inline"])
def test_a_failure_is_reported_in_order_and_nothing_after_it_is_placed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inline: int
) -> None:
    monkeypatch.setattr(Placer, "INLINE", inline)
    src = tmp_path / "src"
    src.write_bytes(b"abc")
    out = tmp_path / "out"
    out.mkdir()
    placer = Placer()
    try:
        placer.place(str(src), str(out / "1"), 0o444, 3)
        placer.place(str(tmp_path / "missing"), str(out / "2"), 0o444, 3)
        placer.place(str(src), str(out / "3"), 0o444, 3)
        assert placer.result() == 3
        with pytest.raises(FileNotFoundError) as failed:
            placer.result()
        # Inline, the error is os.open's own; the child's answer has only the errno, and
        # names the file it was placing.
        assert failed.value.filename == str(tmp_path / "missing" if inline else out / "2")
        with pytest.raises(OSError, match="not placed"):
            placer.result()
    finally:
        placer.close()
    assert sorted(os.listdir(out)) == ["1"]
    assert (out / "1").read_bytes() == b"abc"


def test_a_caller_that_fails_midway_leaves_no_child_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, children: list[subprocess.Popen[bytes]]
) -> None:
    """Files placed but never asked for: closing kills the child at once and reaps it."""
    monkeypatch.setattr(Placer, "INLINE", 0)
    src = tmp_path / "src"
    src.write_bytes(os.urandom(1000))
    placer = Placer()
    for i in range(100):
        placer.place(str(src), str(tmp_path / f"c{i}"), 0o444, 1000)
    assert placer.result() == 1000  # the child runs, with 99 answers not asked for
    placer.close()
    assert len(children) == 1 and children[0].returncode is not None

"""Unpacking .debs into root layers, and alternatives, on small .debs made here."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from builders import alternatives
from builders.errors import BuildError
from builders.rootfs import relative_target, unpack_deb
from builders.rootview import merge_view

Member = tuple[str, str, bytes | str]  # (name, kind: file|exe|dir|sym|hard, data or target)


def _tar_gz(members: list[Member]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            if kind in ("file", "exe"):
                data = payload if isinstance(payload, bytes) else payload.encode()
                info.size, info.mode = len(data), 0o755 if kind == "exe" else 0o644
                tar.addfile(info, io.BytesIO(data))
                continue
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, str(payload)
            elif kind == "hard":
                info.type, info.linkname = tarfile.LNKTYPE, str(payload)
            tar.addfile(info)
    return buf.getvalue()


def make_deb(path: Path, name: str, members: list[Member], postinst: str = "") -> Path:
    """A real .deb: an ar archive of debian-binary, control.tar.gz and data.tar.gz."""
    control: list[Member] = [("./control", "file", f"Package: {name}\nVersion: 1.0\n")]
    if postinst:
        control.append(("./postinst", "exe", postinst))
    parts = [
        ("debian-binary", b"2.0\n"),
        ("control.tar.gz", _tar_gz(control)),
        ("data.tar.gz", _tar_gz(members)),
    ]
    out = bytearray(b"!<arch>\n")
    for member, data in parts:
        header = f"{member:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n"
        out += header.encode() + data + (b"\n" if len(data) % 2 else b"")
    path.write_bytes(bytes(out))
    return path


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def say(self, line: str) -> None:
        self.lines.append(line)


def unpack(tmp_path: Path, members: list[Member], postinst: str = "") -> tuple[Path, str, str]:
    tree = tmp_path / "root"
    tree.mkdir(exist_ok=True)
    deb = make_deb(tmp_path / "pkg.deb", "pkg", members, postinst)
    control, script = unpack_deb(deb, tree, Log())  # type: ignore[arg-type]
    return tree, control, script


def test_merged_usr_relative_links_and_hardlinks(tmp_path: Path) -> None:
    tree, control, _ = unpack(
        tmp_path,
        [
            ("./", "dir", ""),
            ("./bin/", "dir", ""),
            ("./bin/tool", "exe", "#!/bin/sh\n"),
            ("./lib/x86_64-linux-gnu/libz.so.1.2", "file", "ELF"),
            ("./lib/x86_64-linux-gnu/libz.so.1", "sym", "libz.so.1.2"),
            ("./usr/share/doc/pkg/copy", "sym", "/usr/share/common-licenses/GPL"),
            ("./usr/bin/tool-link", "hard", "./bin/tool"),
        ],
    )
    assert (tree / "usr/bin/tool").read_text() == "#!/bin/sh\n"
    assert os.access(tree / "usr/bin/tool", os.X_OK)
    assert not (tree / "bin").exists()  # the base layer's `bin -> usr/bin` link stands in
    assert os.readlink(tree / "usr/lib/x86_64-linux-gnu/libz.so.1") == "libz.so.1.2"
    assert os.readlink(tree / "usr/share/doc/pkg/copy") == "../../common-licenses/GPL"
    assert os.path.samefile(tree / "usr/bin/tool-link", tree / "usr/bin/tool")
    assert control.splitlines()[:2] == ["Package: pkg", "Status: install ok installed"]


def test_hostile_paths_stay_inside_the_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    tree, _, _ = unpack(
        tmp_path,
        [
            ("../../outside", "file", "escaped"),
            ("./etc/up", "sym", "../../../../../etc/shadow"),
            ("/abs/file", "file", "rooted"),
        ],
    )
    assert not outside.exists()
    assert (tree / "outside").read_text() == "escaped"  # `..` is clamped at the root
    assert os.readlink(tree / "etc/up") == "shadow"  # relative to etc/, clamped at /
    assert (tree / "abs/file").read_text() == "rooted"


def test_writing_through_a_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    tree = tmp_path / "root"
    tree.mkdir()
    os.symlink(str(tmp_path), tree / "escape")  # as if planted by something else
    deb = make_deb(tmp_path / "evil.deb", "evil", [("./escape/owned", "file", "x")])
    with pytest.raises(BuildError, match="outside its root"):
        unpack_deb(deb, tree, Log())  # type: ignore[arg-type]
    assert not (tmp_path / "owned").exists()


def test_a_broken_deb_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "bad.deb").write_bytes(b"!<arch>\nnot really")
    with pytest.raises(BuildError, match=r"bad\.deb is not a readable \.deb"):
        unpack_deb(tmp_path / "bad.deb", tmp_path, Log())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("link", "target", "expected"),
    [
        ("usr/bin/x", "/usr/bin/y", "y"),
        ("usr/bin/x", "/etc/alternatives/x", "../../etc/alternatives/x"),
        ("x", "../../../y", "y"),
        ("usr/lib/a", "./b", "b"),
        ("etc/x", "/", ".."),
    ],
)
def test_relative_target(link: str, target: str, expected: str) -> None:
    assert relative_target(link, target) == expected


POSTINST_GAWK = """#!/bin/sh
set -e
update-alternatives --quiet --install /usr/bin/awk awk /usr/bin/gawk 10 \\
  --slave /usr/bin/nawk nawk /usr/bin/gawk \\
  --slave /usr/share/man/man1/awk.1.gz awk.1.gz /usr/share/man/man1/gawk.1.gz
update-alternatives --install /usr/bin/x x /usr/bin/$CHOICE 5
"""


def test_alternatives_are_read_from_postinst() -> None:
    found, skipped = alternatives.parse_postinst(POSTINST_GAWK)
    [awk] = found
    assert (awk.name, awk.link, awk.path, awk.priority) == (
        "awk",
        "/usr/bin/awk",
        "/usr/bin/gawk",
        10,
    )
    assert awk.slaves[0] == ("/usr/bin/nawk", "nawk", "/usr/bin/gawk")
    assert len(skipped) == 1 and "shell variables" in skipped[0]


def test_highest_priority_wins_across_layers(tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    (lower / "usr/bin").mkdir(parents=True)
    (lower / "usr/bin/mawk").write_text("mawk")
    mawk = alternatives.Alternative("awk", "/usr/bin/awk", "/usr/bin/mawk", 5, ())
    alternatives.apply(lower, None, [mawk])
    assert os.readlink(lower / "usr/bin/awk") == "../../etc/alternatives/awk"
    assert os.readlink(lower / "etc/alternatives/awk") == "../../usr/bin/mawk"

    upper = tmp_path / "upper"
    (upper / "usr/bin").mkdir(parents=True)
    (upper / "usr/bin/gawk").write_text("gawk")
    gawk, _ = alternatives.parse_postinst(POSTINST_GAWK)
    made = alternatives.apply(upper, lower, gawk)
    assert [a.path for a in made] == ["/usr/bin/gawk"]
    view = merge_view([lower, upper], tmp_path / "view")
    assert (view / "usr/bin/awk").read_text() == "gawk"
    assert (view / "usr/bin/nawk").read_text() == "gawk"
    assert not (view / "usr/share/man/man1/awk.1.gz").is_symlink()  # its file is absent
    record = json.loads((upper / alternatives.RECORD).read_text())
    assert [r["path"] for r in record] == ["/usr/bin/gawk"]

    # A lower priority offered later changes nothing.
    again = tmp_path / "again"
    (again / "usr/bin").mkdir(parents=True)
    (again / "usr/bin/busybox").write_text("bb")
    low = alternatives.Alternative("awk", "/usr/bin/awk", "/usr/bin/busybox", 1, ())
    assert alternatives.apply(again, upper, [low]) == []


def test_merge_view_upper_layers_win(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    (lower / "etc").mkdir(parents=True)
    (lower / "etc/conf").write_text("low")
    (lower / "etc/keep").write_text("keep")
    (lower / "data").write_text("a file below")
    os.symlink("usr/bin", lower / "bin")
    (upper / "etc").mkdir(parents=True)
    (upper / "etc/conf").write_text("high")
    (upper / "data").mkdir()
    (upper / "data/x").write_text("a dir above")
    view = merge_view([lower, upper], tmp_path / "view")
    assert (view / "etc/conf").read_text() == "high"
    assert (view / "etc/keep").read_text() == "keep"
    assert (view / "data/x").read_text() == "a dir above"
    assert os.readlink(view / "bin") == "usr/bin"
    assert (view / "proc").is_dir() and (view / "cog/store").is_dir()
    assert os.path.samefile(view / "etc/keep", lower / "etc/keep")  # linked, not copied

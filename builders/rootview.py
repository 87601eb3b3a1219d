"""One directory that shows stacked root layers as a container would see them.

bubblewrap here has no overlay mounts, so the view is a farm of hard links (symlinks copied
as symlinks): cheap, read-only in use because the sandbox binds it read-only, and built in a
temp dir of the store's filesystem. Later layers win, as in an image: a directory merges
with a directory below it, anything else replaces what was there.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from builders.base import BuildContext, derive
from builders.errors import BuildError
from derivations.model import Derivation

# Mount points a sandbox or container runtime expects to find.
MOUNT_POINTS = ("proc", "dev", "sys", "tmp", "run", "cog/store", "src", "build")


# Files a run binds over (/etc/hosts, /etc/resolv.conf), as Docker's init layer has them.
NETWORK_FILES = ("etc/hosts", "etc/resolv.conf")


def add_mount_points(root: Path) -> None:
    """Empty files where a run binds its network files, replacing what a layer had there."""
    for rel in NETWORK_FILES:
        write_fresh(root, rel, b"")


def write_fresh(root: Path, rel: str, data: bytes) -> None:
    """`root/rel` as a new file of `data`, replacing what was there: never written through a
    link or a hard link into the store, and its folder (made if missing) a real directory."""
    folder = (root / rel).parent
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        where = folder.relative_to(root)
        raise BuildError(f"the tree at {root} has an /{where} that is not a directory")
    folder.mkdir(parents=True, exist_ok=True)
    target = root / rel
    if os.path.lexists(target):
        target.unlink()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _clear(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _link(src: str, dst: str) -> None:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        shutil.copy2(src, dst, follow_symlinks=False)


def merge_tree(layer: Path, dest: Path) -> None:
    """Stacks the tree `layer` on the directory `dest` as a later layer, with hard links."""
    root = str(layer)
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        target_dir = os.path.join(dest, rel) if rel != "." else str(dest)
        for name in sorted(dirnames):
            src, dst = os.path.join(dirpath, name), os.path.join(target_dir, name)
            if os.path.islink(src):
                _clear(dst)
                os.symlink(os.readlink(src), dst)
            elif not (os.path.isdir(dst) and not os.path.islink(dst)):
                _clear(dst)
                os.mkdir(dst)
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
        for name in sorted(filenames):
            src, dst = os.path.join(dirpath, name), os.path.join(target_dir, name)
            _clear(dst)
            if os.path.islink(src):
                os.symlink(os.readlink(src), dst)
            else:
                _link(src, dst)


def merge_view(layers: Sequence[Path], dest: Path) -> Path:
    """Builds the merged tree of `layers` (lowest first) at `dest`, which must not exist."""
    dest.mkdir()
    for layer in layers:
        merge_tree(layer, dest)
    for point in MOUNT_POINTS:
        path = dest / point
        if not path.exists() and not path.is_symlink():
            path.mkdir(parents=True)
    return dest


def view_derivation(name: str, layers: Sequence[Derivation]) -> Derivation:
    """The merged view of root layers as a store path of its own (hard links: no extra
    space), for builders that run a program of the layers, such as the interpreter."""
    return derive(
        ViewBuilder, name, inputs={f"layer-{i:02d}": d.dep() for i, d in enumerate(layers)}
    )


class ViewBuilder:
    kind = "rootview"
    version = "1"
    runs_foreign_code = False

    def build(self, ctx: BuildContext) -> None:
        roles = sorted(r for r in ctx.inputs if r.startswith("layer-"))
        merge_view([ctx.inputs[r] for r in roles], ctx.out)

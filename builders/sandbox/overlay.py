"""A writable root over read-only layers: an overlay mount made for one sandboxed command.

bubblewrap 0.8 mounts no overlays, so the command runs behind a prefix that mounts one in a
private mount namespace (`unshare --mount`, with a user namespace that maps us to root unless
we are root) and then execs the rest of the command line:

    unshare … /bin/sh -c 'mount -t overlay …; exec "$@"' sh OPTIONS MERGED bwrap … --bind MERGED /

`unshare` execs `sh`, which execs the command: it keeps the process id it was started with, so
its parent, the signals sent to it or its process group, bwrap's `--die-with-parent` and its
exit status are those of the command alone. The mount goes with the namespace when the command
ends. The lower layers are read-only to the kernel: what the command writes lands in the upper
directory (a copy-up of a lower file, never a write through it), which its owner removes.

A directory can be made writable the same way (`writable_dir`): a build shows the model's code
at /src so, as Cog's image has it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from builders.rootview import merge_tree

_works: dict[int, bool] = {}  # per filesystem (st_dev) of the scratch directories

# Characters the overlay's mount options cannot hold in a path (separators, escapes).
_UNNAMEABLE = ",:\\"

_MOUNT = (  # a failure says so on stderr (a build step's log), with exit status 125
    'mount -t overlay overlay -o "$1" "$2" || { echo "cog: cannot mount the overlay"; exit 125; }\n'
    'shift 2\nexec "$@"'
)


def _unshare() -> list[str]:
    """A private mount namespace for the overlay; a user namespace too unless we are root."""
    exe = shutil.which("unshare")
    if exe is None:
        return []
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    return [exe, *user, "--mount", "--propagation", "private"]


def overlay_prefix(lowers: Sequence[Path], upper: Path, work: Path, merged: Path) -> list[str]:
    """A command prefix that mounts the overlay of `lowers` (lowest first; overlayfs wants the
    lowest last in `lowerdir`) with `upper` and `work` at `merged`, in a private mount
    namespace, then execs the rest of the command line."""
    options = (
        f"lowerdir={':'.join(str(p) for p in reversed(lowers))},upperdir={upper},workdir={work}"
    )
    return [*_unshare(), "/bin/sh", "-c", _MOUNT, "sh", options, str(merged)]


def overlay_works(scratch_parent: Path) -> bool:
    """Whether an overlay whose upper directory is under `scratch_parent` can be mounted here
    (probed once per process and filesystem)."""
    device = os.stat(scratch_parent).st_dev
    if device not in _works:
        ok = bool(_unshare()) and shutil.which("mount") is not None
        if ok:
            with tempfile.TemporaryDirectory(dir=scratch_parent) as tmp:
                dirs = [Path(tmp) / d for d in ("lower", "upper", "work", "merged")]
                for d in dirs:
                    d.mkdir()
                probe = subprocess.run(
                    [*overlay_prefix([dirs[0]], *dirs[1:]), "true"],
                    capture_output=True,
                    timeout=30,
                    check=False,
                )
                ok = probe.returncode == 0
        _works[device] = ok
    return _works[device]


@dataclass(frozen=True)
class Overlay:
    """An overlay ready to be mounted: `prefix` mounts it at `merged` and runs the command
    that follows it; what the command writes is in `upper`."""

    prefix: list[str]
    upper: Path
    merged: Path


def writable_root(lowers: Sequence[Path], scratch: Path) -> Overlay | None:
    """An overlay of `lowers` (lowest first) whose upper, work and mount directories are made
    in `scratch` (made if missing); None where overlays cannot be mounted here or a path
    cannot be named in the mount's options. Removing `scratch` afterwards is the caller's."""
    scratch.mkdir(parents=True, exist_ok=True)
    upper, work, merged = scratch / "upper", scratch / "work", scratch / "merged"
    if any(c in str(p) for p in [*lowers, upper, work, merged] for c in _UNNAMEABLE):
        return None
    if not overlay_works(scratch):
        return None
    for d in (upper, work, merged):
        d.mkdir()
    return Overlay(overlay_prefix(lowers, upper, work, merged), upper, merged)


def writable_over(directory: Path, target: str) -> list[str]:
    """bwrap arguments for `target` holding what `directory` holds, read-only, in a writable
    tmpfs: new files can be made there (not in its folders), and a store path (which cannot
    gain mount points) can be shown at a place that will."""
    argv = ["--tmpfs", target]
    for entry in sorted(directory.iterdir()):
        argv += ["--ro-bind", str(entry), f"{target}/{entry.name}"]
    return argv


def writable_dir(lowers: Sequence[Path], target: str, scratch: Path) -> tuple[list[str], list[str]]:
    """`target` in a sandbox holding the trees `lowers` stacked (lowest first) and writable,
    what is written there landing in `scratch` (made here; removed by the caller): an overlay,
    or where overlays cannot be mounted here, the trees' hard links shown read-only in a tmpfs
    (writable_over). Returns the command prefix that mounts it and bwrap's arguments."""
    overlay = writable_root(lowers, scratch)
    if overlay is not None:
        return overlay.prefix, ["--bind", str(overlay.merged), target]
    view = scratch / "view"
    view.mkdir()
    for lower in lowers:
        merge_tree(lower, view)
    return [], writable_over(view, target)

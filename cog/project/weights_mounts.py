"""The managed weights a run sees, read-only at their targets.

Each weight becomes a per-run folder of hard links to its files in the store, under the
project's `.cog/mounts/` (removed when the run ends; a killed run's is removed by the next), bound
read-only at its target. Where the store is on another file system than the project, each file
of the store is bound at its place instead. A link or a bind holds the file itself, so a gc
during the run takes nothing from under it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from pathlib import Path

from cog.project.weights_cache import keep, locate
from cog.project.weights_sources import WeightsError, managed_weights
from derivations.config import CogConfig
from derivations.weights_lock import LOCK_NAME, LockEntry, load_lock
from store.local import Store
from store.locks import FileLock, remove_tree, stale_temp_dirs


class Mounts:
    """The weights a run sees: (host path, target) read-only binds, and the per-run folder
    of hard links under `.cog/mounts/` that `release` removes."""

    def __init__(self) -> None:
        self.binds: list[tuple[Path, str]] = []
        self.root: Path | None = None
        self.lock: FileLock | None = None  # `<root>.lock`, held while the run lasts

    def release(self) -> None:
        root, self.root = self.root, None
        lock, self.lock = self.lock, None
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
        if lock is not None:
            lock.path.unlink(missing_ok=True)
            lock.release()
        if root is not None:
            with contextlib.suppress(OSError):  # .cog/mounts, when no other run uses it
                root.parent.rmdir()


def prepare_mounts(project: Path, config: CogConfig, store: Store | None = None) -> Mounts:
    """Each managed weight of cog.yaml, assembled from the store for one run; a weight that
    is not in weights.lock, or not wholly in the store, is an error naming what to run.
    (`store` defaults to the one cog uses, $COG_STORE_DIR.)"""
    mounts = Mounts()
    weights = managed_weights(config)
    if not weights:
        return mounts
    lock = load_lock(project / LOCK_NAME)
    entries = []
    for weight in weights:
        entry = lock.find(weight.name or "")
        if entry is None:
            raise WeightsError(
                f"weight {weight.name!r} is in cog.yaml but not in {LOCK_NAME}",
                hint="run 'cog weights import'",
            )
        if entry.target != weight.target:
            raise WeightsError(
                f"weight {weight.name!r} has the target {weight.target} in cog.yaml but "
                f"{entry.target} in {LOCK_NAME}",
                hint="run 'cog weights import'",
            )
        entries.append(entry)
    store = store if store is not None else Store()
    with store.writing():  # found, rooted and linked with no gc in between
        files = {}
        for entry in entries:
            for f in entry.files:
                real = locate(store, f.digest, f.size)
                if real is None:
                    raise WeightsError(
                        f"weight {entry.name!r} is not fully cached locally (missing {f.path})",
                        hint="run 'cog weights pull' first",
                    )
                files[f.digest] = real
        keep(store, project, lock.weights)
        _open_run_folder(project, mounts)
        try:
            for entry in entries:
                mounts.binds += _assemble(entry, mounts, files)
        except BaseException:
            mounts.release()
            raise
    return mounts


def _open_run_folder(project: Path, mounts: Mounts) -> None:
    dotcog = project / ".cog"
    for folder in (dotcog, dotcog / "mounts"):
        if folder.is_symlink():
            raise WeightsError(f"{folder} is a link; cog will not write through it")
    (dotcog / "mounts").mkdir(parents=True, exist_ok=True)
    for leftover in stale_temp_dirs(dotcog / "mounts"):  # of runs that were killed
        remove_tree(leftover)
    root = dotcog / "mounts" / secrets.token_hex(8)
    mounts.lock = FileLock(root.with_name(f"{root.name}.lock"))
    mounts.lock.acquire()
    root.mkdir()
    mounts.root = root


def _safe_join(base: Path, rel: str) -> Path:
    joined = Path(os.path.normpath(base / rel))
    if joined == base or not joined.is_relative_to(base) or rel.startswith("/"):
        raise WeightsError(f"{LOCK_NAME} names a path {rel!r} outside its weight folder")
    return joined


def _assemble(entry: LockEntry, mounts: Mounts, files: dict[str, Path]) -> list[tuple[Path, str]]:
    """Hard links to the stored files in `<run folder>/<name>`, bound at the target as one
    folder; where the store is on another file system, each stored file is bound by itself."""
    assert mounts.root is not None
    folder = _safe_join(mounts.root, entry.name)
    places = [(f, _safe_join(folder, f.path)) for f in entry.files]  # all checked, first
    folder.mkdir(parents=True)
    try:
        for f, destination in places:
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.link(files[f.digest], destination)
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        shutil.rmtree(folder, ignore_errors=True)
        target = entry.target.rstrip("/")
        return [(files[f.digest], f"{target}/{f.path}") for f in entry.files]
    return [(folder, entry.target)]

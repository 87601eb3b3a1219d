"""Verification: every valid path is present and hashes to what was registered, and a
content-addressed one still hashes to what its name says (what was registered may itself be
a lie: a path installed from elsewhere with other bytes under a content-addressed name)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from store.archive import hash_tree
from store.db import PathInfo
from store.errors import StoreError
from store.gc import leftovers
from store.local import Store
from store.locks import FileLock, remove_tree
from store.paths import StorePath
from store.signing import address_problem, content_problem


@dataclass
class VerifyReport:
    checked: int = 0
    corrupt: dict[StorePath, str] = field(default_factory=dict)  # path -> what is wrong
    leftovers: list[Path] = field(default_factory=list)
    removed: list[PathInfo] = field(default_factory=list)  # with --repair, as they were

    @property
    def clean(self) -> bool:
        return not self.corrupt


def _problem(store: Store, path: StorePath) -> str | None:
    info = store.info(path)
    real = store.real_path(path)
    if not real.exists() and not real.is_symlink():
        return "missing from disk"
    try:
        digest = hash_tree(real, path.layer_prefix)
    except (StoreError, OSError) as e:
        return f"unreadable ({e})"
    layer_changed = info.tar_sha256 and digest.tar_sha256 != info.tar_sha256  # "": not yet hashed
    if digest.nar_hash != info.nar_hash or layer_changed or digest.tar_size != info.tar_size:
        return f"contents changed (nar hash {digest.nar_hash}, registered {info.nar_hash})"
    try:
        problem = address_problem(info) or content_problem(info, real, digest.nar_hash)
    except OSError as e:
        return f"unreadable ({e.strerror})"
    return None if problem is None else f"not what its name says: {problem}"


def verify_store(store: Store, repair: bool = False) -> VerifyReport:
    """Re-hashes every valid path; with `repair`, removes corrupt paths, what refers to them
    (their closure would be broken) and leftovers, so they can be rebuilt or fetched again."""
    with FileLock(store.meta / "gc.lock", shared=not repair):
        report = VerifyReport()
        for path in store.db.all_paths():
            report.checked += 1
            problem = _problem(store, path)
            if problem is not None:
                report.corrupt[path] = problem
        report.leftovers = leftovers(store)
        if repair:
            doomed: list[StorePath] = []
            todo = list(report.corrupt)
            while todo:
                p = todo.pop()
                if p not in doomed:
                    doomed.append(p)
                    todo.extend(store.db.referrers(p))
            report.removed = [store.info(p) for p in sorted(doomed)]
            store.db.unregister(doomed)
            for p in doomed:
                remove_tree(store.real_path(p))
            for left in report.leftovers:
                remove_tree(left)
        return report

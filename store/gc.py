"""Garbage collection: delete every path that no GC root reaches, and every leftover."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from store.local import Store
from store.locks import FileLock, remove_tree, stale_temp_dirs
from store.paths import StorePath


@dataclass
class GCResult:
    dead: list[StorePath] = field(default_factory=list)  # valid paths no root reaches
    leftovers: list[Path] = field(default_factory=list)  # unregistered entries, stale temp dirs
    stale_roots: list[Path] = field(default_factory=list)
    freed_bytes: int = 0


def disk_usage(path: Path) -> int:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0
    total = st.st_size if not os.path.isdir(path) or os.path.islink(path) else 0
    if os.path.isdir(path) and not os.path.islink(path):
        for dirpath, dirs, files in os.walk(path):
            for name in files + dirs:
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def leftovers(store: Store) -> list[Path]:
    """Entries that look like store paths but are not valid, and temp dirs whose owner died."""
    valid = {p.base for p in store.db.all_paths()}
    found = [
        store.root / name
        for name in sorted(os.listdir(store.root))
        if name not in (".cog", "gcroots") and name not in valid
    ]
    return found + stale_temp_dirs(store.tmp)


def collect_garbage(store: Store, dry_run: bool = False) -> GCResult:
    with FileLock(store.meta / "gc.lock"):
        roots = store.roots()
        live = set(store.closure(p for _, p in roots if p is not None))
        result = GCResult(
            dead=[p for p in store.db.all_paths() if p not in live],
            leftovers=leftovers(store),
            stale_roots=[link for link, p in roots if p is None],
        )
        result.freed_bytes = sum(disk_usage(store.real_path(p)) for p in result.dead) + sum(
            disk_usage(p) for p in result.leftovers
        )
        if dry_run:
            return result
        # Unregister first: a crash after this leaves only leftovers, never a valid partial path.
        store.db.unregister(result.dead)
        for path in result.dead:
            remove_tree(store.real_path(path))
        for left in result.leftovers:
            remove_tree(left)
        for link in result.stale_roots:
            link.unlink(missing_ok=True)
        derivers = store.db.derivers()
        for log in store.logs.iterdir():
            if f"/cog/store/{log.stem}" not in derivers:
                log.unlink(missing_ok=True)
        return result

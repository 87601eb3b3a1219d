"""Where a project's weight files are: the store, kept alive by a root the project holds.

Each file is a weight path of the store (`store.weight_files`). What the project's weights.lock
names stays alive through one indirect GC root, `.cog/roots/weights.lock`, pointing at a small
text path whose references are those files: `cog store gc` keeps them while the project keeps
the link, and collects them once the project is gone or its lock names other files. The root is
made under the store's writing lock, in the same hold as the files' check or addition, so a gc
running meanwhile never removes a file between the two.

Before the store held them, weight files lived in a cache of their own,
`$COG_CACHE_DIR/weights/files/sha256/<ab>/<hex>` (else under `$XDG_CACHE_HOME/cog` or
`~/.cache/cog`). That layout matters for one thing: the gigabytes a machine cached there before
it upgraded. A file the store lacks is taken from there (read, checked against its digest,
added), never downloaded again; nothing is written there any more.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from derivations.weights_lock import LOCK_NAME, LockEntry
from store.errors import StoreError
from store.local import Store
from store.paths import StorePath
from store.weight_files import add_file, stored, weight_path

ROOT = Path(".cog") / "roots" / LOCK_NAME  # relative to the project


def legacy_file(digest: str) -> Path:
    """Where the cache before the store kept the file of `digest`."""
    if os.environ.get("COG_CACHE_DIR"):
        root = Path(os.environ["COG_CACHE_DIR"]) / "weights"
    elif os.environ.get("XDG_CACHE_HOME"):
        root = Path(os.environ["XDG_CACHE_HOME"]) / "cog" / "weights"
    else:
        root = Path.home() / ".cache" / "cog" / "weights"
    hexdigest = digest.partition(":")[2]
    return root / "files" / "sha256" / hexdigest[:2] / hexdigest


def locate(store: Store, digest: str, size: int) -> Path | None:
    """The file of `digest` in the store, taken in from the old cache if it is only there;
    None where neither has it. Call it holding `store.writing()`, and root what it finds."""
    found = stored(store, digest)
    if found is not None:
        return found
    old = legacy_file(digest)
    try:
        if not old.is_file() or old.stat().st_size != size:
            return None
        return store.real_path(add_file(store, old, size, digest))
    except (OSError, StoreError):  # unreadable, or not what it says: fetched again instead
        return None


def keep(store: Store, project: Path, entries: Iterable[LockEntry]) -> None:
    """Points the project's root at the files of `entries` the store holds (the ones it
    lacks are left out: a pull roots them as they arrive). Call it holding `store.writing()`."""
    files: dict[str, dict[str, str]] = {}
    references: set[StorePath] = set()
    for entry in entries:
        for f in entry.files:
            path = weight_path(f.digest)
            if store.is_valid(path):
                files.setdefault(entry.name, {})[f.path] = str(path)
                references.add(path)
    text = json.dumps({"weights": files}, sort_keys=True, indent=1, ensure_ascii=False) + "\n"
    link = project / ROOT
    for folder in (link.parent.parent, link.parent):
        if folder.is_symlink():
            raise StoreError(
                f"{folder} is a link; cog will not write through it",
                hint=f"remove the link ({folder}), cog recreates it as a directory",
            )
    store.add_indirect_root(link, store.add_text(LOCK_NAME, text, references))

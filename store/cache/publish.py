"""Publishing: the entries of local paths, signed, and their closure copied to a cache.

What is published is checked the other way round from what is fetched: a path's blob, made here
or found already made (an image layer), must come from the bytes the path registered before its
entry is signed; a path changed on disk since is refused, never signed or shipped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from store.archive import archive_stream, hash_tree
from store.cache.entry import CacheError, Entry
from store.compress import LAYER_GZIP, CompressedBlob
from store.db import PathInfo
from store.errors import StoreError
from store.local import Store
from store.paths import StorePath
from store.signing import SigningKey, path_fingerprint

LAYER_OUTPUT = "oci-layer"  # the name of the paths that hold an image layer

# --- making entries ------------------------------------------------------------------------------


# A path's blob made already: its own image layer, or the root layer that holds it at `/`.
BlobFinder = Callable[[StorePath], Path | None]


def entry_for(
    store: Store,
    path: StorePath,
    work: Path,
    key: SigningKey | None,
    find_blob: BlobFinder = lambda _: None,
) -> tuple[Entry, Path]:
    """The entry for a local path and the file holding its blob: `find_blob`'s (an image
    layer of that path alone, already compressed), else one made in `work`. Whichever it is,
    the blob is checked to come from the bytes the path registered before the entry is
    signed: a path changed on disk since is refused, never signed or shipped."""
    info = replace(store.layer_info(path), registered_at=0)
    entry, blob = _unsigned_entry(store, path, info, work, find_blob)
    if key is not None and info.ca is None:
        made = {key.sign(path_fingerprint(info)), key.sign(entry.fingerprint())}
        signed = replace(info, signatures=tuple(sorted({*info.signatures, *made})))
        entry = replace(entry, info=signed)
    return entry, blob


def _unsigned_entry(
    store: Store, path: StorePath, info: PathInfo, work: Path, find_blob: BlobFinder
) -> tuple[Entry, Path]:
    tree = store.real_path(path)
    if path.name == LAYER_OUTPUT and (tree / "blob").is_file():
        _check_registered(store, path, info)  # the blob is the path's own file
        descriptor = (tree / "descriptor.json").read_text()
        found = json.loads(descriptor)
        blob = {k: found[k] for k in ("mediaType", "digest", "size")}
        return Entry(info, "blob", blob, found["diff_id"], descriptor), tree / "blob"
    made = _found_blob(store, find_blob(path))
    if made is not None:
        found = json.loads((made.parent / "descriptor.json").read_text())
        blob = {k: found[k] for k in ("mediaType", "digest", "size")}
        if found["mediaType"] == LAYER_GZIP:
            # The path's own layer, or a root layer (the same tree at /): either way a layer
            # path's blob as it registered it, whose diff_id must be of this path's bytes.
            if found["diff_id"] == f"sha256:{info.tar_sha256}":
                return Entry(info, "layer", blob, found["diff_id"]), made
            _check_registered(store, path, info)
            if _root_layer_digest(tree) == found["diff_id"]:
                return Entry(info, "tree", blob, found["diff_id"]), made
    target = work / f"{path.hash}.blob"
    with CompressedBlob(target, "gzip") as writer:
        for chunk in archive_stream(tree, path.layer_prefix):
            writer.feed(chunk)
        digest, size, diff_id = writer.finish()
    if diff_id != f"sha256:{info.tar_sha256}":
        raise _changed(path)
    blob = {"mediaType": LAYER_GZIP, "digest": digest, "size": size}
    return Entry(info, "layer", blob, diff_id), target


def _found_blob(store: Store, made: Path | None) -> Path | None:
    """A blob `find_blob` found, if it is the blob of a layer path that still holds the bytes
    it registered (its descriptor included); None otherwise."""
    if made is None or made.name != "blob":
        return None
    try:
        holder = store.parse(str(made.parent))
    except StoreError:
        return None
    if store.real_path(holder) != made.parent or not store.is_valid(holder):
        return None
    _check_registered(store, holder, store.info(holder))
    return made


def _check_registered(store: Store, path: StorePath, info: PathInfo) -> None:
    """Refuses a path whose bytes on disk are no longer what it registered."""
    digest = hash_tree(store.real_path(path), path.layer_prefix)
    layer_changed = info.tar_sha256 and digest.tar_sha256 != info.tar_sha256
    if digest.nar_hash != info.nar_hash or layer_changed or digest.tar_size != info.tar_size:
        raise _changed(path)


def _root_layer_digest(tree: Path) -> str:
    """The diff_id of the tree as a root layer (at `/`)."""
    digest = hashlib.sha256()
    for chunk in archive_stream(tree, ""):
        digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def _changed(path: StorePath) -> CacheError:
    return CacheError(
        f"{path} no longer matches its registered hash, so it is not published",
        hint="run `cog store verify --repair`",
    )


# --- publishing ----------------------------------------------------------------------------------


@dataclass
class Published:
    uploaded: list[StorePath] = field(default_factory=list)
    present: list[StorePath] = field(default_factory=list)


def publish(
    store: Store,
    cache: Any,
    paths: Iterable[StorePath],
    key: SigningKey | None,
    jobs: int = 4,
    say: Callable[[str], None] = lambda _: None,
    find_blob: BlobFinder = lambda _: None,
    present: Iterable[StorePath] = (),
) -> Published:
    """Copies the closure of `paths` to `cache`, skipping what it holds; a path's entry is
    written only after its references' entries, so a reader never finds a path whose closure
    is not there."""
    closure = store.closure(paths)
    known = set(present)
    result = Published()
    futures: dict[StorePath, Future[None]] = {}
    with store.temp_dir("publish-") as work, ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:

        def send(path: StorePath) -> None:
            for ref in store.info(path).references:
                if ref != path:
                    futures[ref].result()
            if path in known or cache.lookup(path) is not None:
                result.present.append(path)
                return
            entry, blob = entry_for(store, path, work, key, find_blob)
            try:
                cache.upload(entry, blob)
            finally:
                if blob.parent == work:
                    blob.unlink(missing_ok=True)
            result.uploaded.append(path)
            say(f"cached {path}")

        # Submitted in closure order: a task only waits for tasks submitted before it.
        for path in closure:
            futures[path] = pool.submit(send, path)
        for future in futures.values():
            future.result()
    return result

"""Substituting: store paths found in caches (first cache first) and installed, checked, locally.

Nothing from a cache is trusted before it is checked: the entry's form first, then the entry by
a trusted signature or its content address (`store.cache.trust`), its blob by its digest and
declared size as it arrives, its unpacking by the sizes the entry declares, and the unpacked
tree by the entry's hashes and references, and a content-addressed one by its name, before it
is registered.
"""

from __future__ import annotations

import shutil
import threading
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from store.cache.entry import CacheError, Entry, unpack
from store.cache.trust import trust_problem
from store.db import PathInfo
from store.errors import RegistryError, StoreError
from store.local import Store
from store.paths import StorePath, closure_order
from store.signing import TrustedKeys, content_problem


@dataclass
class Substituter:
    """Finds store paths in caches (first cache first) and installs them, checked, into a
    local store. Lookups are remembered; a cache that cannot be reached is left out for the
    rest of the run, with one line saying so."""

    caches: list[Any]  # Cache
    keys: TrustedKeys
    say: Callable[[str], None] = lambda _: None
    jobs: int = 16
    found: dict[StorePath, tuple[Any, Entry]] = field(default_factory=dict)
    missing: set[StorePath] = field(default_factory=set)
    expected_ca: dict[StorePath, str] = field(default_factory=dict)
    # What a refusal line ends with: a build falls back to building; `cog store copy` does not.
    fallback: str = "; building instead"
    downloaded: int = 0  # blob bytes fetched
    _said: set[str] = field(default_factory=set)
    _down: set[str] = field(default_factory=set)
    _kept: dict[str, Path] = field(default_factory=dict)  # blob digest -> a local copy
    _kept_in: Path | None = None
    _stack: ExitStack = field(default_factory=ExitStack)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _probed: bool = False

    def held_by(self, cache: Any) -> set[StorePath]:
        """The paths this substituter found in `cache` (so publishing need not ask again)."""
        return {p for p, (c, _) in self.found.items() if c is cache}

    def _once(self, key: str, line: str) -> None:
        if key not in self._said:
            self._said.add(key)
            self.say(line)

    def _lookup(self, path: StorePath) -> tuple[Any, Entry] | None:
        for cache in self.caches:
            if cache.url in self._down:
                continue
            try:
                entry = cache.lookup(path)
            except RegistryError as e:
                self._down.add(cache.url)
                self._once(f"down {cache.url}", f"cache {cache.url} is left out: {e}")
                continue
            except CacheError as e:
                self._once(f"bad {cache.url}", f"cache {cache.url}: {e}{self.fallback}")
                continue
            if entry is None:
                continue
            problem = trust_problem(entry, self.keys, self.expected_ca.get(path))
            if problem is not None:
                hint = " (COG_TRUSTED_KEYS names the keys to trust)" if "sign" in problem else ""
                self._once(
                    f"trust {cache.url} {problem}",
                    f"cache {cache.url}: {path} is not used because {problem}{hint}{self.fallback}",
                )
                continue
            return cache, entry
        return None

    def query(self, paths: Iterable[StorePath]) -> set[StorePath]:
        """Which of `paths` some cache holds, trusted (looked up in parallel, once each)."""
        paths = list(paths)
        todo = [p for p in dict.fromkeys(paths) if p not in self.found and p not in self.missing]
        if todo and self.caches and not self._probed:
            # One lookup alone first: a cache that cannot be reached is then left out after
            # one failed request, not after one per path in flight.
            self._probed = True
            first = todo.pop(0)
            hit = self._lookup(first)
            if hit is None:
                self.missing.add(first)
            else:
                self.found[first] = hit
        if todo and self.caches:
            with ThreadPoolExecutor(max_workers=self.jobs) as pool:
                for path, hit in zip(todo, pool.map(self._lookup, todo), strict=True):
                    if hit is None:
                        self.missing.add(path)
                    else:
                        self.found[path] = hit
        return {p for p in paths if p in self.found}

    def closure(self, paths: Iterable[StorePath], store: Store) -> list[StorePath] | None:
        """The closure of `paths` as far as it is not valid locally, each path after its
        references, all in caches; None when some path of it is in no cache."""
        seen: set[StorePath] = set()
        frontier = [p for p in paths if not store.is_valid(p)]
        while frontier:
            self.query(frontier)
            nxt = []
            for path in frontier:
                if path in seen:
                    continue
                if path not in self.found:
                    return None
                seen.add(path)
                refs = self.found[path][1].info.references
                nxt += [r for r in refs if r != path and r not in seen and not store.is_valid(r)]
            frontier = nxt
        return closure_order(
            sorted(seen), lambda p: (r for r in self.found[p][1].info.references if r in seen)
        )

    def info(self, path: StorePath) -> PathInfo | None:
        hit = self.found.get(path)
        return hit[1].info if hit else None

    def fetch(self, store: Store, path: StorePath) -> bool:
        """Installs `path` and what it refers to from the caches; False (with one line
        saying why) when that cannot be done, and then nothing unchecked was registered."""
        order = self.closure([path], store)
        if order is None:
            return False
        for item in order:
            cache, entry = self.found[item]
            try:
                self._install(store, cache, entry)
            except (StoreError, OSError) as e:
                self.found.pop(item, None)
                self.missing.add(item)
                self.say(f"cache {cache.url}: {item} is refused: {e}{self.fallback}")
                return False
        return True

    def _install(self, store: Store, cache: Any, entry: Entry) -> None:
        path = entry.path
        with store.writing(), store.output_lock(path):
            if store.is_valid(path):
                return
            with store.temp_dir("substitute-") as tmp:
                blob = tmp / "blob"
                digest = entry.blob["digest"]
                local = self._kept.get(digest)
                if local is not None and local.is_file():  # the same bytes came for another path
                    shutil.copyfile(local, blob)
                else:
                    cache.download(entry, blob)
                    self.downloaded += blob.stat().st_size
                    if entry.form != "blob":  # (a blob-form path keeps its blob in the store)
                        kept = self._keep_dir(store) / digest.split(":")[1]
                        shutil.copyfile(blob, kept)
                        self._kept[digest] = kept
                tree = unpack(entry, blob, tmp / "tree")
                # A content-addressed path's bytes must be what its name says, whatever else
                # the entry claims (its nar hash, checked by install, is tied to the name here).
                problem = content_problem(entry.info, tree, entry.info.nar_hash)
                if problem is not None:
                    raise CacheError(problem)
                store.install(
                    tree,
                    path,
                    scan=entry.info.references,
                    deriver=entry.info.deriver,
                    ca=entry.info.ca,
                    expect_nar=entry.info.nar_hash,
                    expect_tar=entry.info.tar_sha256,
                    expect_references=entry.info.references,
                    signatures=entry.info.signatures,
                )
            if entry.form == "blob":
                self._kept[entry.blob["digest"]] = store.real_path(path) / "blob"

    def _keep_dir(self, store: Store) -> Path:
        """Where blobs fetched in this run are kept, so that two paths with the same blob (a
        store path and its image layer) cost one download; removed when the substituter goes."""
        with self._lock:
            if self._kept_in is None:
                self._kept_in = self._stack.enter_context(store.temp_dir("substituted-"))
                weakref.finalize(self, self._stack.close)
            return self._kept_in

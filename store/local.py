"""The local store: one directory of immutable paths, their metadata, locks and GC roots.

Layout under the physical directory (`$COG_STORE_DIR`):

    <hash>-<name>        store paths (read-only once valid)
    gcroots/             symlinks to store paths, or to symlinks elsewhere (indirect roots)
    .cog/db.sqlite       metadata; a path is valid iff it is registered here
    .cog/locks/          one lock file per output being produced
    .cog/tmp/            private temp dirs (an owner lock tells leftovers from live ones)
    .cog/logs/           build logs, one per derivation
    .cog/gc.lock         shared by writers, exclusive for gc

Adding is atomic: write into a temp dir, hash, rename into place, register. A crash before the
registration commits leaves an unregistered directory that no one trusts and gc removes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import blake3

from store.archive import ArchiveDigest, copy_tree, hash_tree, make_read_only
from store.db import MetadataDB, PathInfo
from store.errors import HashMismatch, PathNotValid, StoreError
from store.failpoints import failpoint
from store.locks import FileLock, owned_temp_dir, remove_tree
from store.paths import STORE_DIR, StorePath, check_name, closure_order, default_store_dir


class Store:
    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root if root is not None else default_store_dir()).absolute()
        self.meta = self.root / ".cog"
        self.tmp = self.meta / "tmp"
        self.locks = self.meta / "locks"
        self.logs = self.meta / "logs"
        self.gcroots = self.root / "gcroots"
        try:
            for d in (self.root, self.meta, self.tmp, self.locks, self.logs, self.gcroots):
                d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(
                f"cannot create the store at {self.root} ({e.strerror})",
                hint="set COG_STORE_DIR to a writable directory",
            ) from None
        self.db = MetadataDB(self.meta / "db.sqlite")

    def close(self) -> None:
        self.db.close()

    # --- naming -------------------------------------------------------------------------------

    def real_path(self, path: StorePath) -> Path:
        return self.root / path.base

    def parse(self, text: str) -> StorePath:
        """A store path from its logical name, its physical name, or a path inside either."""
        physical = str(self.root) + "/"
        if text.startswith(physical):
            text = f"{STORE_DIR}/{text[len(physical) :]}"
        return StorePath.parse(text)

    # --- queries ------------------------------------------------------------------------------

    def is_valid(self, path: StorePath) -> bool:
        return self.db.is_valid(path)

    def info(self, path: StorePath) -> PathInfo:
        info = self.db.info(path)
        if info is None:
            raise PathNotValid(f"{path} is not a valid path in the store at {self.root}")
        return info

    def closure(self, paths: Iterable[StorePath]) -> list[StorePath]:
        """Every path reachable through references, each after everything it refers to."""
        starts = list(paths)
        for start in starts:
            self.info(start)  # a path that is not valid fails here, by name
        return closure_order(starts, self.db.references)

    # --- locks and temp dirs ------------------------------------------------------------------

    def output_lock(self, path: StorePath) -> FileLock:
        return FileLock(self.locks / f"{path.hash}.lock")

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Held while adding or building, so gc never deletes what is being made."""
        with FileLock(self.meta / "gc.lock", shared=True):
            yield

    def temp_dir(self, prefix: str = "tmp-") -> AbstractContextManager[Path]:
        return owned_temp_dir(self.tmp, prefix)

    # --- adding -------------------------------------------------------------------------------

    def add(self, src: Path | str, name: str | None = None) -> StorePath:
        """Adds a file or tree as a content-addressed path (named after its nar BLAKE3)."""
        src = Path(os.path.realpath(src))
        name = check_name(name or src.name)
        if not os.path.lexists(src):
            raise StoreError(f"{src} does not exist")
        with self.writing(), self.temp_dir("add-") as tmp:
            tree = tmp / "out"
            nar = copy_tree(src, tree, name)
            path = StorePath.make("source", f"blake3:{nar.nar_hash}", name)
            failpoint("add:copied")
            with self.output_lock(path):
                if not self.is_valid(path):
                    self.install(tree, path, ca=f"blake3:{nar.nar_hash}", nar=nar)
        return path

    def add_text(self, name: str, text: str, references: Iterable[StorePath] = ()) -> StorePath:
        """Adds a small text file (a .drv) addressed by its contents and declared references."""
        refs = sorted(set(references))
        digest = blake3.blake3(text.encode()).hexdigest()
        path = StorePath.make("text", ":".join([digest, *map(str, refs)]), name)
        if self.is_valid(path):
            return path
        with self.writing(), self.temp_dir("text-") as tmp:
            (tmp / "out").write_text(text)
            with self.output_lock(path):
                if not self.is_valid(path):
                    self.install(tmp / "out", path, scan=refs, ca=f"text:{digest}")
        return path

    def install(
        self,
        tree: Path,
        path: StorePath,
        scan: Iterable[StorePath] = (),
        deriver: str | None = None,
        ca: str | None = None,
        expect_nar: str | None = None,
        expect_tar: str | None = None,
        expect_references: Iterable[StorePath] | None = None,
        signatures: Iterable[str] = (),
        nar: ArchiveDigest | None = None,
    ) -> PathInfo:
        """Moves a finished tree into place and registers it. The caller holds `path`'s lock.

        References are the paths of `scan` (and `path` itself) whose hash part occurs in the tree.
        What came from elsewhere is checked against what it claims first (`expect_*`).

        The layer form's SHA-256 (its diff_id) is computed here only to check an `expect_tar`;
        otherwise it is left to the pass that first needs it (`layer_info`): most paths become
        part of an image layer, whose compression hashes the same bytes anyway, and many (a
        downloaded wheel, a .drv) never become a layer of their own at all.

        `nar` is the tree's digest when the caller hashed it from the very bytes it wrote into
        `tree`, sized its layer form and made it read-only (`add`, through `copy_tree`): the
        tree is then not read again. Such a path is named after its nar hash, so it has no
        references: its contents cannot contain a hash part derived from themselves.
        """
        final = self.real_path(path)
        remove_tree(final)  # an unregistered leftover of a crash: never trusted, so replaced
        candidates = {p.hash: p for p in scan}
        candidates[path.hash] = path
        if nar is not None:
            if len(candidates) > 1 or expect_tar:
                raise ValueError("a tree hashed by its caller is neither scanned nor checked")
            digest = nar
        else:
            digest = hash_tree(
                tree,
                path.layer_prefix,
                candidates,
                after_entry=make_read_only,
                layer_hash=bool(expect_tar),
            )
        if (expect_nar or digest.nar_hash, expect_tar or digest.tar_sha256) != (
            digest.nar_hash,
            digest.tar_sha256,
        ):
            raise HashMismatch(
                f"{path} hashed to nar {digest.nar_hash} / layer {digest.tar_sha256}, "
                f"expected nar {expect_nar} / layer {expect_tar}"
            )
        references = tuple(sorted(candidates[h] for h in digest.references))
        if expect_references is not None and set(references) != set(expect_references):
            raise HashMismatch(f"{path} refers to other paths than it claims")
        failpoint("install:before-rename")
        os.rename(tree, final)
        if not final.is_symlink():
            executable = final.is_dir() or os.stat(final).st_mode & 0o111
            os.chmod(final, 0o555 if executable else 0o444)
        failpoint("install:before-register")
        info = self.db.register(
            PathInfo(
                path=path,
                nar_hash=digest.nar_hash,
                nar_size=digest.nar_size,
                tar_sha256=digest.tar_sha256,
                tar_size=digest.tar_size,
                references=references,
                deriver=deriver,
                ca=ca,
                signatures=tuple(signatures),
            )
        )
        failpoint("install:after-register")
        return info

    def layer_info(self, path: StorePath) -> PathInfo:
        """The path's info with its layer form's SHA-256, computed now if it never was. The
        same pass re-hashes the nar form, so contents that changed on disk are refused here
        rather than hashed, signed and shipped."""
        info = self.info(path)
        if info.tar_sha256:
            return info
        digest = hash_tree(self.real_path(path), path.layer_prefix)
        if (digest.nar_hash, digest.tar_size) != (info.nar_hash, info.tar_size):
            raise StoreError(
                f"{path} no longer matches its registered hash",
                hint="run `cog store verify --repair`",
            )
        self.db.set_layer_hash(path, digest.tar_sha256)
        return replace(info, tar_sha256=digest.tar_sha256)

    # --- roots --------------------------------------------------------------------------------

    def _resolve_root(self, link: Path) -> StorePath | None:
        target: Path = link
        for _ in range(16):
            try:
                raw = os.readlink(target)
            except OSError:
                return None
            nxt = Path(os.path.normpath(os.path.join(os.path.dirname(target), raw)))
            if str(nxt.parent) in (str(self.root), STORE_DIR):
                try:
                    path = StorePath.parse(nxt.name)
                except StoreError:
                    return None
                return path if self.is_valid(path) else None
            if not nxt.is_symlink():
                return None
            target = nxt
        return None

    def roots(self) -> list[tuple[Path, StorePath | None]]:
        """Every link under gcroots/ and the valid path it keeps alive (None when stale)."""
        out = []
        for dirpath, dirs, files in os.walk(self.gcroots):
            for f in sorted(files + dirs):
                link = Path(dirpath) / f
                if link.is_symlink():
                    out.append((link, self._resolve_root(link)))
        return sorted(out)

    def add_root(self, path: StorePath, name: str) -> Path:
        """A direct root `gcroots/<name>` pointing at `path`."""
        self.info(path)
        link = self.gcroots / check_name(name)
        _atomic_symlink(self.real_path(path), link)
        return link

    def set_name(self, name: str, path: StorePath) -> Path:
        """A named root, `gcroots/names/<name>` (a local image's name, e.g. `my-model:latest`):
        `path` stays alive, and is found again by its name, until the name moves on."""
        self.info(path)
        names = self.gcroots / "names"
        names.mkdir(exist_ok=True)
        link = names / quote(name, safe="")
        _atomic_symlink(self.real_path(path), link)
        return link

    def named(self, name: str) -> StorePath | None:
        """The valid path `name` points at (set_name), or None."""
        link = self.gcroots / "names" / quote(name, safe="")
        return self._resolve_root(link) if link.is_symlink() else None

    def add_indirect_root(self, link: Path, path: StorePath) -> Path:
        """Points `link` (anywhere, e.g. a project's `.cog/image`) at `path` and keeps it alive
        while `link` still points there."""
        self.info(path)
        link = Path(os.path.abspath(link))
        link.parent.mkdir(parents=True, exist_ok=True)
        _atomic_symlink(self.real_path(path), link)
        auto = self.gcroots / "auto"
        auto.mkdir(exist_ok=True)
        key = hashlib.sha256(str(link).encode()).hexdigest()[:32]
        _atomic_symlink(link, auto / key)
        return link


def _atomic_symlink(target: Path, link: Path) -> None:
    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}")
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)

"""Binary caches: other places that hold store paths, so a path built once is never built again.

A cache holds, per store path, an *entry* (the path info, signed, and the descriptor of one
blob) and that blob, in one of two forms:
- `layer`: the path's canonical layer tar, gzip-compressed exactly as images compress it
  (store.compress), so an image's layer for this path and the cache's blob are the same bytes;
- `blob`: a path that *is* an image layer (an `oci-layer` output: `blob` and
  `descriptor.json`): its blob is that file itself, and the descriptor rides in the entry, so
  an image pushed to the cache's registry mounts its layers from the cache.

Backends, one interface (`Cache`):
- `oci://HOST/REPO`: each path an OCI artifact tagged by its hash part; the entry is an
  annotation of the manifest, so a lookup is one manifest GET and never a tag listing;
- `file://DIR`: `DIR/<hash>.json` and `DIR/blobs/sha256/<hex>`.

Nothing from a cache is trusted before it is checked: the entry's form first (hashes that are
not blank, a blob digest that is `sha256:` and 64 hex digits before it names a file or a URL),
then the entry by a trusted signature over all of it (input-addressed paths) or by the path's
own name (content-addressed ones), its blob by its digest and declared size as it arrives, its
unpacking by the sizes the entry declares, and the unpacked tree by the entry's hashes and
references, and a content-addressed one by its name, before it is registered. What is
published is checked the other way round: the blob must come from the bytes the path
registered.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from store.archive import archive_stream, hash_tree
from store.compress import LAYER_GZIP, CompressedBlob
from store.db import PathInfo
from store.errors import RegistryError, StoreError
from store.extract import Limits, extract_tar_stream
from store.hashing import HashingWriter, canonical_json
from store.local import Store
from store.oci import MANIFEST, BlobReader, Layout, Part, digest_of
from store.paths import StorePath, closure_order
from store.push import upload_with_retries
from store.reference import Reference
from store.registry import Registry
from store.signing import (
    DIGEST,
    SigningKey,
    TrustedKeys,
    address_problem,
    content_problem,
    entry_fingerprint,
    hashes_problem,
    path_fingerprint,
)

ENTRY_ANNOTATION = "run.cog.store.entry"
ARTIFACT_TYPE = "application/vnd.cog.store-path.v1"
EMPTY_CONFIG = b"{}"
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
LAYER_OUTPUT = "oci-layer"  # the name of the paths that hold an image layer


class CacheError(StoreError):
    pass


@dataclass(frozen=True)
class Entry:
    """What a cache says about one store path."""

    info: PathInfo
    form: str  # "layer", "blob" or "tree"
    blob: dict[str, Any]  # mediaType, digest, size
    diff_id: str  # sha256 of the blob uncompressed
    descriptor: str | None = None  # `blob` form: descriptor.json, as the path holds it

    def to_json(self) -> dict[str, Any]:
        info = self.info.to_json()
        info.pop("registered_at", None)
        document = {"info": info, "form": self.form, "blob": self.blob, "diff_id": self.diff_id}
        if self.descriptor is not None:
            document["descriptor"] = self.descriptor
        return document

    @classmethod
    def from_json(cls, document: Any, path: StorePath, where: str) -> Entry:
        """An entry read from a cache, for `path`; CacheError when it is not one, or when
        anything in it that is used before the signature is checked is malformed."""
        try:
            info = PathInfo.from_json(document["info"])
            blob = {k: document["blob"][k] for k in ("mediaType", "digest", "size")}
            entry = cls(
                info=replace(info, registered_at=0),
                form=str(document["form"]),
                blob=blob,
                diff_id=str(document["diff_id"]),
                descriptor=document.get("descriptor"),
            )
        except (KeyError, TypeError, ValueError, AttributeError, StoreError):
            raise CacheError(f"{where} holds no readable entry for {path}") from None
        if entry.info.path != path or entry.form not in ("layer", "blob", "tree"):
            raise CacheError(f"{where}'s entry for {path} describes another path")
        problem = entry.problem()
        if problem is not None:
            raise CacheError(f"the entry for {path} is refused: {problem}")
        return entry

    def problem(self) -> str | None:
        """What makes this entry unusable whoever signed it, or None."""
        problem = hashes_problem(self.info)
        if problem is not None:
            return problem
        digest, size, media_type = (self.blob[k] for k in ("digest", "size", "mediaType"))
        if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
            return "its blob digest is not sha256: and 64 hex digits"
        if type(size) is not int or size <= 0 or not isinstance(media_type, str):
            return "its blob has no valid size or media type"
        if not DIGEST.fullmatch(self.diff_id):
            return "its diff_id is not sha256: and 64 hex digits"
        if self.form == "layer" and self.diff_id != f"sha256:{self.info.tar_sha256}":
            return "its diff_id is not its path's layer hash"
        if (self.form == "blob") != isinstance(self.descriptor, str):
            return "its blob descriptor does not match its form"
        return None

    def fingerprint(self) -> bytes:
        """What a signature of this entry covers."""
        return entry_fingerprint(self.info, self.blob, self.diff_id, self.form)

    def limits(self) -> Limits:
        """What unpacking its blob may write: its tar's declared size (a root layer's tar,
        the same tree without the store's prefix, is never larger), and its files' bytes
        (never more than the nar form that holds them)."""
        return Limits(stream=self.info.tar_size, written=self.info.nar_size)

    @property
    def path(self) -> StorePath:
        return self.info.path


class Cache(Protocol):
    url: str

    def lookup(self, path: StorePath) -> Entry | None:
        """The cache's entry for `path` (unchecked), or None."""
        ...

    def download(self, entry: Entry, target: Path) -> None:
        """Writes the entry's blob to `target`, checked against its digest and size."""
        ...

    def upload(self, entry: Entry, blob: Path) -> None:
        """Stores the blob (unless there) and then the entry."""
        ...


class _OneBlob:
    """One blob, a file or bytes, as a push reads blobs (store.oci.BlobSource)."""

    def __init__(self, digest: str, source: Path | bytes) -> None:
        self.digest = digest
        self.part: Part = source if isinstance(source, bytes) else (source, source.stat().st_size)

    def blob_size(self, digest: str) -> int:
        return len(self.part) if isinstance(self.part, bytes) else self.part[1]

    def open_blob(self, digest: str, start: int = 0, end: int | None = None) -> BlobReader:
        size = self.blob_size(digest)
        whole = start == 0 and (end is None or end >= size)
        where = "memory" if isinstance(self.part, bytes) else str(self.part[0])
        return BlobReader([self.part], start, end, (digest, where) if whole else None)

    def verify_blob(self, digest: str) -> None:
        reader = self.open_blob(digest)
        try:
            while reader.read(1 << 20):
                pass
        finally:
            reader.close()


class OciCache:
    """A cache in an OCI registry repository."""

    def __init__(self, url: str, ref: Reference) -> None:
        self.url, self.ref = url, ref
        self.registry = Registry.shared(ref.host, ref.insecure)
        self.has_empty_config = False

    @property
    def repository(self) -> str:
        return self.ref.repository

    def lookup(self, path: StorePath) -> Entry | None:
        data = self.registry.find_manifest(self.repository, path.hash)
        if data is None:
            return None
        try:
            manifest = json.loads(data)
            entry = Entry.from_json(
                json.loads(manifest["annotations"][ENTRY_ANNOTATION]), path, self.url
            )
            [layer] = manifest["layers"]
        except (ValueError, KeyError, TypeError):
            raise CacheError(f"{self.url} holds no readable entry for {path}") from None
        if (layer.get("digest"), layer.get("size")) != (entry.blob["digest"], entry.blob["size"]):
            raise CacheError(f"{self.url}'s entry for {path} names another blob than it holds")
        return entry

    def download(self, entry: Entry, target: Path) -> None:
        self.registry.fetch_blob(
            self.repository, entry.blob["digest"], int(entry.blob["size"]), target
        )

    def has_blob(self, digest: str) -> bool:
        return self.registry.blob_exists(self.repository, digest)

    def _put_blob(self, digest: str, source: Path | bytes) -> None:
        if not self.registry.blob_exists(self.repository, digest):
            chunk = int(os.environ.get("COG_PUSH_CHUNK_SIZE", str(64 << 20)))
            blobs = _OneBlob(digest, source)
            upload_with_retries(self.registry, self.repository, digest, blobs, chunk)

    def upload(self, entry: Entry, blob: Path) -> None:
        self._put_blob(entry.blob["digest"], blob)
        empty = digest_of(EMPTY_CONFIG)
        if not self.has_empty_config:  # one check per run, not one per path
            self._put_blob(empty, EMPTY_CONFIG)
            self.has_empty_config = True
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "artifactType": ARTIFACT_TYPE,
            "config": {"mediaType": EMPTY_MEDIA_TYPE, "digest": empty, "size": len(EMPTY_CONFIG)},
            "layers": [entry.blob],
            "annotations": {
                ENTRY_ANNOTATION: canonical_json(entry.to_json()),
                "org.opencontainers.image.title": entry.path.name,
            },
        }
        data = canonical_json(manifest).encode()
        self.registry.put_manifest(self.repository, entry.path.hash, data, MANIFEST)


class FileCache:
    """A cache in a directory (a shared disk, or a CI artifact)."""

    def __init__(self, url: str, root: Path) -> None:
        self.url, self.root = url, root

    def _blob(self, digest: str) -> Path:
        if not DIGEST.fullmatch(digest):  # never a path of the attacker's choosing
            raise CacheError(f"{self.url} names a blob {digest!r} that is not a sha256 digest")
        return self.root / "blobs" / "sha256" / digest.split(":", 1)[1]

    def lookup(self, path: StorePath) -> Entry | None:
        try:
            data = (self.root / f"{path.hash}.json").read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise CacheError(f"cannot read {self.url} ({e.strerror})") from None
        try:
            document = json.loads(data)
        except ValueError:
            raise CacheError(f"{self.url} holds no readable entry for {path}") from None
        return Entry.from_json(document, path, self.url)

    def download(self, entry: Entry, target: Path) -> None:
        """Copies at most the declared size (and one byte more, to tell a larger file)."""
        source, size = self._blob(entry.blob["digest"]), int(entry.blob["size"])
        try:
            with open(source, "rb") as f, open(target, "wb") as out:
                writer = HashingWriter(out)
                while writer.size <= size and (
                    chunk := f.read(min(1 << 20, size + 1 - writer.size))
                ):
                    writer.write(chunk)
        except OSError as e:
            raise CacheError(f"{self.url} lacks the blob of {entry.path} ({e.strerror})") from None
        if writer.size != size:
            raise CacheError(f"{self.url} holds a blob for {entry.path} of another size")
        if writer.digest != entry.blob["digest"]:
            raise CacheError(f"{self.url} holds a corrupt blob for {entry.path}")

    def upload(self, entry: Entry, blob: Path) -> None:
        target = self._blob(entry.blob["digest"])
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            partial = _partial(target)
            shutil.copyfile(blob, partial)
            partial.replace(target)
        text = json.dumps(entry.to_json(), sort_keys=True, indent=1) + "\n"
        partial = _partial(self.root / f"{entry.path.hash}.json")
        partial.write_text(text)
        partial.replace(self.root / f"{entry.path.hash}.json")


def _partial(target: Path) -> Path:
    """Where one writer prepares `target`: its own name, per process and per thread (a
    publish uploads on several threads, and two paths may share a blob)."""
    return target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.partial")


def open_cache(url: str) -> OciCache | FileCache:
    """A cache from its URL: oci://HOST/REPO or file://DIR."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme == "oci" and rest:
        ref = Reference.parse(rest)
        if ref.tag or ref.digest:
            raise CacheError(
                f"the cache {url} names a tag or digest", hint="give oci://HOST/REPOSITORY"
            )
        return OciCache(url, ref)
    if sep and scheme == "file" and rest:
        root = Path(rest).absolute()
        return FileCache(f"file://{root}", root)
    raise CacheError(
        f"{url!r} is not a cache URL", hint="give oci://HOST/REPOSITORY or file://DIRECTORY"
    )


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


# --- trust ---------------------------------------------------------------------------------------


def trust_problem(entry: Entry, keys: TrustedKeys, expected_ca: str | None = None) -> str | None:
    """Why `entry` cannot be trusted, or None. A content-addressed path (a source, a .drv, a
    fixed output) is trusted by its name alone only because its bytes are checked against
    that name before it is registered (`content_problem`); every other path needs a trusted
    key's signature over the whole entry (its info, blob descriptor, diff_id and form)."""
    info = entry.info
    problem = entry.problem()
    if problem is not None:
        return problem
    if info.ca is not None:
        problem = address_problem(info)
        if problem is None and expected_ca is not None and info.ca != expected_ca:
            problem = "its content address is not the one its derivation fixes"
        return problem
    if not info.signatures:
        return "it is not signed"
    if not keys.verify(info.signatures, entry.fingerprint()):
        return "no trusted key signed it"
    return None


# --- substituting --------------------------------------------------------------------------------


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


def unpack(entry: Entry, blob: Path, where: Path) -> Path:
    """The tree an entry's blob holds, made under `where`, never beyond the sizes it declares."""
    archive = f"the blob of {entry.path}"
    if entry.form == "tree":  # the image's root layer: the tree itself at `/`
        with open(blob, "rb") as data:
            extract_tar_stream(data, where, archive, allow_store_links=True, limits=entry.limits())
        return where
    if entry.form == "blob":
        where.mkdir()
        os.replace(blob, where / "blob")
        (where / "descriptor.json").write_text(entry.descriptor or "")
        return where
    with open(blob, "rb") as data:
        extract_tar_stream(data, where, archive, allow_store_links=True, limits=entry.limits())
    return where.joinpath(*entry.path.layer_prefix.split("/"))


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


class PathInfos:
    """Path infos from the local store, then from the caches' entries: enough to plan an image
    of paths that stay in a cache."""

    def __init__(self, store: Store, substituter: Substituter | None) -> None:
        self.store, self.substituter = store, substituter

    def info(self, path: StorePath) -> PathInfo:
        if self.store.is_valid(path) or self.substituter is None:
            return self.store.info(path)
        info = self.substituter.info(path)
        if info is None:
            return self.store.info(path)  # raises PathNotValid, as the store does
        return info

    def closure(self, paths: Iterable[StorePath]) -> list[StorePath]:
        """Every path reachable through references, each after everything it refers to."""
        starts = list(paths)
        if self.substituter is not None:
            self.substituter.closure(starts, self.store)  # looks the remote ones up, in batches
        return closure_order(starts, lambda p: self.info(p).references)


def cached_layout(substituter: Substituter, path: StorePath, where: Path) -> Layout:
    """The image layout `path` holds, read from its cache into `where` (not into the store:
    its layers stay in the cache), checked against its entry. Its layer blobs are not here:
    a push mounts them from the cache's repository."""
    cache, entry = substituter.found[path]
    blob = where / "blob"
    cache.download(entry, blob)
    substituter.downloaded += blob.stat().st_size
    tree = unpack(entry, blob, where / "tree")
    digest = hash_tree(tree, path.layer_prefix)
    if (digest.nar_hash, digest.tar_sha256) != (entry.info.nar_hash, entry.info.tar_sha256):
        raise CacheError(f"{cache.url}'s blob for {path} does not match its entry")
    return Layout.open(tree)

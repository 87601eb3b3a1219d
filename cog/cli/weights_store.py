"""Managed weights, as Cog's `cog weights` keeps them: `weights.lock`, the local weight cache,
the OCI artifact each weight becomes in the registry, and the mounts a run sees.

- The cache is content-addressed by sha256, in Cog's layout:
  `$COG_CACHE_DIR/weights/files/sha256/<first two hex>/<hex>` (else `$XDG_CACHE_HOME/cog/weights`,
  else `~/.cache/cog/weights`). A file enters it atomically (written beside, checked, renamed).
- `weights.lock` (JSON, version 1, stable bytes) records, per weight, its sources (URI, the
  fingerprint of everything there, the include/exclude globs), every file (path, size, sha256,
  layer), every layer and the digest of the weight's manifest.
- In the registry a weight is an OCI artifact (`artifactType application/vnd.cog.weight.v1`) in
  the model's repository, tagged `cog-weight.<name>.<12 hex of its set digest>`: a config blob
  indexing the files, and uncompressed tar layers (files of 64 MiB or more alone, smaller ones
  bundled up to 256 MiB). Layer blobs are described, never written: tar headers around the
  cached files, so a weight's bytes are on disk once.
- A run gets each weight read-only at its target: a per-run folder of hard links to the cache
  under `.cog/mounts/` (removed when the run ends), or, where the cache is on another file
  system, each cached file bound in place.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from cog.project.errors import UsageError
from derivations.config import CogConfig, Weight
from store.hashing import HashingWriter
from store.locks import FileLock, remove_tree, stale_temp_dirs
from store.oci import MANIFEST, digest_of
from store.reference import Reference

LOCK_NAME = "weights.lock"
LOCK_VERSION = 1
ARTIFACT_TYPE = "application/vnd.cog.weight.v1"
CONFIG_TYPE = "application/vnd.cog.weight.config.v1+json"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
LAYER_TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
SIZE_ANNOTATION = "run.cog.weight.size.uncompressed"
NAME_ANNOTATION = "run.cog.weight.name"
SET_DIGEST_ANNOTATION = "run.cog.weight.set-digest"
BUNDLE_FILE_MAX = 64 * 1024 * 1024  # files this big get a layer of their own
BUNDLE_SIZE_MAX = 256 * 1024 * 1024  # the most a bundle of smaller files holds
# What the layer digests depend on: a new packing makes a new envelope, so an old lock's
# layers are recomputed rather than trusted.
ENVELOPE = {
    "bundleFileMax": BUNDLE_FILE_MAX,
    "bundleSizeMax": BUNDLE_SIZE_MAX,
    "compression": "none",
    "mediaType": LAYER_TAR,
    "packer": "cog-hermetic",
    "revision": 1,
}
CHUNK = 1 << 20


class WeightsError(UsageError):
    pass


# --- sizes and digests ---------------------------------------------------------------------


def format_size(size: int) -> str:
    """Sizes as Cog prints them: 512B, 1.0KB, 3.2MB, 1.5GB."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f}{unit}"
    return f"{size}B"


def short_digest(digest: str) -> str:
    return digest.partition(":")[2][:12]


def dirhash(files: list[tuple[str, str]]) -> str:
    """The digest of a set of (path, sha256 digest) pairs, independent of order (Cog's
    `setDigest` and file fingerprint)."""
    lines = sorted(f"{digest.partition(':')[2]}  {path}" for path, digest in files)
    return "sha256:" + hashlib.sha256("\n".join(lines).encode()).hexdigest()


# --- the cache -----------------------------------------------------------------------------


def cache_dir() -> Path:
    if os.environ.get("COG_CACHE_DIR"):
        return Path(os.environ["COG_CACHE_DIR"]) / "weights"
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "cog" / "weights"
    return Path.home() / ".cache" / "cog" / "weights"


_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class FileCache:
    """Files by sha256 under `<root>/files/sha256/<ab>/<hex>`; safe for concurrent writers."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str) -> Path:
        if not _DIGEST.match(digest):
            raise WeightsError(f"{digest!r} is not a sha256 digest", hint=f"check {LOCK_NAME}")
        hexdigest = digest[7:]
        return self.root / "files" / "sha256" / hexdigest[:2] / hexdigest

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def _writable(self, folder: Path) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise WeightsError(
                f"cannot create the weight cache folder {folder}: {e.strerror}",
                hint="set COG_CACHE_DIR to a writable folder",
            ) from None

    def put_stream(self, source: IO[bytes], size: int, expect: str | None = None) -> str:
        """Copies `size` bytes of `source` into the cache; returns their digest. With
        `expect`, bytes that are not that digest are refused and nothing is kept."""
        spool = self.root / "files" / "tmp"
        self._writable(spool)
        _clean_spool(spool)
        fd, name = tempfile.mkstemp(dir=spool, prefix="put-")
        fcntl.flock(fd, fcntl.LOCK_EX)  # held while it is written: a live file, not a leftover
        temp = Path(name)
        try:
            with os.fdopen(fd, "wb") as f:
                out = HashingWriter(f)
                while out.size < size:
                    data = source.read(min(CHUNK, size - out.size))
                    if not data:
                        break
                    out.write(data)
            digest, written = out.digest, out.size
            if written != size or (expect is not None and digest != expect):
                raise WeightsError(
                    f"a weight file has the wrong content ({digest}, {written} bytes) where "
                    f"{expect or 'another digest'} of {size} bytes was expected",
                    hint="run the command again; if it persists, import the weights again",
                )
            final = self.path(digest)
            if final.is_file():  # already there: links to it (running models) stay as they are
                return digest
            self._writable(final.parent)
            os.chmod(temp, 0o444)
            os.replace(temp, final)
            return digest
        finally:
            temp.unlink(missing_ok=True)


def _clean_spool(spool: Path) -> None:
    """Partial files a killed import or pull left (gigabytes, maybe): those no live writer
    holds the lock of. One younger than a minute may be a writer's between create and lock."""
    for entry in spool.iterdir():
        with contextlib.suppress(OSError):
            fd = os.open(entry, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            try:
                if time.time() - os.fstat(fd).st_mtime < 60:
                    continue
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: a live one
                entry.unlink()
            finally:
                os.close(fd)


# --- model reference -----------------------------------------------------------------------


def weight_repository(config: CogConfig) -> Reference:
    """`registry/repo` for the weights: the model's reference without its tag."""
    if config.image and not config.model:
        raise WeightsError(
            "weight commands require 'model' in cog.yaml, not 'image'",
            hint="rename 'image' to 'model' in cog.yaml",
        )
    ref = model_reference(config)
    if ref is None:
        raise WeightsError(
            "weight commands require a model ref",
            hint="set 'model' in cog.yaml, or export COG_MODEL / COG_MODEL_REPO",
        )
    return Reference(ref.host, ref.repository)


TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


def model_reference(config: CogConfig) -> Reference | None:
    """The model's `registry/repo:tag`, as Cog resolves it: COG_MODEL whole (a timestamp tag
    where it names none); else cog.yaml's `model:` with COG_MODEL_REGISTRY (host),
    COG_MODEL_REPO (path) and COG_MODEL_TAG (else a timestamp) over it. None where no
    repository is named (an image-mode project)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    full = os.environ.get("COG_MODEL", "")
    if full:
        try:
            ref = Reference.parse(full)
        except UsageError as e:
            raise WeightsError(f"COG_MODEL: {e}", hint=e.hint) from None
        return ref if ref.tag or ref.digest else ref.with_tag(stamp)
    registry = os.environ.get("COG_MODEL_REGISTRY", "")
    if any(c in registry for c in "/@"):
        raise WeightsError(
            f"COG_MODEL_REGISTRY {registry!r} must be a bare host (no path, tag or digest)"
        )
    repo = os.environ.get("COG_MODEL_REPO", "")
    if any(c in repo for c in ":@"):
        raise WeightsError(f"COG_MODEL_REPO {repo!r} must be a bare repository path")
    tag = os.environ.get("COG_MODEL_TAG", "")
    if tag.startswith("cog-"):
        raise WeightsError(f"COG_MODEL_TAG {tag!r}: 'cog-' is a reserved prefix; choose another")
    if tag and not TAG.match(tag):
        raise WeightsError(f"COG_MODEL_TAG {tag!r} is not a valid tag")
    base_host, base_repo = "", ""
    if config.model:
        first, slash, rest = config.model.partition("/")
        if slash and ("." in first or ":" in first or first == "localhost"):
            base_host, base_repo = first, rest
        else:
            base_repo = config.model
    host = registry or base_host or "r8.im"
    path = repo or base_repo
    if not path:
        return None
    try:
        return Reference.parse(f"{host}/{path}:{tag or stamp}")
    except UsageError:
        raise WeightsError(
            f"{host}/{path} is not a valid model repository",
            hint="check 'model' in cog.yaml and COG_MODEL_REGISTRY / COG_MODEL_REPO",
        ) from None


def weight_tag(name: str, set_digest: str) -> str:
    segment = re.sub(r"[^A-Za-z0-9_-]", "-", name)[:104] or "unnamed"
    return f"cog-weight.{segment}.{short_digest(set_digest)}"


# --- the lockfile --------------------------------------------------------------------------


@dataclass
class LockFile:
    path: str
    size: int
    digest: str
    layer: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "digest": self.digest, "layer": self.layer}


@dataclass
class LockLayer:
    digest: str
    media_type: str
    size: int
    size_uncompressed: int

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "mediaType": self.media_type,
            "size": self.size,
            "sizeUncompressed": self.size_uncompressed,
        }


@dataclass
class LockSource:
    uri: str
    fingerprint: str
    include: list[str]
    exclude: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "fingerprint": self.fingerprint,
            "include": self.include,
            "exclude": self.exclude,
        }


@dataclass
class LockEntry:
    name: str
    target: str
    sources: list[LockSource]
    imported_at: str
    digest: str
    set_digest: str
    files: list[LockFile]
    layers: list[LockLayer]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def size_compressed(self) -> int:
        return sum(layer.size for layer in self.layers)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "target": self.target,
            "sources": [s.to_json() for s in self.sources],
            "importedAt": self.imported_at,
            "digest": self.digest,
            "setDigest": self.set_digest,
            "size": self.size,
            "sizeCompressed": self.size_compressed,
            "files": [f.to_json() for f in sorted(self.files, key=lambda f: f.path)],
            "layers": [x.to_json() for x in sorted(self.layers, key=lambda x: x.digest)],
        }

    def same_content(self, other: LockEntry) -> bool:
        """Equal but for when it was imported."""
        mine, theirs = self.to_json(), other.to_json()
        mine.pop("importedAt")
        theirs.pop("importedAt")
        return mine == theirs


@dataclass
class WeightsLock:
    envelope_format: str = ""
    weights: list[LockEntry] = field(default_factory=list)

    def find(self, name: str) -> LockEntry | None:
        return next((e for e in self.weights if e.name == name), None)

    def to_bytes(self) -> bytes:
        document = {
            "version": LOCK_VERSION,
            "envelopeFormat": self.envelope_format,
            "weights": [e.to_json() for e in self.weights],
        }
        return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()

    def save(self, path: Path) -> None:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=".weights.lock-")
        with os.fdopen(fd, "wb") as out:
            out.write(self.to_bytes())
        os.chmod(name, 0o644)
        os.replace(name, path)


def envelope_format() -> str:
    return digest_of(json.dumps(ENVELOPE, sort_keys=True, separators=(",", ":")).encode())


def _entry_from_json(data: dict[str, Any]) -> LockEntry:
    return LockEntry(
        name=str(data["name"]),
        target=str(data["target"]),
        sources=[
            LockSource(
                str(s["uri"]),
                str(s.get("fingerprint", "")),
                [str(p) for p in s.get("include") or []],
                [str(p) for p in s.get("exclude") or []],
            )
            for s in data.get("sources") or []
        ],
        imported_at=str(data.get("importedAt", "")),
        digest=str(data["digest"]),
        set_digest=str(data.get("setDigest", "")),
        files=[
            LockFile(str(f["path"]), int(f["size"]), str(f["digest"]), str(f["layer"]))
            for f in data.get("files") or []
        ],
        layers=[
            LockLayer(
                str(x["digest"]),
                str(x.get("mediaType", LAYER_TAR)),
                int(x["size"]),
                int(x.get("sizeUncompressed", 0)),
            )
            for x in data.get("layers") or []
        ],
    )


def load_lock(path: Path, required: bool = True) -> WeightsLock:
    """The project's weights.lock; an empty one when it is missing and not `required`."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if not required:
            return WeightsLock()
        raise WeightsError(
            f"{LOCK_NAME} not found in {path.parent}", hint="run 'cog weights import' first"
        ) from None
    except OSError as e:
        raise WeightsError(f"cannot read {path}: {e.strerror}") from None
    hint = f"fix {path}, or delete it and run 'cog weights import'"
    try:
        document = json.loads(raw)
    except ValueError as e:
        raise WeightsError(f"{LOCK_NAME} is not valid JSON ({e})", hint=hint) from None
    if not isinstance(document, dict) or document.get("version") != LOCK_VERSION:
        version = document.get("version") if isinstance(document, dict) else None
        raise WeightsError(
            f"unsupported {LOCK_NAME} version {version!r} (want {LOCK_VERSION})", hint=hint
        )
    try:
        entries = [_entry_from_json(e) for e in document.get("weights") or []]
    except (KeyError, TypeError, ValueError) as e:
        raise WeightsError(f"{LOCK_NAME} has a malformed weight entry ({e})", hint=hint) from None
    names = [e.name for e in entries]
    for name in names:
        if names.count(name) > 1:
            raise WeightsError(f"{LOCK_NAME} names the weight {name!r} twice", hint=hint)
    return WeightsLock(str(document.get("envelopeFormat", "")), entries)


# --- sources and filters -------------------------------------------------------------------


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A gitignore-style glob: a bare pattern matches at any depth, one with a `/` is
    anchored at the source's root, `**` spans folders, a trailing `/` means a folder, and a
    match on a folder covers what is inside it."""
    directory = pattern.endswith("/")
    body = pattern.strip("/") if directory else pattern.lstrip("/")
    anchored = "/" in pattern.rstrip("/")
    out, i = [], 0
    while i < len(body):
        if body.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif body.startswith("**", i):
            out.append(".*")
            i += 2
        elif body[i] == "*":
            out.append("[^/]*")
            i += 1
        elif body[i] == "?":
            out.append("[^/]")
            i += 1
        elif body[i] == "[" and "]" in body[i + 1 :]:
            end = body.index("]", i + 1)
            inner = body[i + 1 : end].replace("\\", "\\\\")
            out.append("[^" + inner[1:] + "]" if inner.startswith("!") else f"[{inner}]")
            i = end + 1
        else:
            out.append(re.escape(body[i]))
            i += 1
    prefix = "" if anchored else "(?:.*/)?"
    suffix = "/.*" if directory else "(?:/.*)?"
    return re.compile(f"^{prefix}{''.join(out)}{suffix}$")


def matches(path: str, patterns: list[str]) -> bool:
    """Whether `path` is matched by the patterns, read as a .gitignore (later `!` undoes)."""
    found = False
    for raw in patterns:
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        if _glob_regex(pattern.removeprefix("!")).match(path):
            found = not negate
    return found


@dataclass
class SourceFile:
    path: str  # relative, with forward slashes
    real: Path
    size: int
    digest: str = ""  # sha256, once hashed


def source_root(project: Path, uri: str, name: str, allowed: Sequence[Path] = ()) -> Path:
    """The folder a cog.yaml source names. cog.yaml travels with the project, so its sources
    stay inside it (links resolved: `file://../x`, `/home/me/.ssh` or a link out are refused);
    a folder outside is read only where the user named it on the command line (`allowed`)."""
    if not uri.startswith("file://"):
        scheme = uri.partition("://")[0] if "://" in uri else uri
        raise WeightsError(
            f"weight {name!r}: the source {uri} is not supported here ({scheme})",
            hint="use a file:// source (a folder, relative to the project or absolute)",
        )
    where = uri.removeprefix("file://")
    root = (project / where) if not os.path.isabs(where) else Path(where)
    if not root.is_dir():
        raise WeightsError(
            f"weight {name!r}: the source {uri} is not a folder",
            hint="a file:// source must name a folder of weight files",
        )
    real = root.resolve()
    if not real.is_relative_to(project.resolve()) and not any(
        real.is_relative_to(a.resolve()) for a in allowed
    ):
        raise WeightsError(
            f"weight {name!r}: the source {uri} is {real}, outside the project, which cog.yaml "
            "alone cannot have read and pushed",
            hint=f"move it into the project, or run `cog weights import --allow-source {real}`",
        )
    return real


def inventory(root: Path, name: str) -> list[SourceFile]:
    """Every regular file under `root`, sorted by path; a link or special file is refused."""
    found: list[SourceFile] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for entry in [*dirnames, *filenames]:
            full = Path(dirpath) / entry
            mode = full.lstat().st_mode
            rel = full.relative_to(root).as_posix()
            if stat.S_ISLNK(mode):
                raise WeightsError(
                    f"weight {name!r}: {rel} in its source is a link",
                    hint="replace it by the file it points to",
                )
            if entry in filenames:
                if not stat.S_ISREG(mode):
                    raise WeightsError(f"weight {name!r}: {rel} is not a regular file")
                found.append(SourceFile(rel, full, full.stat().st_size))
    return sorted(found, key=lambda f: f.path)


@dataclass
class Plan:
    """One weight about to be imported: its sources' files, filtered."""

    weight: Weight
    sources: list[
        tuple[str, Path, list[str], list[str], list[SourceFile]]
    ]  # uri, root, inc, exc, all
    files: list[SourceFile]
    excluded: list[SourceFile]

    @property
    def name(self) -> str:
        return self.weight.name or ""

    @property
    def target(self) -> str:
        return self.weight.target or ""

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def plan_weight(project: Path, weight: Weight, allowed: Sequence[Path] = ()) -> Plan:
    name = weight.name or ""
    sources = []
    files: dict[str, SourceFile] = {}
    excluded: list[SourceFile] = []
    for source in () if isinstance(weight.source, str) else weight.source:
        root = source_root(project, source.uri, name, allowed)
        every = inventory(root, name)
        include = sorted(p.strip() for p in source.include)
        exclude = sorted(p.strip() for p in source.exclude)
        kept = []
        for f in every:
            if (exclude and matches(f.path, exclude)) or (include and not matches(f.path, include)):
                excluded.append(f)
            else:
                kept.append(f)
        if not kept:
            what = f"include {include}" if include else ""
            what += (" and " if what else "") + (f"exclude {exclude}" if exclude else "")
            raise WeightsError(
                f"weight {name!r}: "
                + (
                    f"the patterns ({what}) matched none of the {len(every)} files in {source.uri}"
                    if every
                    else f"the source {source.uri} has no files"
                ),
                hint="check the source and its include/exclude patterns in cog.yaml",
            )
        for f in kept:
            if f.path in files:
                raise WeightsError(f"weight {name!r}: two sources both have the file {f.path}")
            files[f.path] = f
        sources.append((source.uri, root, include, exclude, every))
    return Plan(weight, sources, sorted(files.values(), key=lambda f: f.path), excluded)


# --- packing -------------------------------------------------------------------------------


def tar_header(path: str, size: int) -> bytes:
    info = tarfile.TarInfo(path)
    info.size, info.mode, info.mtime = size, 0o644, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


def _padding(size: int) -> bytes:
    return b"\0" * (-size % 512)


def layer_parts(files: list[tuple[str, int, Path]]) -> list[bytes | tuple[Path, int]]:
    """The parts of an uncompressed tar layer of (path, size, cached file): header bytes,
    the file, padding; then the end-of-archive blocks."""
    parts: list[bytes | tuple[Path, int]] = []
    for path, size, real in files:
        parts.append(tar_header(path, size))
        if size:
            parts.append((real, size))
        if _padding(size):
            parts.append(_padding(size))
    parts.append(b"\0" * 1024)
    return parts


def hash_parts(parts: list[bytes | tuple[Path, int]]) -> tuple[str, int]:
    hasher, total = hashlib.sha256(), 0
    for part in parts:
        if isinstance(part, bytes):
            hasher.update(part)
            total += len(part)
            continue
        with open(part[0], "rb") as f:
            while data := f.read(CHUNK):
                hasher.update(data)
                total += len(data)
    return f"sha256:{hasher.hexdigest()}", total


def group_layers(files: list[LockFile]) -> list[list[LockFile]]:
    """Files of 64 MiB or more alone; smaller ones, by path, in bundles of at most 256 MiB."""
    groups: list[list[LockFile]] = []
    bundle: list[LockFile] = []
    bundled = 0
    for f in sorted(files, key=lambda f: f.path):
        if f.size >= BUNDLE_FILE_MAX:
            groups.append([f])
            continue
        if bundle and bundled + f.size > BUNDLE_SIZE_MAX:
            groups.append(bundle)
            bundle, bundled = [], 0
        bundle.append(f)
        bundled += f.size
    if bundle:
        groups.append(bundle)
    return groups


@dataclass
class Artifact:
    """A weight's OCI artifact: its lock entry, config blob, manifest and layer parts."""

    entry: LockEntry
    config_blob: bytes
    manifest: bytes
    parts: dict[str, list[bytes | tuple[Path, int]]]  # layer digest -> parts

    @property
    def size(self) -> int:
        return self.entry.size


def config_blob(name: str, target: str, set_digest: str, files: list[LockFile]) -> bytes:
    document = {
        "name": name,
        "target": target,
        "setDigest": set_digest,
        "files": [
            {"path": f.path, "layer": f.layer, "size": f.size, "digest": f.digest}
            for f in sorted(files, key=lambda f: f.path)
        ],
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def manifest_bytes(entry: LockEntry, config: bytes) -> bytes:
    document = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "size": len(config), "digest": digest_of(config)},
        "layers": [
            {
                "mediaType": layer.media_type,
                "size": layer.size,
                "digest": layer.digest,
                "annotations": {SIZE_ANNOTATION: str(layer.size_uncompressed)},
            }
            for layer in sorted(entry.layers, key=lambda x: x.digest)
        ],
        "annotations": {
            NAME_ANNOTATION: entry.name,
            SET_DIGEST_ANNOTATION: entry.set_digest,
            "run.cog.weight.target": entry.target,
        },
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def build_artifact(
    plan: Plan, digests: dict[str, str], cache: FileCache, fingerprints: list[str]
) -> Artifact:
    """The artifact of a planned weight whose files are cached (`digests`: path -> sha256)."""
    files = [LockFile(f.path, f.size, digests[f.path], "") for f in plan.files]
    layers: list[LockLayer] = []
    parts: dict[str, list[bytes | tuple[Path, int]]] = {}
    for group in group_layers(files):
        layer = layer_parts([(f.path, f.size, cache.path(f.digest)) for f in group])
        digest, size = hash_parts(layer)
        for f in group:
            f.layer = digest
        layers.append(LockLayer(digest, LAYER_TAR, size, sum(f.size for f in group)))
        parts[digest] = layer
    set_digest = dirhash([(f.path, f.digest) for f in files])
    entry = LockEntry(
        name=plan.name,
        target=plan.target,
        sources=[
            LockSource(uri, fingerprint, include, exclude)
            for (uri, _, include, exclude, _), fingerprint in zip(
                plan.sources, fingerprints, strict=True
            )
        ],
        imported_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        digest="",
        set_digest=set_digest,
        files=files,
        layers=layers,
    )
    config = config_blob(entry.name, entry.target, set_digest, files)
    manifest = manifest_bytes(entry, config)
    entry.digest = digest_of(manifest)
    return Artifact(entry, config, manifest, parts)


def write_layout(artifact: Artifact, root: Path) -> None:
    """The artifact as an OCI layout at `root`: its manifest and config as blobs, its layers
    described (parts: bytes and cached files), so nothing of a weight is copied."""
    import base64

    from store.oci import EXTERNAL, write_index

    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for data in (artifact.config_blob, artifact.manifest):
        (blobs / digest_of(data).partition(":")[2]).write_bytes(data)
    described = {
        digest: [
            {"bytes": base64.b64encode(p).decode()}
            if isinstance(p, bytes)
            else {"file": str(p[0]), "size": p[1]}
            for p in parts
        ]
        for digest, parts in artifact.parts.items()
    }
    (root / EXTERNAL).write_text(json.dumps(described, sort_keys=True))
    write_index(root, MANIFEST, artifact.entry.digest, len(artifact.manifest))


# --- layers pulled back into the cache -----------------------------------------------------


def unpack_layer(
    blob: Path, layer: str, wanted: dict[str, LockFile], cache: FileCache
) -> Iterator[LockFile]:
    """Stores the files of a layer blob (tar, or tar+gzip) that `wanted` lists, each checked
    against its digest; yields each file as it is stored."""
    seen: set[str] = set()
    try:
        with tarfile.open(blob, mode="r|*") as archive:
            for member in archive:
                name = member.name.removeprefix("./")
                if member.isdir():
                    continue
                expected = wanted.get(name)
                if expected is None or not member.isfile():
                    raise WeightsError(
                        f"the layer {short_digest(layer)} has the file {name!r}, which "
                        f"{LOCK_NAME} does not list",
                        hint="import the weights again",
                    )
                reader = archive.extractfile(member)
                if reader is None:
                    continue
                if not cache.has(expected.digest):
                    cache.put_stream(reader, expected.size, expected.digest)
                seen.add(name)
                yield expected
    except (tarfile.TarError, EOFError, OSError) as e:
        raise WeightsError(f"the layer {short_digest(layer)} could not be read ({e})") from None
    missing = sorted(set(wanted) - seen)
    if missing:
        raise WeightsError(
            f"the layer {short_digest(layer)} lacks the file {missing[0]} that {LOCK_NAME} lists",
            hint="import the weights again",
        )


# --- mounts --------------------------------------------------------------------------------


def managed_weights(config: CogConfig) -> list[Weight]:
    return [w for w in config.weights if w.managed]


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


def prepare_mounts(project: Path, config: CogConfig) -> Mounts:
    """Each managed weight of cog.yaml, assembled from the cache for one run; a weight that
    is not in weights.lock, or not wholly cached, is an error naming what to run."""
    mounts = Mounts()
    weights = managed_weights(config)
    if not weights:
        return mounts
    lock = load_lock(project / LOCK_NAME)
    cache = FileCache(cache_dir())
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
        for f in entry.files:
            if not cache.has(f.digest):
                raise WeightsError(
                    f"weight {entry.name!r} is not fully cached locally (missing {f.path})",
                    hint="run 'cog weights pull' first",
                )
        entries.append(entry)
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
    try:
        for entry in entries:
            mounts.binds += _assemble(entry, root, cache)
    except BaseException:
        mounts.release()
        raise
    return mounts


def _safe_join(base: Path, rel: str) -> Path:
    joined = Path(os.path.normpath(base / rel))
    if joined == base or not joined.is_relative_to(base) or rel.startswith("/"):
        raise WeightsError(f"{LOCK_NAME} names a path {rel!r} outside its weight folder")
    return joined


def _assemble(entry: LockEntry, root: Path, cache: FileCache) -> list[tuple[Path, str]]:
    """Hard links to the cached files in `root/<name>`, bound at the target as one folder;
    where the cache is on another file system, each cached file is bound by itself."""
    folder = _safe_join(root, entry.name)
    folder.mkdir(parents=True)
    try:
        for f in entry.files:
            destination = _safe_join(folder, f.path)
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.link(cache.path(f.digest), destination)
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        shutil.rmtree(folder, ignore_errors=True)
        target = entry.target.rstrip("/")
        return [(cache.path(f.digest), f"{target}/{f.path}") for f in entry.files]
    return [(folder, entry.target)]

"""`weights.lock`: what `cog weights import` pinned, as Cog writes it (JSON, version 1).

Per weight: its sources (URI, the fingerprint of every file there, the include/exclude globs),
every file it holds (path, size, sha256, the layer it is packed in), every layer, and the digest
of the weight's OCI manifest. The bytes are stable (indent 2, files by path, layers by digest), so
importing unchanged weights again rewrites the same file. Where the bytes of those files live is
the store's business (`store.weight_files`); this is only the record.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from derivations.errors import DerivationError

LOCK_NAME = "weights.lock"
LOCK_VERSION = 1
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"


class WeightsLockError(DerivationError):
    """A weights.lock that is missing, unreadable or not one cog can use."""


def dirhash(files: list[tuple[str, str]]) -> str:
    """The digest of a set of (path, sha256 digest) pairs, independent of order (Cog's
    `setDigest`, and a source's fingerprint)."""
    lines = sorted(f"{digest.partition(':')[2]}  {path}" for path, digest in files)
    return "sha256:" + hashlib.sha256("\n".join(lines).encode()).hexdigest()


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
    digest: str  # the weight's manifest
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
        """Written beside and renamed over: a crash leaves the old lock or the new one."""
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=".weights.lock-")
        with os.fdopen(fd, "wb") as out:
            out.write(self.to_bytes())
        os.chmod(name, 0o644)
        os.replace(name, path)


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
        raise WeightsLockError(
            f"{LOCK_NAME} not found in {path.parent}", hint="run 'cog weights import' first"
        ) from None
    except OSError as e:
        raise WeightsLockError(f"cannot read {path}: {e.strerror}") from None
    hint = f"fix {path}, or delete it and run 'cog weights import'"
    try:
        document = json.loads(raw)
    except ValueError as e:
        raise WeightsLockError(f"{LOCK_NAME} is not valid JSON ({e})", hint=hint) from None
    if not isinstance(document, dict) or document.get("version") != LOCK_VERSION:
        version = document.get("version") if isinstance(document, dict) else None
        raise WeightsLockError(
            f"unsupported {LOCK_NAME} version {version!r} (want {LOCK_VERSION})", hint=hint
        )
    try:
        entries = [_entry_from_json(e) for e in document.get("weights") or []]
    except (KeyError, TypeError, ValueError) as e:
        raise WeightsLockError(
            f"{LOCK_NAME} has a malformed weight entry ({e})", hint=hint
        ) from None
    names = [e.name for e in entries]
    for name in names:
        if names.count(name) > 1:
            raise WeightsLockError(f"{LOCK_NAME} names the weight {name!r} twice", hint=hint)
    return WeightsLock(str(document.get("envelopeFormat", "")), entries)

"""Reading an OCI image layout, and writing it out as a docker-archive or a plain layout.

A layout is what the image builder leaves in the store (and what `--output oci:DIR` writes):
`oci-layout`, `index.json` naming one manifest, and `blobs/sha256/<digest>`. The manifest is
kept as the exact bytes it was written with, since its digest is the image's name.

In the store, a blob may be *described* instead of stored (`external-blobs.json`): a weight
layer is a few tar headers around the bytes of a weight file that is already a store path, so
the layout lists those parts and every reader streams them, and a weight is never on disk twice.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from store.errors import CorruptBlob, StoreError

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
CHUNK = 1 << 20
EXTERNAL = "external-blobs.json"

Part = bytes | tuple[Path, int]  # inline bytes, or a whole file of that size


def digest_of(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _size(part: Part) -> int:
    return len(part) if isinstance(part, bytes) else part[1]


def platform_manifest(document: dict[str, Any], arch: str, name: str) -> str | None:
    """For an index (a multi-platform image), the digest of its linux/`arch` manifest; None
    when `document` is a manifest itself."""
    if "manifests" not in document:
        return None
    for entry in document["manifests"]:
        platform = entry.get("platform", {})
        if platform.get("os") == "linux" and platform.get("architecture") == arch:
            return str(entry["digest"])
    raise StoreError(f"{name} has no linux/{arch} image")


def write_index(root: Path, media_type: str, digest: str, size: int) -> None:
    """`index.json` naming the one manifest, and `oci-layout`: what makes `root` a layout."""
    manifest = {
        "mediaType": media_type,
        "digest": digest,
        "size": size,
        "annotations": {"org.opencontainers.image.ref.name": "latest"},
    }
    index = {"schemaVersion": 2, "manifests": [manifest]}
    (root / "index.json").write_text(json.dumps(index, sort_keys=True, indent=2) + "\n")
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}\n')


@dataclass
class Layout:
    root: Path
    manifest_bytes: bytes = field(repr=False)
    manifest_digest: str

    @classmethod
    def open(cls, root: Path) -> Layout:
        index_file = root / "index.json"
        if not index_file.is_file() or not (root / "oci-layout").is_file():
            raise StoreError(
                f"{root} is not an OCI image layout (no index.json or oci-layout)",
                hint="give a directory written by `cog build --output oci:DIR` or skopeo",
            )
        index = json.loads(index_file.read_text())
        manifests = [m for m in index.get("manifests", []) if m.get("mediaType") != INDEX]
        if not manifests:
            raise StoreError(f"{root}/index.json names no image manifest")
        digest = str(manifests[0]["digest"])
        layout = cls(root, b"", digest)
        data = layout.blob_path(digest).read_bytes()
        if digest_of(data) != digest:
            raise StoreError(f"the manifest blob of {root} does not match its digest {digest}")
        layout.manifest_bytes = data
        return layout

    @property
    def manifest(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.manifest_bytes)
        return document

    @property
    def manifest_media_type(self) -> str:
        return str(self.manifest.get("mediaType", MANIFEST))

    def config(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(
            self.blob_path(self.manifest["config"]["digest"]).read_bytes()
        )
        return document

    def descriptors(self) -> list[dict[str, Any]]:
        """The config and every layer, in manifest order, each blob once (what a push must
        upload)."""
        manifest = self.manifest
        unique = {d["digest"]: d for d in [manifest["config"], *manifest["layers"]]}
        return list(unique.values())

    def blob_digests(self) -> list[str]:
        """Every blob of the image, the manifest first: what a copy of the layout holds."""
        return [self.manifest_digest, *(d["digest"] for d in self.descriptors())]

    def blob_path(self, digest: str) -> Path:
        """Where a stored blob is (described blobs have no path: read them with open_blob)."""
        algorithm, _, hexdigest = digest.partition(":")
        return self.root / "blobs" / algorithm / hexdigest

    @cached_property
    def external(self) -> dict[str, list[Part]]:
        """The described blobs: digest -> parts (files resolved beside the layout, in the
        store it lives in); read once per Layout."""
        path = self.root / EXTERNAL
        if not path.is_file():
            return {}
        described: dict[str, list[Part]] = {}
        for digest, parts in json.loads(path.read_text()).items():
            described[digest] = [
                base64.b64decode(p["bytes"])
                if "bytes" in p
                else (self.root.parent / p["file"], int(p["size"]))
                for p in parts
            ]
        return described

    def blob_parts(self, digest: str) -> list[Part]:
        described = self.external.get(digest)
        if described is not None:
            return described
        path = self.blob_path(digest)
        return [(path, path.stat().st_size)]

    def open_blob(self, digest: str, start: int = 0, end: int | None = None) -> BlobReader:
        """A blob, or a byte range of it. A whole blob is hashed as it is read, and the read
        that would return its last bytes fails instead when they do not make its digest, so
        a corrupt store path never reaches a file, an archive or a registry whole."""
        parts = self.blob_parts(digest)
        whole = start == 0 and (end is None or end >= sum(map(_size, parts)))
        expect = (digest, self._source(parts)) if whole else None
        return BlobReader(parts, start, end, expect)

    def verify_blob(self, digest: str) -> None:
        """Reads the whole blob; raises CorruptBlob when it does not match its digest."""
        reader = self.open_blob(digest)
        try:
            while reader.read(CHUNK):
                pass
        finally:
            reader.close()

    def _source(self, parts: list[Part]) -> str:
        """Where a blob's bytes live, for a message: the store path (or layout) holding them."""
        for part in parts:
            if isinstance(part, tuple):
                try:
                    rel = part[0].relative_to(self.root.parent)
                except ValueError:
                    return str(part[0])
                return str(self.root.parent / rel.parts[0])
        return str(self.root)

    def blob_size(self, digest: str) -> int:
        return sum(map(_size, self.blob_parts(digest)))


class BlobSource(Protocol):
    """Where a push reads blobs from: an image layout, or a binary cache's files."""

    def blob_size(self, digest: str) -> int: ...

    def open_blob(self, digest: str, start: int = 0, end: int | None = None) -> BlobReader: ...

    def verify_blob(self, digest: str) -> None: ...


class BlobReader:
    """A byte range of a blob, read on demand from its parts: a stream that never holds the
    blob in memory, with a length (so an HTTP client sends it with Content-Length)."""

    def __init__(
        self,
        parts: list[Part],
        start: int = 0,
        end: int | None = None,
        expect: tuple[str, str] | None = None,  # the whole blob's digest, and where it lives
    ) -> None:
        end = sum(map(_size, parts)) if end is None else end
        self.expect = expect
        self.hash = hashlib.sha256() if expect is not None else None
        self.pieces: list[tuple[Part, int, int]] = []  # part, from, to (within the part)
        offset = 0
        for part in parts:
            size = _size(part)
            lo, hi = max(start - offset, 0), min(end - offset, size)
            if lo < hi:
                self.pieces.append((part, lo, hi))
            offset += size
        self.left = max(end - start, 0)
        self.file: BinaryIO | None = None

    def __len__(self) -> int:
        return self.left

    def read(self, n: int = -1) -> bytes:
        out = bytearray()
        want = self.left if n is None or n < 0 else min(n, self.left)
        while len(out) < want and self.pieces:
            part, lo, hi = self.pieces[0]
            if isinstance(part, bytes):
                take = min(hi - lo, want - len(out))
                out += part[lo : lo + take]
            else:
                if self.file is None:
                    self.file = open(part[0], "rb")  # noqa: SIM115 (closed below)
                    self.file.seek(lo)
                take = min(hi - lo, want - len(out), CHUNK)
                data = self.file.read(take)
                if len(data) != take:
                    raise StoreError(f"{part[0]} is shorter than the image says")
                out += data
            lo += take
            if lo == hi:
                self.pieces.pop(0)
                if self.file is not None:
                    self.file.close()
                    self.file = None
            else:
                self.pieces[0] = (part, lo, hi)
        self.left -= len(out)
        if self.hash is not None and self.expect is not None:
            self.hash.update(out)
            if self.left == 0 and f"sha256:{self.hash.hexdigest()}" != self.expect[0]:
                raise CorruptBlob(
                    f"the blob {self.expect[0]} in {self.expect[1]} does not match its digest "
                    "(the store is corrupt)"
                )
        return bytes(out)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def copy_layout(layout: Layout, destination: Path) -> None:
    """A self-contained copy of the layout (described blobs written out), files 0644."""
    blobs = destination / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for name in ("oci-layout", "index.json"):
        (destination / name).write_bytes((layout.root / name).read_bytes())
    for digest in layout.blob_digests():
        target = blobs / digest.split(":")[1]
        reader = layout.open_blob(digest)
        with open(target, "wb") as out:
            while chunk := reader.read(CHUNK):
                out.write(chunk)
        reader.close()
    for p in [destination, *destination.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)


def _tar_member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    info.uname = info.gname = ""
    return info


def write_docker_archive(layout: Layout, out: BinaryIO, tag: str) -> None:
    """A tar that `docker load` reads with both image stores: the OCI layout itself, plus the
    `manifest.json` the classic store looks for. Blobs are streamed from disk, in a fixed order,
    with fixed metadata."""
    manifest = layout.manifest
    classic = [
        {
            "Config": f"blobs/sha256/{manifest['config']['digest'].split(':')[1]}",
            "RepoTags": [tag],
            "Layers": [f"blobs/sha256/{d['digest'].split(':')[1]}" for d in manifest["layers"]],
        }
    ]
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [
            {
                "mediaType": layout.manifest_media_type,
                "digest": layout.manifest_digest,
                "size": len(layout.manifest_bytes),
                "annotations": {
                    "io.containerd.image.name": _full_name(tag),
                    "org.opencontainers.image.ref.name": tag.rpartition(":")[2],
                },
            }
        ],
    }
    small = {
        "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
        "index.json": json.dumps(index, sort_keys=True).encode(),
        "manifest.json": json.dumps(classic, sort_keys=True).encode(),
    }
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name, data in small.items():
            tar.addfile(_tar_member(name, len(data)), io.BytesIO(data))
        for digest in layout.blob_digests():
            reader = layout.open_blob(digest)
            tar.addfile(_tar_member(f"blobs/sha256/{digest.split(':')[1]}", len(reader)), reader)
            reader.close()


def _full_name(tag: str) -> str:
    """`name:tag` as containerd names images (docker.io/library/name:tag for short names)."""
    name = tag
    first = name.split("/")[0]
    if "/" not in name or ("." not in first and ":" not in first and first != "localhost"):
        name = f"docker.io/{name if '/' in name else 'library/' + name}"
    return name

"""Reading an OCI image layout, and writing it out as a docker-archive.

A layout is what the image builder leaves in the store (and what `--output oci:DIR` copies):
`oci-layout`, `index.json` naming one manifest, and `blobs/sha256/<digest>`. The manifest is
kept as the exact bytes it was written with, since its digest is the image's name.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from store.errors import StoreError

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


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
        if f"sha256:{hashlib.sha256(data).hexdigest()}" != digest:
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
        """The config and every layer, in manifest order (what a push must upload)."""
        manifest = self.manifest
        return [manifest["config"], *manifest["layers"]]

    def blob_path(self, digest: str) -> Path:
        algorithm, _, hexdigest = digest.partition(":")
        return self.root / "blobs" / algorithm / hexdigest


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
        digests = [layout.manifest_digest, *(d["digest"] for d in layout.descriptors())]
        seen: set[str] = set()
        for digest in digests:
            if digest in seen:
                continue
            seen.add(digest)
            path = layout.blob_path(digest)
            member = _tar_member(f"blobs/sha256/{digest.split(':')[1]}", path.stat().st_size)
            with open(path, "rb") as f:
                tar.addfile(member, f)


def _full_name(tag: str) -> str:
    """`name:tag` as containerd names images (docker.io/library/name:tag for short names)."""
    name = tag
    first = name.split("/")[0]
    if "/" not in name or ("." not in first and ":" not in first and first != "localhost"):
        name = f"docker.io/{name if '/' in name else 'library/' + name}"
    return name


def iter_file(path: Path, start: int = 0, end: int | None = None) -> Iterator[bytes]:
    with open(path, "rb") as f:
        f.seek(start)
        left = (end if end is not None else path.stat().st_size) - start
        while left > 0:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk

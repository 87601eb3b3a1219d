"""The layers of a weight's OCI artifact, between the store's weight files and a registry.

A weight layer is an uncompressed tar of weight files at their paths in the weight. Its blob is
described, never written: tar headers around the bytes of files that are store paths already
(`store.weight_files`), so a push streams them from where they are and a weight's bytes are on
disk once. The headers are exactly what cog has always written (PAX format, mode 0644, mtime 0,
no owners), since the layer digests are pinned in every weights.lock pushed so far. A layer
pulled back is unpacked into the store, each file checked against the digest it must have.
"""

from __future__ import annotations

import base64
import hashlib
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

from store.errors import StoreError
from store.local import Store
from store.oci import EXTERNAL, MANIFEST, Part, digest_of, write_index
from store.weight_files import CHUNK, add_stream, stored


def tar_header(path: str, size: int) -> bytes:
    info = tarfile.TarInfo(path)
    info.size, info.mode, info.mtime = size, 0o644, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


def layer_parts(files: list[tuple[str, int, Path]]) -> list[Part]:
    """The parts of the layer of (path in the weight, size, file on disk): each header, the
    file, its padding; then the end-of-archive blocks."""
    parts: list[Part] = []
    for path, size, real in files:
        parts.append(tar_header(path, size))
        if size:
            parts.append((real, size))
        if size % 512:
            parts.append(b"\0" * (-size % 512))
    parts.append(b"\0" * 1024)
    return parts


def hash_parts(parts: list[Part]) -> tuple[str, int]:
    """The digest and size of the blob the parts make."""
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


def write_layout(root: Path, manifest: bytes, config: bytes, layers: dict[str, list[Part]]) -> None:
    """An OCI layout at `root` (which must not exist) of an artifact: its manifest and config
    as blobs, its layers described by their parts (`store.oci` reads them as blobs)."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for data in (config, manifest):
        (blobs / digest_of(data).partition(":")[2]).write_bytes(data)
    described = {
        digest: [
            {"bytes": base64.b64encode(p).decode()}
            if isinstance(p, bytes)
            else {"file": str(p[0]), "size": p[1]}
            for p in parts
        ]
        for digest, parts in layers.items()
    }
    (root / EXTERNAL).write_text(json.dumps(described, sort_keys=True))
    write_index(root, MANIFEST, digest_of(manifest), len(manifest))


def unpack_layer(
    store: Store, blob: Path, layer: str, wanted: dict[str, tuple[int, str]]
) -> Iterator[str]:
    """Stores the files of a layer blob (tar, or tar+gzip), each checked against the (size,
    digest) `wanted` has for its path; yields each path once its file is in the store. A file
    the layer has and `wanted` lacks, or one it lacks, is an error."""
    short = layer.partition(":")[2][:12]
    seen: set[str] = set()
    try:
        with tarfile.open(blob, mode="r|*") as archive:
            for member in archive:
                name = member.name.removeprefix("./")
                if member.isdir():
                    continue
                expected = wanted.get(name)
                if expected is None or not member.isfile():
                    raise StoreError(
                        f"the layer {short} has the file {name!r}, which weights.lock does not "
                        "list",
                        hint="import the weights again",
                    )
                reader = archive.extractfile(member)
                if reader is None:
                    continue
                size, digest = expected
                if stored(store, digest) is None:
                    add_stream(store, reader, size, digest)
                seen.add(name)
                yield name
    except (tarfile.TarError, EOFError, OSError) as e:
        raise StoreError(f"the layer {short} could not be read ({e})") from None
    missing = sorted(set(wanted) - seen)
    if missing:
        raise StoreError(
            f"the layer {short} lacks the file {missing[0]} that weights.lock lists",
            hint="import the weights again",
        )

"""The OCI artifact a managed weight becomes, as Cog pushes it, and its weights.lock entry.

In the model's repository a weight is an artifact (`artifactType application/vnd.cog.weight.v1`)
tagged `cog-weight.<name>.<12 hex of its set digest>`: a config blob indexing its files, and
uncompressed tar layers (a file of 64 MiB or more alone, smaller ones bundled by path up to
256 MiB). Every byte here is pinned by the weights.lock files and registries that exist: the
manifest, config and layers must come out the same for the same files, or an unchanged weight
would be pushed again under a new digest.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from derivations.weights_lock import LAYER_TAR, LockEntry, LockFile, LockLayer, LockSource, dirhash
from store.oci import MANIFEST, Part, digest_of
from store.weight_layers import hash_parts, layer_parts

ARTIFACT_TYPE = "application/vnd.cog.weight.v1"
CONFIG_TYPE = "application/vnd.cog.weight.config.v1+json"
SIZE_ANNOTATION = "run.cog.weight.size.uncompressed"
NAME_ANNOTATION = "run.cog.weight.name"
SET_DIGEST_ANNOTATION = "run.cog.weight.set-digest"
TARGET_ANNOTATION = "run.cog.weight.target"
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


def envelope_format() -> str:
    return digest_of(json.dumps(ENVELOPE, sort_keys=True, separators=(",", ":")).encode())


def weight_tag(name: str, set_digest: str) -> str:
    segment = re.sub(r"[^A-Za-z0-9_-]", "-", name)[:104] or "unnamed"
    return f"cog-weight.{segment}.{set_digest.partition(':')[2][:12]}"


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
    parts: dict[str, list[Part]]  # layer digest -> parts

    @property
    def size(self) -> int:
        return self.entry.size

    @property
    def tag(self) -> str:
        return weight_tag(self.entry.name, self.entry.set_digest)


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
            TARGET_ANNOTATION: entry.target,
        },
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def build_artifact(
    name: str, target: str, sources: list[LockSource], files: list[tuple[LockFile, Path]]
) -> Artifact:
    """The artifact of a weight whose files are on disk: (its file, where its bytes are)."""
    where = {f.path: real for f, real in files}
    locked = [LockFile(f.path, f.size, f.digest, "") for f, _ in files]
    layers: list[LockLayer] = []
    parts: dict[str, list[Part]] = {}
    for group in group_layers(locked):
        layer = layer_parts([(f.path, f.size, where[f.path]) for f in group])
        digest, size = hash_parts(layer)
        for f in group:
            f.layer = digest
        layers.append(LockLayer(digest, LAYER_TAR, size, sum(f.size for f in group)))
        parts[digest] = layer
    entry = LockEntry(
        name=name,
        target=target,
        sources=sources,
        imported_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        digest="",
        set_digest=dirhash([(f.path, f.digest) for f in locked]),
        files=locked,
        layers=layers,
    )
    config = config_blob(name, target, entry.set_digest, locked)
    manifest = manifest_bytes(entry, config)
    entry.digest = digest_of(manifest)
    return Artifact(entry, config, manifest, parts)

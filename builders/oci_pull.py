"""Registry images as fixed-output derivations, as Nix fetches sources.

Each blob (and the manifest) is a fixed-output derivation whose SHA-256 is its digest: fetched
once, verified, shared by every image that has it, whatever repository it came from. An
`oci-layout` derivation then assembles the image's layout from them, listing the layer blobs as
described parts (store.oci) rather than copying them. So pulling a new tag of an image fetches
only the blobs that changed, and a base image pinned by digest is built like any other input:
its unpacked tree (builders.image_rootfs) is an ordinary store path at `/`, a root layer.
"""

from __future__ import annotations

import json
import os
from typing import Any

from builders.base import Args, BuildContext, derive
from derivations.model import Derivation, DrvInput
from store.oci import EXTERNAL, write_index
from store.reference import Reference
from store.registry import fetch_blob, fetch_manifest


def blob_derivation(ref: Reference, digest: str, size: int | None, kind: str) -> Derivation:
    """A fixed-output derivation for one blob (or manifest); its path depends only on the
    digest, so where it was fetched from does not matter."""
    return derive(
        OciBlobBuilder,
        f"oci-{kind}-{digest.split(':')[1][:16]}",
        args={
            "host": ref.host,
            "repository": ref.repository,
            "digest": digest,
            "size": size,
            "kind": kind,
        },
        sha256=digest,
    )


def layout_derivation(
    ref: Reference, manifest_drv: Derivation, manifest: dict[str, Any], media_type: str
) -> Derivation:
    inputs: dict[str, DrvInput] = {
        "manifest": manifest_drv.dep(),
        "config": blob_derivation(
            ref, manifest["config"]["digest"], manifest["config"]["size"], "blob"
        ).dep(),
    }
    for i, layer in enumerate(manifest["layers"]):
        inputs[f"layer-{i:03d}"] = blob_derivation(
            ref, layer["digest"], layer["size"], "blob"
        ).dep()
    return derive(
        OciLayoutBuilder,
        "oci-image",
        inputs=inputs,
        args={
            "manifest": manifest_drv.args["digest"],
            "media_type": media_type,
            "config": manifest["config"]["digest"],
            "layers": [(layer["digest"], layer["size"]) for layer in manifest["layers"]],
        },
    )


class OciBlobArgs(Args):
    host: str
    repository: str
    digest: str
    size: int | None  # None for a manifest: its digest alone checks it
    kind: str


class OciLayoutArgs(Args):
    manifest: str  # digests
    media_type: str
    config: str
    layers: tuple[tuple[str, int], ...]  # digest and size, in order


class OciBlobBuilder:
    kind = "oci-blob"
    version = "1"
    runs_foreign_code = False  # a fetch: the network, and nothing it fetched runs

    def build(self, ctx: BuildContext) -> None:
        args = ctx.args(OciBlobArgs)
        ref = Reference(args.host, args.repository)
        if args.kind == "manifest":
            fetch_manifest(ref, args.digest, ctx.out)
        else:
            fetch_blob(ref, args.digest, args.size or 0, ctx.out)


class OciLayoutBuilder:
    kind = "oci-layout"
    version = "2"
    runs_foreign_code = False

    def build(self, ctx: BuildContext) -> None:
        args = ctx.args(OciLayoutArgs)
        blobs = ctx.out / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        manifest = ctx.inputs["manifest"].read_bytes()
        (blobs / args.manifest.split(":")[1]).write_bytes(manifest)
        (blobs / args.config.split(":")[1]).write_bytes(ctx.inputs["config"].read_bytes())
        described = {
            digest: [{"file": os.path.basename(ctx.inputs[f"layer-{i:03d}"]), "size": size}]
            for i, (digest, size) in enumerate(args.layers)
        }
        (ctx.out / EXTERNAL).write_text(json.dumps(described, sort_keys=True, indent=1) + "\n")
        write_index(ctx.out, args.media_type, args.manifest, len(manifest))

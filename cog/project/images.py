"""Images to run: a store path, an OCI layout directory or a registry reference, made into a
store path holding an OCI layout (registry images are pulled blob by blob, each blob a
fixed-output derivation verified by its digest)."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from builders.image_rootfs import rootfs_derivation
from builders.oci_pull import blob_derivation, layout_derivation
from builders.progress import default_reporter
from builders.realise import realise
from cog.project.errors import UsageError
from derivations.model import Derivation
from store.errors import StoreError
from store.local import Store
from store.oci import MANIFEST, Layout, platform_manifest
from store.paths import STORE_DIR, StorePath
from store.reference import Reference
from store.registry import resolve


def local_name(text: str) -> str:
    """A local image name as Docker writes it, NAME[:TAG] with the tag `latest` by default;
    refused in one sentence when Docker's reference rules refuse it."""
    from docker.utils.build import match_tag

    name = text if ":" in text.rpartition("/")[2] else f"{text}:latest"
    if not match_tag(name):
        raise UsageError(
            f"{text!r} is not a valid image name",
            hint="use lowercase letters, digits and . _ - / (e.g. my-model or my-model:v1)",
        )
    return name


def image_path(store: Store, text: str, arch: str = "amd64") -> StorePath:
    """The store path of the image's OCI layout: found, added, or pulled. A name that
    `cog build -t` gave is found locally first, as Docker finds its local images."""
    if text.startswith(f"{STORE_DIR}/"):
        path = store.parse(text)
        if not store.is_valid(path):
            raise UsageError(f"{text} is not in the store", hint="build it first with `cog build`")
        Layout.open(store.real_path(path))
        return path
    directory = Path(text.removeprefix("oci:"))
    if text.startswith("oci:") or directory.is_dir():
        if not directory.is_dir():
            raise UsageError(f"there is no directory {directory}")
        if directory.resolve().parent == store.root:  # already a store path (e.g. .cog/image)
            return image_path(store, f"{STORE_DIR}/{directory.resolve().name}", arch)
        Layout.open(directory)  # a clear error if it is not a layout
        return store.add(directory, name="oci-image")
    if text.startswith((".", "/")):
        raise UsageError(
            f"there is no image at {text}", hint="give an OCI directory or a registry reference"
        )
    if "@" not in text:
        with contextlib.suppress(UsageError):
            named = store.named(local_name(text))
            if named is not None:
                return named
    ref = Reference.parse(text)
    print(f"pulling {ref}", file=sys.stderr)
    path = pull_image(store, ref, arch)
    digest = Layout.open(store.real_path(path)).manifest_digest
    print(f"pulled {ref.with_tag(None)}@{digest}", file=sys.stderr)
    return path


def pull_image(store: Store, ref: Reference, arch: str = "amd64") -> StorePath:
    """The image `ref` names, as an OCI layout in the store (every blob verified and kept as
    its own fixed-output path). A reference by digest needs no network once it is here."""

    def manifest(digest: str) -> tuple[Derivation, dict[str, Any]]:
        drv = blob_derivation(ref, digest, None, "manifest")
        [out] = realise(store, [drv], reporter=default_reporter())
        document: dict[str, Any] = json.loads(store.real_path(out["out"]).read_bytes())
        return drv, document

    manifest_drv, document = manifest(ref.digest or resolve(ref, arch))
    chosen = platform_manifest(document, arch, str(ref))  # an index named by its digest
    if chosen is not None:
        manifest_drv, document = manifest(chosen)
        if "manifests" in document:
            raise StoreError(f"{ref} is an index of indexes, which is not supported")
    media_type = document.get("mediaType", MANIFEST)
    layout = layout_derivation(ref, manifest_drv, document, media_type)
    [out] = realise(store, [layout], reporter=default_reporter())
    return out["out"]


def unpacked(store: Store, layout: StorePath) -> Path:
    """The image's file system, unpacked once into the store."""
    [outputs] = realise(store, [rootfs_derivation(layout)], reporter=default_reporter())
    return store.real_path(outputs["out"])

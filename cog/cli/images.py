"""Images to run: a store path, an OCI layout directory or a registry reference, made into a
store path holding an OCI layout (registry images are pulled blob by blob, each blob a
fixed-output derivation verified by its digest)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from builders.image_rootfs import rootfs_derivation
from builders.oci_pull import pull_image
from builders.progress import default_reporter
from builders.realise import realise
from cog.cli.errors import UsageError
from store.local import Store
from store.oci import Layout
from store.paths import STORE_DIR, StorePath
from store.registry import Reference


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


def unpacked(store: Store, layout: StorePath) -> Path:
    """The image's file system, unpacked once into the store."""
    [outputs] = realise(store, [rootfs_derivation(layout)], reporter=default_reporter())
    return store.real_path(outputs["out"])

"""An image's file system: its layers applied in order, as `docker run` would see it.

Works for any OCI image, ours or not: gzip, zstd or plain layers, and whiteouts (`.wh.NAME`
deletes NAME from the layers below, `.wh..wh..opq` empties its directory). Every layer's
uncompressed SHA-256 must match the config's diff_ids. The result is an ordinary store path,
so running an image a second time unpacks nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, cast

import zstandard

from builders.base import BuildContext, derive
from builders.errors import BuildError
from builders.rootview import add_mount_points
from derivations.model import Derivation, SrcInput
from store.extract import safe_relative
from store.oci import Layout
from store.paths import StorePath

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


def rootfs_derivation(layout: StorePath) -> Derivation:
    return derive(ImageRootfsBuilder, "image-rootfs", inputs={"image": SrcInput(path=str(layout))})


class _Hashing:
    """Reads a decompressed stream while hashing it (to check the layer's diff_id)."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.hash.update(data)
        return data

    def drain(self) -> str:
        while self.read(1 << 20):
            pass
        return f"sha256:{self.hash.hexdigest()}"


def _decompressed(layout: Layout, digest: str) -> Iterator[BinaryIO]:
    peek = layout.open_blob(digest, 0, 4)
    magic = peek.read(4)
    peek.close()
    raw = cast(BinaryIO, layout.open_blob(digest))  # read() is all the readers below use
    try:
        if magic[:2] == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=raw) as g:
                yield g  # type: ignore[misc]
        elif magic == b"\x28\xb5\x2f\xfd":
            with zstandard.ZstdDecompressor().stream_reader(raw) as z:
                yield z
        else:
            yield raw
    finally:
        raw.close()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def _within(out: Path, directory: Path, name: str, rel: str) -> Path:
    """`directory` (inside `out`) as the kernel resolves it; refused when a link in a lower
    layer leads it out of the image's tree, where removing or replacing would touch the host."""
    real, top = os.path.realpath(directory), os.path.realpath(out)
    if real != top and not real.startswith(top + os.sep):
        raise BuildError(f"{name} of the image reaches {rel} through a link that leads out of it")
    return Path(real)


def apply_layer(out: Path, stream: BinaryIO, name: str) -> None:
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            rel = safe_relative(member.name, name)
            if not rel:
                continue
            parent, _, base = rel.rpartition("/")
            target_dir = _within(out, out / parent if parent else out, name, rel)
            if base == OPAQUE:
                if target_dir.is_dir():
                    for child in target_dir.iterdir():
                        _remove(child)
                continue
            if base.startswith(WHITEOUT):
                _remove(target_dir / base[len(WHITEOUT) :])
                continue
            if member.ischr() or member.isblk() or member.isfifo():
                continue  # devices come from the runtime's /dev
            existing = target_dir / base
            if os.path.lexists(existing) and not (member.isdir() and existing.is_dir()):
                _remove(existing)
            member.name = rel
            # The "tar" filter refuses anything that would land outside `out`.
            tar.extract(member, out, set_attrs=True, filter="tar")


class ImageRootfsBuilder:
    kind = "image-rootfs"
    version = "2"
    runs_foreign_code = False

    def build(self, ctx: BuildContext) -> None:
        layout = Layout.open(ctx.inputs["image"])
        config = layout.config()
        diff_ids = config.get("rootfs", {}).get("diff_ids", [])
        layers = layout.manifest["layers"]
        if len(diff_ids) != len(layers):
            raise BuildError(f"the image has {len(layers)} layers but {len(diff_ids)} diff_ids")
        ctx.out.mkdir()
        for i, (descriptor, diff_id) in enumerate(zip(layers, diff_ids, strict=True)):
            ctx.check_cancelled()
            for stream in _decompressed(layout, descriptor["digest"]):
                hashing = _Hashing(stream)
                apply_layer(ctx.out, hashing, f"layer {i}")  # type: ignore[arg-type]
                if hashing.drain() != diff_id:
                    raise BuildError(f"layer {i} of the image does not match its diff_id")
        add_mount_points(ctx.out)  # as Docker's init layer: where the run binds its files
        ctx.say(f"unpacked {len(layers)} layers")

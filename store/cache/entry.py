"""A cache entry: what a cache says about one store path, its form, and the tree its blob holds.

An entry is the path info (signed), the descriptor of one blob and the blob's form:
- `layer`: the path's canonical layer tar, gzip-compressed exactly as images compress it
  (store.compress), so an image's layer for this path and the cache's blob are the same bytes;
- `tree`: an image's root layer that holds the path's tree at `/`;
- `blob`: a path that *is* an image layer (an `oci-layer` output: `blob` and
  `descriptor.json`): its blob is that file itself, and the descriptor rides in the entry.

An entry read from a cache is refused, before anything in it is used, unless its form is sound:
hashes that are not blank, a blob digest that is `sha256:` and 64 hex digits (before it names a
file or a URL). Unpacking its blob never writes more than the entry declares.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from store.db import PathInfo
from store.errors import StoreError
from store.extract import Limits, extract_tar_stream
from store.paths import StorePath
from store.signing import DIGEST, entry_fingerprint, hashes_problem


class CacheError(StoreError):
    pass


@dataclass(frozen=True)
class Entry:
    """What a cache says about one store path."""

    info: PathInfo
    form: str  # "layer", "blob" or "tree"
    blob: dict[str, Any]  # mediaType, digest, size
    diff_id: str  # sha256 of the blob uncompressed
    descriptor: str | None = None  # `blob` form: descriptor.json, as the path holds it

    def to_json(self) -> dict[str, Any]:
        info = self.info.to_json()
        info.pop("registered_at", None)
        document = {"info": info, "form": self.form, "blob": self.blob, "diff_id": self.diff_id}
        if self.descriptor is not None:
            document["descriptor"] = self.descriptor
        return document

    @classmethod
    def from_json(cls, document: Any, path: StorePath, where: str) -> Entry:
        """An entry read from a cache, for `path`; CacheError when it is not one, or when
        anything in it that is used before the signature is checked is malformed."""
        try:
            info = PathInfo.from_json(document["info"])
            blob = {k: document["blob"][k] for k in ("mediaType", "digest", "size")}
            entry = cls(
                info=replace(info, registered_at=0),
                form=str(document["form"]),
                blob=blob,
                diff_id=str(document["diff_id"]),
                descriptor=document.get("descriptor"),
            )
        except (KeyError, TypeError, ValueError, AttributeError, StoreError):
            raise CacheError(f"{where} holds no readable entry for {path}") from None
        if entry.info.path != path or entry.form not in ("layer", "blob", "tree"):
            raise CacheError(f"{where}'s entry for {path} describes another path")
        problem = entry.problem()
        if problem is not None:
            raise CacheError(f"the entry for {path} is refused: {problem}")
        return entry

    def problem(self) -> str | None:
        """What makes this entry unusable whoever signed it, or None."""
        problem = hashes_problem(self.info)
        if problem is not None:
            return problem
        digest, size, media_type = (self.blob[k] for k in ("digest", "size", "mediaType"))
        if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
            return "its blob digest is not sha256: and 64 hex digits"
        if type(size) is not int or size <= 0 or not isinstance(media_type, str):
            return "its blob has no valid size or media type"
        if not DIGEST.fullmatch(self.diff_id):
            return "its diff_id is not sha256: and 64 hex digits"
        if self.form == "layer" and self.diff_id != f"sha256:{self.info.tar_sha256}":
            return "its diff_id is not its path's layer hash"
        if (self.form == "blob") != isinstance(self.descriptor, str):
            return "its blob descriptor does not match its form"
        return None

    def fingerprint(self) -> bytes:
        """What a signature of this entry covers."""
        return entry_fingerprint(self.info, self.blob, self.diff_id, self.form)

    def limits(self) -> Limits:
        """What unpacking its blob may write: its tar's declared size (a root layer's tar,
        the same tree without the store's prefix, is never larger), and its files' bytes
        (never more than the nar form that holds them)."""
        return Limits(stream=self.info.tar_size, written=self.info.nar_size)

    @property
    def path(self) -> StorePath:
        return self.info.path


def unpack(entry: Entry, blob: Path, where: Path) -> Path:
    """The tree an entry's blob holds, made under `where`, never beyond the sizes it declares."""
    archive = f"the blob of {entry.path}"
    if entry.form == "tree":  # the image's root layer: the tree itself at `/`
        with open(blob, "rb") as data:
            extract_tar_stream(data, where, archive, allow_store_links=True, limits=entry.limits())
        return where
    if entry.form == "blob":
        where.mkdir()
        os.replace(blob, where / "blob")
        (where / "descriptor.json").write_text(entry.descriptor or "")
        return where
    with open(blob, "rb") as data:
        extract_tar_stream(data, where, archive, allow_store_links=True, limits=entry.limits())
    return where.joinpath(*entry.path.layer_prefix.split("/"))

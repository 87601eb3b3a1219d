"""A cache in a directory (`file://DIR`): `DIR/<hash>.json` and `DIR/blobs/sha256/<hex>`."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

from store.cache.entry import CacheError, Entry
from store.hashing import HashingWriter
from store.paths import StorePath
from store.signing import DIGEST


class FileCache:
    """A cache in a directory (a shared disk, or a CI artifact)."""

    def __init__(self, url: str, root: Path) -> None:
        self.url, self.root = url, root

    def _blob(self, digest: str) -> Path:
        if not DIGEST.fullmatch(digest):  # never a path of the attacker's choosing
            raise CacheError(f"{self.url} names a blob {digest!r} that is not a sha256 digest")
        return self.root / "blobs" / "sha256" / digest.split(":", 1)[1]

    def lookup(self, path: StorePath) -> Entry | None:
        try:
            data = (self.root / f"{path.hash}.json").read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise CacheError(f"cannot read {self.url} ({e.strerror})") from None
        try:
            document = json.loads(data)
        except ValueError:
            raise CacheError(f"{self.url} holds no readable entry for {path}") from None
        return Entry.from_json(document, path, self.url)

    def download(self, entry: Entry, target: Path) -> None:
        """Copies at most the declared size (and one byte more, to tell a larger file)."""
        source, size = self._blob(entry.blob["digest"]), int(entry.blob["size"])
        try:
            with open(source, "rb") as f, open(target, "wb") as out:
                writer = HashingWriter(out)
                while writer.size <= size and (
                    chunk := f.read(min(1 << 20, size + 1 - writer.size))
                ):
                    writer.write(chunk)
        except OSError as e:
            raise CacheError(f"{self.url} lacks the blob of {entry.path} ({e.strerror})") from None
        if writer.size != size:
            raise CacheError(f"{self.url} holds a blob for {entry.path} of another size")
        if writer.digest != entry.blob["digest"]:
            raise CacheError(f"{self.url} holds a corrupt blob for {entry.path}")

    def upload(self, entry: Entry, blob: Path) -> None:
        target = self._blob(entry.blob["digest"])
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            partial = _partial(target)
            shutil.copyfile(blob, partial)
            partial.replace(target)
        text = json.dumps(entry.to_json(), sort_keys=True, indent=1) + "\n"
        partial = _partial(self.root / f"{entry.path.hash}.json")
        partial.write_text(text)
        partial.replace(self.root / f"{entry.path.hash}.json")


def _partial(target: Path) -> Path:
    """Where one writer prepares `target`: its own name, per process and per thread (a
    publish uploads on several threads, and two paths may share a blob)."""
    return target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.partial")

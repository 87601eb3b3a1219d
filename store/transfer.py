"""Export and import of closures as one stream: path infos and layer-form tars, in order.

Stream: a magic line, then for each path (references first) one JSON line of its PathInfo and
exactly `tar_size` bytes of its canonical layer tar; then an empty JSON object line. Import
trusts nothing by name: an input-addressed path needs a trusted key's path signature (export
signs with a key when given one), a content-addressed one's bytes must match its name; it
re-hashes everything it receives and refuses a path whose hashes differ from its info.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from typing import BinaryIO

from store.archive import archive_stream
from store.db import PathInfo
from store.errors import CorruptImport, HashMismatch, StoreError
from store.extract import Limits, extract_tar_stream
from store.local import Store
from store.paths import StorePath
from store.signing import (
    SigningKey,
    TrustedKeys,
    address_problem,
    content_problem,
    hashes_problem,
    path_fingerprint,
)

MAGIC = b"cog-store-export 1\n"


class _Bounded:
    """Reads at most `size` bytes of an underlying stream."""

    def __init__(self, raw: BinaryIO, size: int) -> None:
        self.raw, self.left = raw, size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.raw.read(n) if n else b""
        self.left -= len(data)
        if n and not data:
            raise CorruptImport("the export stream ended in the middle of a path")
        return data

    def drain(self) -> None:
        while self.left:
            self.read(1 << 20)


def export_paths(
    store: Store, paths: Iterable[StorePath], out: BinaryIO, key: SigningKey | None = None
) -> list[StorePath]:
    closure = store.closure(paths)
    out.write(MAGIC)
    for path in closure:
        info = store.layer_info(path)
        if key is not None and info.ca is None:
            signed = {*info.signatures, key.sign(path_fingerprint(info))}
            info = replace(info, signatures=tuple(sorted(signed)))
        out.write(json.dumps(info.to_json(), sort_keys=True).encode() + b"\n")
        written = 0
        for chunk in archive_stream(store.real_path(path), path.layer_prefix):
            written += len(chunk)
            out.write(chunk)
        if written != info.tar_size:
            raise StoreError(
                f"{path} no longer matches its registered size; run `cog store verify --repair`"
            )
    out.write(b"{}\n")
    return closure


NO_KEYS = TrustedKeys()


def import_paths(store: Store, inp: BinaryIO, keys: TrustedKeys = NO_KEYS) -> list[StorePath]:
    """Imports the stream's paths; `keys` are the signers trusted for input-addressed ones
    (by default none: only content-addressed paths come in)."""
    if inp.read(len(MAGIC)) != MAGIC:
        raise CorruptImport("this is not a cog store export stream")
    imported: list[StorePath] = []
    with store.writing():
        while True:
            line = inp.readline()
            if not line:
                raise CorruptImport("the export stream ended before its end marker")
            header = json.loads(line)
            if not header:
                return imported
            info = PathInfo.from_json(header)
            body = _Bounded(inp, info.tar_size)
            problem = _trust_problem(info, keys)
            imported.append(info.path)
            if store.is_valid(info.path):
                body.drain()
                continue
            if problem is not None:
                raise CorruptImport(f"{info.path} is refused because {problem}")
            missing = [r for r in info.references if r != info.path and not store.is_valid(r)]
            if missing:
                raise CorruptImport(
                    f"{info.path} refers to {missing[0]}, which is not in the store"
                )
            with store.temp_dir("import-") as tmp, store.output_lock(info.path):
                limits = Limits(stream=info.tar_size, written=info.nar_size)
                extract_tar_stream(body, tmp, str(info.path), True, limits)  # type: ignore[arg-type]
                body.drain()
                tree = tmp.joinpath(*info.path.layer_prefix.split("/"))
                if store.is_valid(info.path):
                    continue
                problem = content_problem(info, tree, info.nar_hash)
                if problem is not None:
                    raise CorruptImport(f"{info.path} is refused because {problem}")
                try:
                    store.install(
                        tree,
                        info.path,
                        scan=info.references,
                        deriver=info.deriver,
                        ca=info.ca,
                        expect_nar=info.nar_hash,
                        expect_tar=info.tar_sha256,
                        expect_references=info.references,
                        signatures=info.signatures,
                    )
                except HashMismatch as e:
                    raise CorruptImport(f"the export stream is corrupt: {e}") from None


def _trust_problem(info: PathInfo, keys: TrustedKeys) -> str | None:
    """Why `info` is not to be imported (before its bytes are read), or None."""
    problem = hashes_problem(info)
    if problem is not None:
        return problem
    if info.ca is not None:
        return address_problem(info)
    if not keys.verify(info.signatures, path_fingerprint(info)):
        return (
            "no trusted key signed it (export with --signing-key, import with --trusted-key)"
            if info.signatures
            else "it is not signed (export with --signing-key, import with --trusted-key)"
        )
    return None

"""Store paths: `/cog/store/<hash>-<name>`, where `<hash>` is 32 base-32 characters of BLAKE3."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import blake3

from store.errors import InvalidStorePath

STORE_DIR = "/cog/store"
HASH_LEN = 32
# Nix's alphabet: no e, o, u, t, so hashes never spell words.
ALPHABET = "0123456789abcdfghijklmnpqrsvwxyz"
_NAME_RE = re.compile(r"[A-Za-z0-9+_?=-][A-Za-z0-9+._?=-]{0,210}")
_HASH_RE = re.compile(f"[{ALPHABET}]{{{HASH_LEN}}}")


def base32(data: bytes) -> str:
    """Big-endian base-32 in the store alphabet; 20 bytes give 32 characters."""
    n = int.from_bytes(data, "big")
    chars = (len(data) * 8 + 4) // 5
    return "".join(ALPHABET[(n >> (5 * (chars - 1 - i))) & 31] for i in range(chars))


def safe_name(text: str) -> str:
    """`text` as a valid store path name: any other character becomes `_` (a file name with
    spaces, say), a leading dot is dropped, and a long one keeps its end (its extension)."""
    return re.sub(r"[^A-Za-z0-9+._?=-]", "_", text).lstrip(".")[-211:] or "unnamed"


def check_name(name: str) -> str:
    if not _NAME_RE.fullmatch(name):
        raise InvalidStorePath(
            f"{name!r} is not a valid store path name: use letters, digits and + - . _ ? = "
            "(at most 211 characters, not starting with a dot)"
        )
    return name


@dataclass(frozen=True, order=True)
class StorePath:
    hash: str
    name: str

    @property
    def base(self) -> str:
        return f"{self.hash}-{self.name}"

    def __str__(self) -> str:
        return f"{STORE_DIR}/{self.base}"

    @property
    def layer_prefix(self) -> str:
        """The entry name of this path in its layer tar (relative to the image root)."""
        return f"{STORE_DIR.lstrip('/')}/{self.base}"

    @classmethod
    def parse(cls, text: str) -> StorePath:
        """Accepts `/cog/store/<hash>-<name>`, a bare `<hash>-<name>`, or a path inside one."""
        base = text
        if text.startswith(STORE_DIR + "/"):
            base = text[len(STORE_DIR) + 1 :].split("/", 1)[0]
        h, sep, name = base.partition("-")
        if not sep or not _HASH_RE.fullmatch(h):
            raise InvalidStorePath(
                f"{text!r} is not a store path (expected {STORE_DIR}/<hash>-<name>)"
            )
        return cls(h, check_name(name))

    @classmethod
    def make(cls, kind: str, digest: str, name: str) -> StorePath:
        """A path whose hash is fixed by what it is (`kind`) and a digest describing it."""
        check_name(name)
        fingerprint = f"{kind}:{digest}:{STORE_DIR}:{name}".encode()
        return cls(base32(blake3.blake3(fingerprint).digest(length=20)), name)


def closure_order(
    starts: Iterable[StorePath], references_of: Callable[[StorePath], Iterable[StorePath]]
) -> list[StorePath]:
    """Every path reachable from `starts` through `references_of`, each after everything it
    refers to: the order to copy, import or register a closure in. Iterative, since chains of
    references can be deeper than Python's recursion limit."""
    order: list[StorePath] = []
    seen: set[StorePath] = set()
    for start in starts:
        if start in seen:
            continue
        seen.add(start)
        stack = [(start, iter(references_of(start)))]
        while stack:
            node, refs = stack[-1]
            for ref in refs:
                if ref not in seen:
                    seen.add(ref)
                    stack.append((ref, iter(references_of(ref))))
                    break
            else:
                stack.pop()
                order.append(node)
    return order


def default_store_dir() -> Path:
    env = os.environ.get("COG_STORE_DIR")
    if env:
        return Path(env)
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return Path(data_home) / "cog" / "store"

"""Ed25519 signatures over store path infos, and the checks of content addresses.

A key file holds one line, `NAME:BASE64`, as Nix's: the secret key's 32-byte seed in
`NAME.sec`, the public key in `NAME.pub`. A signature is `NAME:BASE64` over a fingerprint,
of one of two kinds (a signature of one kind never verifies as the other):
- a *path* fingerprint: the path's name, both hashes and sizes, references, content address
  and deriver, so a signed path info cannot be moved to other bytes, another closure or
  another derivation (what `cog store export` signs and `import` checks);
- an *entry* fingerprint: all of that, and the cache entry's blob descriptor (digest, size,
  media type), diff_id and form, so nothing a cache entry says is left unsigned.
Version 2 of both: a version 1 signature (which covered neither the deriver nor the blob)
no longer verifies.

Content-addressed paths need no signature: their name follows from their content address,
and their bytes are checked against that address (`address_problem`, `content_problem`).
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3

from store.archive import fixed_output_sha256
from store.db import PathInfo
from store.errors import StoreError
from store.paths import StorePath, check_name

if TYPE_CHECKING:  # cryptography is imported where a key is used: most runs use none
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )


class SigningError(StoreError):
    pass


HEX64 = re.compile(r"[0-9a-f]{64}")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")  # an OCI digest as cog writes and accepts one


def path_fingerprint(info: PathInfo) -> bytes:
    """What a path signature covers (`cog store export` / `import`)."""
    refs = ",".join(str(r) for r in sorted(info.references))
    return (
        f"cog-path-v2;{info.path};{info.nar_hash};{info.nar_size};"
        f"{info.tar_sha256};{info.tar_size};{refs};{info.ca or ''};{info.deriver or ''}"
    ).encode()


def entry_fingerprint(info: PathInfo, blob: Mapping[str, Any], diff_id: str, form: str) -> bytes:
    """What a cache entry's signature covers: the path's info and how its blob is described."""
    described = f"{blob['mediaType']};{blob['digest']};{blob['size']};{diff_id};{form}"
    return b"cog-entry-v2;" + path_fingerprint(info) + b";" + described.encode()


def _read_key(path: Path, kind: str) -> tuple[str, bytes]:
    try:
        text = path.read_text().strip()
    except OSError as e:
        raise SigningError(
            f"cannot read the {kind} key {path} ({e.strerror})",
            hint="give a file written by `cog store generate-key NAME`",
        ) from None
    name, _, encoded = text.partition(":")
    try:
        data = base64.b64decode(encoded, validate=True)
    except ValueError:
        data = b""
    if not name or len(data) != 32:
        raise SigningError(
            f"{path} is not a {kind} key (NAME:BASE64 of 32 bytes)",
            hint="give a file written by `cog store generate-key NAME`",
        )
    return name, data


@dataclass(frozen=True)
class SigningKey:
    name: str
    key: Ed25519PrivateKey

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        name, seed = _read_key(path, "secret")
        return cls(name, Ed25519PrivateKey.from_private_bytes(seed))

    def sign(self, fingerprint: bytes) -> str:
        return f"{self.name}:{base64.b64encode(self.key.sign(fingerprint)).decode()}"


@dataclass(frozen=True)
class TrustedKeys:
    # (name, key) pairs, not a dict: two trusted keys may share a name (a key rotated under
    # the same name), and a signature by either must verify.
    keys: tuple[tuple[str, Ed25519PublicKey], ...] = ()

    @classmethod
    def load(cls, paths: list[Path]) -> TrustedKeys:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        keys = []
        for path in paths:
            name, raw = _read_key(path, "public")
            keys.append((name, Ed25519PublicKey.from_public_bytes(raw)))
        return cls(tuple(keys))

    def verify(self, signatures: Iterable[str], fingerprint: bytes) -> bool:
        """Whether one of `signatures` is a trusted key's over this very fingerprint."""
        from cryptography.exceptions import InvalidSignature

        for signature in signatures:
            name, _, encoded = signature.partition(":")
            try:
                raw = base64.b64decode(encoded, validate=True)
            except ValueError:
                continue
            for key_name, key in self.keys:
                if key_name != name:
                    continue
                try:
                    key.verify(raw, fingerprint)
                    return True
                except InvalidSignature:
                    continue
        return False


# --- content addresses ----------------------------------------------------------------------


def hashes_problem(info: PathInfo) -> str | None:
    """Why `info` cannot describe bytes from elsewhere (blank or malformed hashes), or None:
    a blank hash would let any bytes through the checks made against it."""
    if not HEX64.fullmatch(info.nar_hash) or not HEX64.fullmatch(info.tar_sha256):
        return "its path info has no valid hashes"
    if info.nar_size <= 0 or info.tar_size <= 0:
        return "its path info has no valid sizes"
    return None


def address_problem(info: PathInfo) -> str | None:
    """Why `info`'s name does not follow from its content address, or None (also for an
    input-addressed path, which has none)."""
    ca, path = info.ca, info.path
    if ca is None:
        return None
    kind, _, digest = ca.partition(":")
    if kind == "blake3" and HEX64.fullmatch(digest):
        expected = StorePath.make("source", ca, path.name)
    elif kind == "text" and HEX64.fullmatch(digest):
        refs = ":".join([digest, *(str(r) for r in sorted(set(info.references)))])
        expected = StorePath.make("text", refs, path.name)
    elif kind == "fixed" and DIGEST.fullmatch(digest):
        expected = StorePath.make("fixed:out", digest, path.name)
    else:
        return f"its content address {ca!r} is not one cog makes"
    return None if expected == path else "its name does not match its content address"


def content_problem(info: PathInfo, tree: Path, nar_hash: str) -> str | None:
    """Why the bytes at `tree`, whose nar form hashes to `nar_hash`, are not what `info`'s
    content address says, or None. Call `address_problem` first: together they tie a
    content-addressed path's bytes to its name, whatever else its info claims."""
    kind, _, digest = (info.ca or "").partition(":")
    if kind == "blake3":
        ok = nar_hash == digest
    elif kind == "text":
        ok = tree.is_file() and not tree.is_symlink() and _file_blake3(tree) == digest
    elif kind == "fixed":
        ok = fixed_output_sha256(tree) == digest.removeprefix("sha256:")
    else:
        return None
    return None if ok else "its bytes do not match its content address"


def _file_blake3(path: Path) -> str:
    digest = blake3.blake3()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def generate_key(name: str, directory: Path) -> tuple[Path, Path]:
    """Writes NAME.sec (mode 0600) and NAME.pub in `directory`; refuses to overwrite."""
    check_name(name)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SigningError(f"cannot make {directory} for the keys ({e.strerror})") from None
    secret, public = directory / f"{name}.sec", directory / f"{name}.pub"
    for path in (secret, public):
        if path.exists():
            raise SigningError(f"{path} exists already; cog will not overwrite a key")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes_raw()
    raw = key.public_key().public_bytes_raw()
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(f"{name}:{base64.b64encode(seed).decode()}\n")
    public.write_text(f"{name}:{base64.b64encode(raw).decode()}\n")
    return secret, public


def keys_from_env() -> tuple[SigningKey | None, TrustedKeys]:
    """COG_SIGNING_KEY=FILE and COG_TRUSTED_KEYS=FILE[:FILE…]."""
    signing = os.environ.get("COG_SIGNING_KEY")
    trusted = [Path(p) for p in os.environ.get("COG_TRUSTED_KEYS", "").split(":") if p]
    return (SigningKey.load(Path(signing)) if signing else None), TrustedKeys.load(trusted)

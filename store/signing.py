"""Ed25519 signatures over store path infos, for binary caches.

A key file holds one line, `NAME:BASE64`, as Nix's: the secret key's 32-byte seed in
`NAME.sec`, the public key in `NAME.pub`. A signature is `NAME:BASE64` over the path's
fingerprint: its name, both hashes and sizes, and its references, so a signed path info
cannot be moved to other bytes or another closure. Content-addressed paths need no signature:
their bytes are checked against the name itself.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from store.db import PathInfo
from store.errors import StoreError
from store.paths import check_name

if TYPE_CHECKING:  # cryptography is imported where a key is used: most runs use none
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )


class SigningError(StoreError):
    pass


def fingerprint(info: PathInfo) -> bytes:
    refs = ",".join(str(r) for r in sorted(info.references))
    return (
        f"cog-path-v1;{info.path};{info.nar_hash};{info.nar_size};"
        f"{info.tar_sha256};{info.tar_size};{refs};{info.ca or ''}"
    ).encode()


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

    def sign(self, info: PathInfo) -> str:
        return f"{self.name}:{base64.b64encode(self.key.sign(fingerprint(info))).decode()}"


@dataclass(frozen=True)
class TrustedKeys:
    keys: dict[str, Ed25519PublicKey]

    @classmethod
    def load(cls, paths: list[Path]) -> TrustedKeys:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        keys = {}
        for path in paths:
            name, raw = _read_key(path, "public")
            keys[name] = Ed25519PublicKey.from_public_bytes(raw)
        return cls(keys)

    def verify(self, info: PathInfo) -> bool:
        """Whether one of `info`'s signatures is a trusted key's, over this very info."""
        from cryptography.exceptions import InvalidSignature

        message = fingerprint(info)
        for signature in info.signatures:
            name, _, encoded = signature.partition(":")
            key = self.keys.get(name)
            if key is None:
                continue
            try:
                key.verify(base64.b64decode(encoded), message)
                return True
            except (InvalidSignature, ValueError):
                continue
        return False


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

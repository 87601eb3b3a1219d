"""COG_CA_CERT: one more certificate authority to trust (a company's TLS-inspecting proxy,
Cloudflare WARP), read as Cog reads it: a file, a folder of `.crt`/`.pem` files, the PEM
itself, or the PEM in base64. The image trusts it (builders.ca_cert), and so does what cog
fetches on the host while it resolves and builds (downloads.ssl_context, uv)."""

from __future__ import annotations

import base64
import binascii
import os
import ssl
from pathlib import Path

from derivations.config import ConfigError

VARIABLE = "COG_CA_CERT"
_BEGIN, _END = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
_HINT = f"set {VARIABLE} to a PEM file, a folder of .crt/.pem files, the PEM, or its base64"


def from_environment() -> str | None:
    """The PEM text COG_CA_CERT gives (ending in a newline), or None when it is unset."""
    value = os.environ.get(VARIABLE, "").strip()
    if not value:
        return None
    path = Path(value)
    try:
        is_dir, exists = path.is_dir(), path.exists()
    except OSError:  # a PEM or base64 value too long to be a path
        is_dir = exists = False
    if is_dir:
        return _from_folder(path)
    if exists:
        return _checked(_read(path), value)
    if value.startswith("-----BEGIN"):
        return _checked(value, VARIABLE)
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    if decoded.startswith("-----BEGIN"):
        return _checked(decoded, VARIABLE)
    raise ConfigError(
        f"{VARIABLE}: invalid value - must be a file path, directory, PEM certificate, or "
        "base64-encoded PEM",
        hint=_HINT,
    )


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{VARIABLE}: failed to read file {path}: {e}", hint=_HINT) from None


def _from_folder(folder: Path) -> str:
    """Every .crt and .pem file of the folder (not its subfolders), in name order."""
    found = sorted(
        p for p in folder.iterdir() if p.suffix.lower() in (".crt", ".pem") and not p.is_dir()
    )
    if not found:
        raise ConfigError(
            f"{VARIABLE}: no .crt or .pem files found in directory {folder}", hint=_HINT
        )
    return "".join(_checked(_read(p), str(p)) for p in found)


def _checked(text: str, where: str) -> str:
    """The PEM, trimmed, if it is one or more certificates that OpenSSL can load."""
    content = text.strip()
    if not content.startswith(_BEGIN) or _END not in content:
        raise ConfigError(
            f"{VARIABLE}: invalid certificate in {where}: a PEM certificate starts with "
            f"'{_BEGIN}' and contains '{_END}'",
            hint=_HINT,
        )
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=content)
    except ssl.SSLError as e:
        raise ConfigError(f"{VARIABLE}: invalid certificate in {where}: {e}", hint=_HINT) from None
    return content + "\n"


def joined(*bundles: str) -> str:
    """PEM bundles one after the other, each ending in a newline (an empty one is left out)."""
    return "".join(b if not b or b.endswith("\n") else b + "\n" for b in bundles)


def host_bundle(extra: str, folder: Path) -> Path:
    """A CA bundle file in `folder` for a subprocess that reads SSL_CERT_FILE (uv): what the
    host trusts (SSL_CERT_FILE's bundle, else OpenSSL's default one) and `extra`."""
    named = os.environ.get("SSL_CERT_FILE") or ssl.get_default_verify_paths().cafile
    trusted = Path(named).read_text() if named and os.path.isfile(named) else ""
    bundle = folder / "cog-ca-bundle.crt"
    bundle.write_text(joined(trusted, extra))
    return bundle

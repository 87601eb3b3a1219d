"""A suite's signed `InRelease`: downloaded, its signature checked by gpgv, its hashes read.

Only the text gpgv reports as signed is parsed, so nothing outside the signature can add or
change an index hash. The suite named inside must be the suite asked for, so one suite's
release cannot stand in for another's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from derivations.apt.control import stanzas
from derivations.downloads import get
from derivations.errors import DerivationError


class SignatureError(DerivationError):
    pass


@dataclass(frozen=True)
class IndexFile:
    sha256: str
    size: int


@dataclass(frozen=True)
class Release:
    url: str  # base of the suite: <mirror>/dists/<suite>
    suite: str
    date: str
    files: dict[str, IndexFile]  # path under dists/<suite>/ -> hash and size
    signed_by: tuple[str, ...]  # fingerprints gpgv reported as valid


def verify_clearsigned(data: bytes, keyring: str, what: str) -> tuple[str, tuple[str, ...]]:
    """The signed text of a clearsigned document and the valid signers' fingerprints."""
    gpgv = shutil.which("gpgv")
    if gpgv is None:
        raise SignatureError(
            f"cannot verify {what}: gpgv is not installed", hint="install the gpgv package"
        )
    if not Path(keyring).is_file():
        raise SignatureError(
            f"cannot verify {what}: the keyring {keyring} does not exist",
            hint="install debian-archive-keyring (or fix the channel's keyring)",
        )
    with tempfile.TemporaryDirectory(prefix="cog-gpgv-") as tmp:
        signed, plain = Path(tmp, "InRelease"), Path(tmp, "plain")
        signed.write_bytes(data)
        proc = subprocess.run(
            [gpgv, "--status-fd", "1", "--keyring", keyring, "--output", plain, signed],
            capture_output=True,
            env={"GNUPGHOME": tmp, "PATH": os.environ.get("PATH", "")},
            check=False,
        )
        status = proc.stdout.decode(errors="replace").splitlines()
        valid = tuple(line.split()[2] for line in status if line.startswith("[GNUPG:] VALIDSIG"))
        bad = [line for line in status if line.startswith(("[GNUPG:] BADSIG", "[GNUPG:] ERRSIG"))]
        if proc.returncode != 0 or not valid or bad:
            reason = "a bad signature" if bad or valid else "no valid signature"
            raise SignatureError(
                f"{what} has {reason} for the keyring {keyring}",
                hint="the mirror may be compromised or misconfigured; do not trust it",
            )
        return plain.read_text(encoding="utf-8"), valid


def parse_release(text: str, url: str, suite: str) -> Release:
    fields = next(stanzas(text), {})
    names = {fields.get("Suite"), fields.get("Codename")}
    if suite not in names:
        raise SignatureError(
            f"{url}/InRelease is signed but describes suite {fields.get('Codename')!r}, "
            f"not {suite!r}",
            hint="the mirror serves the wrong release file; check the channel's suites",
        )
    files: dict[str, IndexFile] = {}
    for line in fields.get("SHA256", "").splitlines():
        parts = line.split()
        if len(parts) == 3:
            files[parts[2]] = IndexFile(parts[0], int(parts[1]))
    if not files:
        raise DerivationError(f"{url}/InRelease lists no SHA256 index hashes")
    return Release(url=url, suite=suite, date=fields.get("Date", ""), files=files, signed_by=())


def fetch_release(http: httpx.Client, mirror: str, suite: str, keyring: str) -> Release:
    url = f"{mirror}/dists/{suite}"
    text, signers = verify_clearsigned(get(http, f"{url}/InRelease"), keyring, f"{url}/InRelease")
    release = parse_release(text, url, suite)
    return Release(release.url, suite, release.date, release.files, signers)

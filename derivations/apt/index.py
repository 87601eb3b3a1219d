"""`Packages` indexes: fetched by the hash their signed release gives, parsed into candidates."""

from __future__ import annotations

import datetime
import email.utils
import gzip
import lzma
from dataclasses import dataclass

import httpx

from cuda_channels.channel import Archive
from derivations.apt.control import stanzas
from derivations.apt.release import Release
from derivations.downloads import get_verified
from derivations.errors import DerivationError

# Preferred first: the smallest download; every form is covered by the signed hashes.
_FORMS = ((".xz", lzma.decompress), (".gz", gzip.decompress), ("", lambda b: b))


@dataclass(frozen=True)
class Candidate:
    """One binary package as an index describes it."""

    name: str
    version: str
    arch: str
    archive: str  # the channel archive it comes from
    mirror: str
    snapshot: str  # the snapshot archive's base URL at a time the package was current
    filename: str  # pool path under the mirror
    sha256: str
    size: int
    depends: str
    pre_depends: str
    provides: str
    multi_arch: str
    priority: str

    @property
    def urls(self) -> tuple[str, ...]:
        """The live mirror first (fast while current), then the snapshot (kept forever)."""
        return (f"{self.mirror}/{self.filename}", f"{self.snapshot}/{self.filename}")


def fetch_packages(
    http: httpx.Client,
    release: Release,
    archive: Archive,
    component: str,
    arch: str,
) -> list[Candidate]:
    base = f"{component}/binary-{arch}/Packages"
    for suffix, decompress in _FORMS:
        entry = release.files.get(base + suffix)
        if entry is None:
            continue
        url = f"{release.url}/{base}{suffix}"
        path = get_verified(http, url, entry.sha256, entry.size, "the package index")
        try:
            text = decompress(path.read_bytes()).decode("utf-8")
        except (lzma.LZMAError, OSError, EOFError, UnicodeDecodeError) as e:
            raise DerivationError(f"the package index {url} cannot be read: {e}") from None
        snapshot = archive.snapshot.format(timestamp=snapshot_time(release.date))
        return [_candidate(f, archive, snapshot, arch) for f in stanzas(text) if "Package" in f]
    raise DerivationError(
        f"{release.url}/InRelease lists no {base} index",
        hint=f"check that the channel's components and architecture ({arch}) exist there",
    )


def snapshot_time(release_date: str) -> str:
    """A snapshot.debian.org timestamp a day after the release was signed.

    A snapshot URL shows the archive as of the latest snapshot at or before its timestamp; the
    day's margin covers the hours between signing and the next snapshot, and packages stay in
    the archive far longer than a day, so the pool file is there. Derived from the signed
    date, it is the same on every machine that resolves the same release.
    """
    try:
        signed = email.utils.parsedate_to_datetime(release_date)
    except (TypeError, ValueError):
        raise DerivationError(f"the release date {release_date!r} cannot be read") from None
    return (signed + datetime.timedelta(days=1)).strftime("%Y%m%dT%H%M%SZ")


def _candidate(f: dict[str, str], archive: Archive, snapshot: str, arch: str) -> Candidate:
    try:
        return Candidate(
            name=f["Package"],
            version=f["Version"],
            arch=f.get("Architecture", arch),
            archive=archive.name,
            mirror=archive.mirror,
            snapshot=snapshot,
            filename=f["Filename"],
            sha256=f["SHA256"],
            size=int(f["Size"]),
            depends=f.get("Depends", ""),
            pre_depends=f.get("Pre-Depends", ""),
            provides=f.get("Provides", ""),
            multi_arch=f.get("Multi-Arch", "no"),
            priority=f.get("Priority", "optional"),
        )
    except (KeyError, ValueError) as e:
        raise DerivationError(
            f"package {f.get('Package', '?')} in {archive.mirror} has a bad index entry ({e})"
        ) from None

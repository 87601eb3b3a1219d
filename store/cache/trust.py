"""Whether a cache entry may be believed: by a trusted signature, or by its content address."""

from __future__ import annotations

from store.cache.entry import Entry
from store.signing import TrustedKeys, address_problem


def trust_problem(entry: Entry, keys: TrustedKeys, expected_ca: str | None = None) -> str | None:
    """Why `entry` cannot be trusted, or None. A content-addressed path (a source, a .drv, a
    fixed output) is trusted by its name alone only because its bytes are checked against
    that name before it is registered (`content_problem`); every other path needs a trusted
    key's signature over the whole entry (its info, blob descriptor, diff_id and form)."""
    info = entry.info
    problem = entry.problem()
    if problem is not None:
        return problem
    if info.ca is not None:
        problem = address_problem(info)
        if problem is None and expected_ca is not None and info.ca != expected_ca:
            problem = "its content address is not the one its derivation fixes"
        return problem
    if not info.signatures:
        return "it is not signed"
    if not keys.verify(info.signatures, entry.fingerprint()):
        return "no trusted key signed it"
    return None

from __future__ import annotations

from store.errors import CogError


class DerivationError(CogError):
    """A derivation that cannot be read, hashed or written."""

from __future__ import annotations

from store.errors import StoreError


class DerivationError(StoreError):
    """A derivation that cannot be read, hashed or written."""

"""Errors raised by the store. Each carries one sentence and, where useful, a hint."""

from __future__ import annotations


class StoreError(Exception):
    """Base class: `str(e)` is a complete sentence; `hint` says what to do next."""

    hint: str | None = None

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class InvalidStorePath(StoreError):
    pass


class ArchiveError(StoreError):
    """A tree or archive that cannot be stored or unpacked safely."""


class PathNotValid(StoreError):
    hint = "add or build it first, or check the path with `cog store path-info`"


class CorruptImport(StoreError):
    pass


class HashMismatch(StoreError):
    """What arrived or was built does not hash to what it must."""


class CorruptBlob(StoreError):
    """A stored blob whose bytes no longer hash to its digest: never shipped."""

    hint = "run `cog store verify --repair`, then build again"

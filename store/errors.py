"""The error root, `CogError`, and the store's errors. Each carries one sentence and, where
useful, a hint."""

from __future__ import annotations

import errno
import os
import sqlite3
import sys
from pathlib import Path

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup


class CogError(Exception):
    """The root of every error cog reports as it is: `str(e)` is a complete sentence and
    `hint` says what to do next. Each package has its own branch (the store, channels,
    derivations, builders, the CLI); anything else reaching the CLI is an internal error."""

    hint: str | None = None

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class StoreError(CogError):
    """The store, its transfers and caches."""


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


class RegistryError(StoreError):
    """A registry that cannot be reached, refuses us, or answers what it must not."""


class CorruptBlob(StoreError):
    """A stored blob whose bytes no longer hash to its digest: never shipped."""

    hint = "run `cog store verify --repair`, then build again"


def leaves(error: BaseException) -> list[BaseException]:
    """The errors an exception group (from a trio nursery, nested or not) holds, in order; a
    plain error is its own only leaf."""
    if not isinstance(error, BaseExceptionGroup):
        return [error]
    return [leaf for sub in error.exceptions for leaf in leaves(sub)]


def no_space(error: BaseException, store_dir: Path, during: str | None = None) -> StoreError | None:
    """A full disk or quota as one sentence naming what was being written where (and `during`
    what), with what to do; None for any other error."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        reason = "no space left on device" if error.errno == errno.ENOSPC else "disk quota exceeded"
        if error.filename is not None:
            path = Path(os.fsdecode(error.filename))
            what, where = path.name, path.parent
        else:  # a write to an open file: almost every file cog writes is in the store
            what, where = "to the store", store_dir
    elif isinstance(error, sqlite3.OperationalError) and (
        getattr(error, "sqlite_errorcode", None) == getattr(sqlite3, "SQLITE_FULL", 13)
        or "database or disk is full" in str(error)
    ):
        reason, what, where = "no space left on device", "the store's metadata", store_dir / ".cog"
    else:
        return None
    if during:
        what = f"{what} ({during})"
    return StoreError(
        f"{reason} while writing {what} in {where}",
        hint=f"free some space on the disk that holds {where}, "
        "or set COG_STORE_DIR to a directory on a larger disk",
    )

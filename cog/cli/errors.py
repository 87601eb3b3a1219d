"""How the CLI fails: one sentence, a hint, a non-zero exit, never a traceback."""

from __future__ import annotations

import errno
import os
import sqlite3
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from cuda_channels.channel import ChannelError
from store.errors import StoreError
from store.paths import default_store_dir

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class UsageError(StoreError):
    pass


def run_guarded(fn: Callable[[], int]) -> int:
    try:
        return fn()
    except KeyboardInterrupt:
        print("interrupted; nothing partial was kept", file=sys.stderr)
        return 130
    except (StoreError, ChannelError) as e:
        return _report(str(e), e.hint)
    except BrokenPipeError:
        return 1
    except Exception as e:  # the last line of defence: still one sentence
        leaf = _leaf(e)
        if leaf is not e and isinstance(leaf, (StoreError, ChannelError)):
            return _report(str(leaf), leaf.hint)
        full = no_space(leaf)
        if full is not None:
            return _report(*full)
        if os.environ.get("COG_DEBUG"):
            traceback.print_exc()
        print(f"error: internal error ({type(e).__name__}: {e})", file=sys.stderr)
        print("hint: rerun with COG_DEBUG=1 for the traceback and report it", file=sys.stderr)
        return 70


def _report(message: str, hint: str | None) -> int:
    print(f"error: {message}", file=sys.stderr)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)
    return 1


def _leaf(e: BaseException) -> BaseException:
    """The error worth reporting in an exception group (from a nursery): a StoreError, else a
    full disk, else the first one."""
    if not isinstance(e, BaseExceptionGroup):
        return e
    leaves: list[BaseException] = []
    pending: list[BaseException] = [e]
    while pending:
        current = pending.pop(0)
        if isinstance(current, BaseExceptionGroup):
            pending[:0] = current.exceptions
        else:
            leaves.append(current)
    chosen: list[BaseException] = [x for x in leaves if isinstance(x, StoreError)]
    chosen += [x for x in leaves if no_space(x) is not None]
    return (chosen or leaves or [e])[0]


def no_space(e: BaseException) -> tuple[str, str] | None:
    """A full disk (or quota) as a sentence naming what was written where, and a hint; None
    for any other error."""
    store = default_store_dir()
    if isinstance(e, OSError) and e.errno in NO_SPACE:
        reason = "no space left on device" if e.errno == errno.ENOSPC else "disk quota exceeded"
        if e.filename is not None:
            path = Path(os.fsdecode(e.filename))
            what, where = path.name, path.parent
        else:  # a write to an open file: almost every file a cog command writes is in the store
            what, where = "to the store", store
    elif isinstance(e, sqlite3.OperationalError) and (
        getattr(e, "sqlite_errorcode", None) == getattr(sqlite3, "SQLITE_FULL", 13)
        or "database or disk is full" in str(e)
    ):
        reason, what, where = "no space left on device", "the store's metadata", store / ".cog"
    else:
        return None
    return (
        f"{reason} while writing {what} in {where}",
        f"free some space on the disk that holds {where}, "
        "or set COG_STORE_DIR to a directory on a larger disk",
    )

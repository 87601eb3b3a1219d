"""How the CLI fails: one sentence, a hint, a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable

from store.errors import CogError, leaves, no_space
from store.paths import default_store_dir


def run_guarded(fn: Callable[[], int]) -> int:
    try:
        return fn()
    except KeyboardInterrupt:
        print("interrupted; nothing partial was kept", file=sys.stderr)
        return 130
    except CogError as e:
        return _report(str(e), e.hint)
    except BrokenPipeError:
        return 1
    except Exception as e:  # the last line of defence: still one sentence
        leaf = _leaf(e)
        if leaf is not e and isinstance(leaf, CogError):
            return _report(str(leaf), leaf.hint)
        full = no_space(leaf, default_store_dir())
        if full is not None:
            return _report(str(full), full.hint)
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
    """The error worth reporting in an exception group (from a nursery): a CogError, else a
    full disk, else the first one."""
    found = leaves(e)
    chosen: list[BaseException] = [x for x in found if isinstance(x, CogError)]
    chosen += [x for x in found if no_space(x, default_store_dir()) is not None]
    return (chosen or found)[0]

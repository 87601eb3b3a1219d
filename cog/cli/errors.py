"""How the CLI fails: one sentence, a hint, a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable

from cuda_channels.channel import ChannelError
from store.errors import StoreError


class UsageError(StoreError):
    pass


def run_guarded(fn: Callable[[], int]) -> int:
    try:
        return fn()
    except KeyboardInterrupt:
        print("interrupted; nothing partial was kept", file=sys.stderr)
        return 130
    except (StoreError, ChannelError) as e:
        print(f"error: {e}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 1
    except Exception as e:  # the last line of defence: still one sentence
        if os.environ.get("COG_DEBUG"):
            traceback.print_exc()
        print(f"error: internal error ({type(e).__name__}: {e})", file=sys.stderr)
        print("hint: rerun with COG_DEBUG=1 for the traceback and report it", file=sys.stderr)
        return 70

"""What a service raises when the user's request cannot be done as asked, and how it says what
it goes on without."""

from __future__ import annotations

import sys

from store.errors import CogError


class UsageError(CogError):
    """What the user asked for cannot be done as asked (a flag, a name, a file)."""


def warn(message: str) -> None:
    """What a command goes on without, said once on stderr."""
    print(f"warning: {message}", file=sys.stderr)

"""Named crash points, so tests can SIGKILL the process exactly at a commit boundary.

Set `COG_FAILPOINT=<name>` and the process kills itself when it reaches that point. Production
runs never set it; the check is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal


def failpoint(name: str) -> None:
    if os.environ.get("COG_FAILPOINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)

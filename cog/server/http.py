"""`python -m cog.server.http`: Cog's entry point; the server itself lives in `runtime`.

The runtime runs in its own environment (trio, h11, pydantic, httpx); this module
only hands over, so the SDK itself stays free of dependencies.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    try:
        from runtime.boot import main
    except ImportError as e:
        print(f"error: the Cog runtime is not installed here ({e})", file=sys.stderr)
        sys.exit(1)
    sys.exit(main())

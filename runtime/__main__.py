"""`python -m runtime`: the server, as `python -m cog.server.http` starts it."""

import sys

from runtime.boot import main

sys.exit(main())

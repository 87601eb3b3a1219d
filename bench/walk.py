"""How often `cog build` climbs back to the command line: a real build of a project, traced;
each return from a function of ours below the CLI into a frame of `cog/cli` counts once.

    python bench/walk.py PROJECT_DIR [REPO]      # REPO: the checkout to trace (default: this)

The project is built as it is (a warm store makes it quick); nothing is written but the
build's own outputs.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any


def main() -> None:
    project = Path(sys.argv[1]).resolve()
    repo = Path(sys.argv[2] if len(sys.argv) > 2 else Path(__file__).parent.parent).resolve()
    sys.path.insert(0, str(repo))
    cli = str(repo / "cog" / "cli") + os.sep
    ours = tuple(str(repo / p) + os.sep for p in ("cog", "builders", "derivations", "store"))
    climbs: Counter[str] = Counter()

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event != "return" or frame.f_back is None:
            return
        callee, caller = frame.f_code.co_filename, frame.f_back.f_code.co_filename
        if callee.startswith(ours) and not callee.startswith(cli) and caller.startswith(cli):
            where = f"{Path(caller).name}:{frame.f_back.f_code.co_name}"
            climbs[f"{where} <- {frame.f_code.co_name}"] += 1

    from cog.cli.main import main as cog_main

    os.chdir(project)
    sys.argv = ["cog", "build", "--no-docker-load"]
    sys.setprofile(profile)
    try:
        cog_main()
    except SystemExit:
        pass
    finally:
        sys.setprofile(None)
    for step, count in sorted(climbs.items()):
        print(f"{count:4d}  {step}", file=sys.stderr)
    print(f"returns to the CLI: {sum(climbs.values())} ({len(climbs)} distinct)", file=sys.stderr)


if __name__ == "__main__":
    main()

"""`cog init`: a starting cog.yaml, run.py, requirements.txt and .dockerignore here, as Cog
makes them; files that exist are kept (and said to be skipped)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from store.local import Store

COG_YAML = """\
# The environment your model runs in, and how to run it.
# Reference: https://cog.run/yaml

build:
  # The Python version (3.10 to 3.13).
  python_version: "3.13"

  # Python packages, pinned, one per line (as pip reads them).
  python_requirements: requirements.txt

  # Debian packages the model needs, e.g. ffmpeg or libgl1.
  # system_packages:
  #   - "ffmpeg"

# The class that runs predictions: file and class name.
run: "run.py:Runner"
"""

RUN_PY = '''\
# How your model runs: setup() loads it once, run() answers each request.
# Reference: https://cog.run/python

from cog import BaseRunner, Input, Path


class Runner(BaseRunner):
    def setup(self) -> None:
        """Load the model into memory, once, so that each run is fast."""
        # self.model = torch.load("./weights.pth")

    def run(
        self,
        image: Path = Input(description="An image to process"),
        scale: float = Input(description="How much to scale it", ge=0, le=10, default=1.5),
    ) -> Path:
        """Run one prediction."""
        # processed = preprocess(image)
        # return postprocess(self.model(processed, scale))
        return image
'''

REQUIREMENTS = """\
# Python packages your model needs, pinned to exact versions, e.g.:
# torch==2.5.1
"""

DOCKERIGNORE = """\
# Kept out of the image's /src (Docker's .dockerignore rules).
.git
.venv
__pycache__
*.pyc
.env
"""

FILES = {
    ".dockerignore": DOCKERIGNORE,
    "cog.yaml": COG_YAML,
    "requirements.txt": REQUIREMENTS,
    "run.py": RUN_PY,
}


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("init")
    p.set_defaults(func=cmd_init)


def cmd_init(args: argparse.Namespace, store: Store) -> int:
    print("Setting up the current directory for use with Cog...", file=sys.stderr)
    for name, text in FILES.items():
        path = Path.cwd() / name
        if path.exists() or path.is_symlink():
            print(f"Skipped existing {name}", file=sys.stderr)
            continue
        path.write_text(text)
        print(f"Creating {name}", file=sys.stderr)
    print("Done! Next: edit run.py, then `cog run -i image=@photo.jpg`", file=sys.stderr)
    return 0

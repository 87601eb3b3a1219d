"""Which project a command works on: the nearest directory, from here upwards, with a
cog.yaml, as Cog finds it (so `cog run` works from a project's subdirectory too)."""

from __future__ import annotations

from pathlib import Path


def project_dir() -> Path:
    """The nearest directory from the current one up that holds cog.yaml; the current
    directory itself when none does (commands then say there is no cog.yaml)."""
    here = Path.cwd()
    for directory in (here, *here.parents):
        if (directory / "cog.yaml").is_file():
            return directory
    return here


def has_project() -> bool:
    return (project_dir() / "cog.yaml").is_file()

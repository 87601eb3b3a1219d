"""Flags of Cog's that belong to its Dockerfile generator: accepted, so scripts written for Cog
run unchanged, listed in --help where Cog lists them (each with what it means here), and each
answered with one line saying so when given."""

from __future__ import annotations

import argparse
import sys

# flag -> (argparse options, what it means here)
_FLAGS: dict[str, tuple[dict[str, object], str]] = {
    "--use-cuda-base-image": (
        {"nargs": "?", "const": "true", "metavar": "true|false|auto"},
        "there is no CUDA base image: CUDA comes as NVIDIA's wheels in the model's environment",
    ),
    "--use-cog-base-image": (
        {"nargs": "?", "const": "true", "metavar": "true|false"},
        "there is no Cog base image: every layer is built from pinned sources",
    ),
    "--dockerfile": (
        {"metavar": "FILE"},
        "images are built from cog.yaml, never from a Dockerfile; the file is not read",
    ),
    "--separate-weights": (
        {"action": "store_true"},
        "weights are always layers of their own",
    ),
    "--no-cache": (
        {"action": "store_true"},
        "every layer is content-addressed, so nothing stale is ever reused",
    ),
    "--progress": (
        {"metavar": "auto|tty|plain|quiet"},
        "progress is live on a terminal and plain lines otherwise",
    ),
}

# Cog hides this one from its --help too.
_HIDDEN_IN_COG = {"--dockerfile"}


def add_compat_flags(p: argparse.ArgumentParser) -> None:
    # Every command that may build takes these flags, so `--secret` (a real one) rides along.
    add_secret_flag(p)
    group = p.add_argument_group(
        "Cog's Dockerfile-generator flags (accepted; each changes nothing here)"
    )
    for flag, (options, meaning) in _FLAGS.items():
        shown = argparse.SUPPRESS if flag in _HIDDEN_IN_COG else meaning
        group.add_argument(flag, dest=_dest(flag), help=shown, **options)  # type: ignore[arg-type]


def add_secret_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="id=NAME,src=FILE",
        help="a secret for build.run steps that mount it, from a file or, as id=NAME,env=VAR, "
        "an environment variable (never stored in a layer or the lock)",
    )


def explain_compat_flags(args: argparse.Namespace) -> None:
    """One line on stderr for each such flag given."""
    for flag, (_, meaning) in _FLAGS.items():
        if getattr(args, _dest(flag), None) not in (None, False):
            print(f"note: {flag}: {meaning}", file=sys.stderr)


def _dest(flag: str) -> str:
    return "compat_" + flag.lstrip("-").replace("-", "_")

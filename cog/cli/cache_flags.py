"""The binary-cache flags, apart from the machinery behind them, so that registering a command
that takes them imports nothing heavy (`cog.project.caches` does the work)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_cache_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cache",
        action="append",
        default=[],
        metavar="URL",
        help="a binary cache to use and fill: oci://HOST/REPO or file://DIR (repeatable)",
    )
    p.add_argument(
        "--cache-from",
        action="append",
        default=[],
        metavar="URL",
        help="a binary cache to use, read-only (repeatable)",
    )
    add_key_flags(p)


def add_key_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--signing-key",
        type=Path,
        metavar="FILE",
        help="sign what is published with this key (default: $COG_SIGNING_KEY)",
    )
    p.add_argument(
        "--trusted-key",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="accept paths this public key signed (repeatable; default: $COG_TRUSTED_KEYS)",
    )

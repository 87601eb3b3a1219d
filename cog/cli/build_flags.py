"""The flags of the commands that build (build, push, run, serve, exec), and the typed options
the services take, made from them."""

from __future__ import annotations

import argparse
from pathlib import Path

from builders.image import MAX_LAYERS
from cog.cli.cache_flags import add_cache_flags
from cog.cli.compat import add_compat_flags
from cog.project.options import BuildOptions, CacheOptions


def add_lock_mode_flags(p: argparse.ArgumentParser) -> None:
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--locked", action="store_true", help="refuse a missing or stale cog.lock")
    mode.add_argument("--frozen", action="store_true", help="use cog.lock as it is")


def add_image_flags(p: argparse.ArgumentParser) -> None:
    """What building an image reads: how to lock, for which platform, how to lay out layers,
    and the caches."""
    add_compat_flags(p)
    add_lock_mode_flags(p)
    p.add_argument("--arch", choices=["amd64", "arm64"], default="amd64")
    p.add_argument("-j", "--jobs", type=int, default=None, help="parallel builds")
    p.add_argument(
        "--max-layers",
        type=int,
        default=MAX_LAYERS,
        help=f"group small store paths to stay within this many layers (default {MAX_LAYERS})",
    )
    p.add_argument(
        "--compression",
        choices=["gzip", "zstd"],
        default="gzip",
        help="layer compression (default gzip; zstd needs Docker 23 or later to load)",
    )
    add_cache_flags(p)


def build_options(args: argparse.Namespace) -> BuildOptions:
    """The options the flags give (flags a command does not take keep their defaults)."""
    caches = CacheOptions(
        read_write=tuple(getattr(args, "cache", None) or ()),
        read_only=tuple(getattr(args, "cache_from", None) or ()),
        signing_key=getattr(args, "signing_key", None),
        trusted_keys=tuple(getattr(args, "trusted_key", None) or ()),
    )
    return BuildOptions(
        arch=args.arch,
        locked=args.locked,
        frozen=args.frozen,
        jobs=args.jobs,
        secrets=tuple(getattr(args, "secret", None) or ()),
        cwd=Path.cwd(),
        max_layers=getattr(args, "max_layers", MAX_LAYERS),
        compression=getattr(args, "compression", "gzip"),
        caches=caches,
    )

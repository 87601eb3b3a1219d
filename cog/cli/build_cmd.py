"""`cog build`: lock if needed (or refuse, with --locked), realise every layer, then the image."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cog.cli.build_flags import add_image_flags, build_options
from cog.cli.cog_flags import (
    add_build_noted_flags,
    add_config_flag,
    add_noted_flag,
    add_timestamp_flag,
)
from cog.project.locate import project_dir
from cog.project.outputs import build_and_deliver
from store.local import Store


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("build")
    add_image_flags(p)
    add_config_flag(p)
    add_build_noted_flags(p)
    add_timestamp_flag(p)
    add_noted_flag(
        p,
        "--skip-schema-validation",
        "the predictor's schema is always generated, as the image's label needs it",
        hidden=True,
    )
    p.add_argument("-t", "--tag", help="the image's name (default: cog.yaml's image, or cog-DIR)")
    p.add_argument(
        "--output",
        help="also write the image elsewhere: oci:DIR, docker-archive:FILE, or docker (the engine)",
    )
    p.add_argument(
        "--no-docker-load",
        action="store_true",
        help="do not load the image into a reachable Docker engine (it stays in the store)",
    )
    p.set_defaults(func=cmd_build)


def cmd_build(args: argparse.Namespace, store: Store) -> int:
    options = build_options(args)
    name = build_and_deliver(
        store, project_dir(), options, args.tag, args.output, not args.no_docker_load
    )
    print(f"Image built as {name}", file=sys.stderr)
    return 0

"""Flags of Cog's CLI that every command of ours takes as Cog's does, registered once: `-f/--file`
(the config file), flags Cog has that mean nothing here (each accepted, and answered with one
line saying so), and `--use-replicate-token`.
tests/conformance/test_conformance_cli.py holds them to Cog's command definitions."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

CONFIG_FILE = "cog.yaml"


def _config_file(value: str) -> str:
    if os.path.normpath(value) != CONFIG_FILE:
        raise argparse.ArgumentTypeError(
            f"{value!r}: only {CONFIG_FILE} is read (a project's lock and store paths are its "
            f"{CONFIG_FILE}'s); rename the file to {CONFIG_FILE}"
        )
    return CONFIG_FILE


def add_config_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-f",
        "--file",
        default=CONFIG_FILE,
        type=_config_file,
        metavar="NAME",
        help=f"the name of the config file (only {CONFIG_FILE}, as Cog's default)",
    )


class _Noted(argparse.Action):
    """A flag of Cog's that means nothing here: taken (with a value where Cog's takes one), and
    answered on stderr with what it means here."""

    def __init__(self, *args: Any, meaning: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.meaning = meaning

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, True if self.nargs == 0 else values)
        print(f"note: {option_string}: {self.meaning}", file=sys.stderr)


def add_noted_flag(
    p: argparse.ArgumentParser,
    flag: str,
    meaning: str,
    takes: str | None = None,
    hidden: bool = False,
    kind: Any = str,
) -> None:
    """`flag` as Cog takes it (a boolean, or one value named `takes`), answered with `meaning`;
    hidden from --help where Cog hides it."""
    options: dict[str, Any] = (
        {"nargs": 0, "default": False}
        if takes is None
        else {"metavar": takes, "default": None, "type": kind}
    )
    p.add_argument(
        flag,
        action=_Noted,
        meaning=meaning,
        dest="cog_" + flag.lstrip("-").replace("-", "_"),
        help=argparse.SUPPRESS if hidden else f"accepted as Cog's; here: {meaning}",
        **options,
    )


def add_build_noted_flags(p: argparse.ArgumentParser) -> None:
    """Cog's image-builder flags that our builds answer by construction."""
    add_noted_flag(
        p,
        "--openapi-schema",
        "the OpenAPI schema is generated from the predictor; the file is not read",
        takes="FILE",
    )
    for flag, meaning in (
        ("--strip", "shared libraries come from pinned packages and are not stripped"),
        ("--precompile", "Python files are compiled when their layer is built"),
    ):
        add_noted_flag(p, flag, meaning, hidden=True)


def add_timestamp_flag(p: argparse.ArgumentParser) -> None:
    add_noted_flag(
        p,
        "--timestamp",
        "every file of every layer already has a fixed timestamp (reproducible images)",
        takes="SECONDS",
        hidden=True,
        kind=int,
    )


class _ReplicateToken(argparse.Action):
    """Cog's `--use-replicate-token`: REPLICATE_API_TOKEN from here, for the model. Cog sends it
    in the prediction's context; here it is in the model's environment (as `-e` sets it),
    where Replicate's client reads it."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        token = os.environ.get("REPLICATE_API_TOKEN", "")
        if not token:
            parser.error(
                "Failed to find REPLICATE_API_TOKEN in the current environment when called "
                "with --use-replicate-token"
            )
        setattr(namespace, self.dest, True)
        env = list(getattr(namespace, "env", None) or [])
        namespace.env = [*env, f"REPLICATE_API_TOKEN={token}"]


def add_replicate_token_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--use-replicate-token",
        action=_ReplicateToken,
        nargs=0,
        default=False,
        help="pass REPLICATE_API_TOKEN from this environment to the model",
    )


def uint32(value: str) -> int:
    """A number as Cog's Uint32 flags read it (Go's strconv.ParseUint, base prefixes too)."""
    try:
        number = int(value, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {value!r}: not a whole number") from None
    if not 0 <= number < 2**32:
        raise argparse.ArgumentTypeError(f"invalid value {value!r}: out of range")
    return number

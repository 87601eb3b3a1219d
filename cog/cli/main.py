"""Entry point of the `cog` command."""

from __future__ import annotations

import argparse
import sys
from importlib import metadata

from cog.cli import (
    build_cmd,
    channel_cmd,
    doctor_cmd,
    exec_cmd,
    init_cmd,
    lock_cmd,
    predict_cmd,
    push_cmd,
    store_cmd,
    weights_cmd,
)
from cog.cli.compat import explain_compat_flags
from cog.cli.errors import run_guarded
from store.local import Store


def version() -> str:
    try:
        return metadata.version("cog-hermetic")
    except metadata.PackageNotFoundError:
        return "unknown"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        print(f"hint: run `{self.prog} --help` for usage", file=sys.stderr)
        raise SystemExit(2)


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="cog", description="Hermetic, reproducible Cog images from a content-addressed store."
    )
    p.add_argument("--version", action="version", version=f"cog-hermetic {version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    store_cmd.register(sub)
    channel_cmd.register(sub)
    predict_cmd.register(sub)
    lock_cmd.register(sub)
    build_cmd.register(sub)
    push_cmd.register(sub)
    exec_cmd.register(sub)
    init_cmd.register(sub)
    doctor_cmd.register(sub)
    weights_cmd.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    explain_compat_flags(args)

    def run() -> int:
        store = Store()
        try:
            return int(args.func(args, store))
        finally:
            store.close()

    return run_guarded(run)


if __name__ == "__main__":
    sys.exit(main())

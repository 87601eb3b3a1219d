"""Entry point of the `cog` command."""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib import metadata

from cog.cli.compat import explain_compat_flags
from cog.cli.errors import run_guarded
from store.local import Store

# Each command's module, in the order `cog --help` lists them. Only the module of the command
# being run is imported: most of the time cog takes to start is imports.
COMMANDS: dict[str, str] = {
    "store": "store_cmd",
    "channel": "channel_cmd",
    "serve": "predict_cmd",
    "run": "predict_cmd",
    "predict": "predict_cmd",
    "train": "predict_cmd",
    "lock": "lock_cmd",
    "build": "build_cmd",
    "push": "push_cmd",
    "login": "push_cmd",
    "exec": "exec_cmd",
    "init": "init_cmd",
    "doctor": "doctor_cmd",
    "weights": "weights_cmd",
    "debug": "debug_cmd",
}


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


def parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser for `command` alone when it is one of cog's, else for every command (for
    `cog --help`, `--version` and a command that does not exist)."""
    p = _Parser(
        prog="cog", description="Hermetic, reproducible Cog images from a content-addressed store."
    )
    p.add_argument("--version", action="version", version=f"cog-hermetic {version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    modules = [COMMANDS[command]] if command in COMMANDS else dict.fromkeys(COMMANDS.values())
    for module in modules:
        importlib.import_module(f"cog.cli.{module}").register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    args = parser(command).parse_args(argv)
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

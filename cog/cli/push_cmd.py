"""`cog push` and `cog login`: the project's image to a registry, and the credentials for it."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from cog.cli.build_flags import add_image_flags, build_options
from cog.cli.cog_flags import add_build_noted_flags, add_config_flag
from cog.project.errors import UsageError
from cog.project.locate import project_dir
from cog.project.push import push_project
from store.local import Store
from store.registry import login


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("push")
    p.add_argument("image", nargs="?", help="HOST/NAME[:TAG] (default: cog.yaml's image)")
    add_image_flags(p)
    add_config_flag(p)
    add_build_noted_flags(p)
    p.add_argument("--uploads", type=int, default=4, help="parallel blob uploads (default 4)")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("login")
    p.add_argument(
        "registry", nargs="?", default="r8.im", help="HOST[:PORT] (default r8.im, as Cog's)"
    )
    p.add_argument("-u", "--username", help="the user name (asked for if not given)")
    p.add_argument(
        "--password-stdin",
        "--token-stdin",  # Cog's name: a Replicate token is the registry's password
        action="store_true",
        help="read the password (a Replicate token, for r8.im) from stdin",
    )
    p.set_defaults(func=cmd_login)


def cmd_push(args: argparse.Namespace, store: Store) -> int:
    options = build_options(args)
    pushed = push_project(store, project_dir(), args.image, options, args.uploads)
    print(f"pushed {pushed}")
    return 0


def cmd_login(args: argparse.Namespace, store: Store) -> int:
    host = args.registry.removeprefix("https://").removeprefix("http://").rstrip("/")
    username = args.username or (input("Username: ") if sys.stdin.isatty() else "")
    if not username:
        raise UsageError("no user name given", hint="pass -u NAME")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
    else:
        raise UsageError("no password given", hint="pipe it in with --password-stdin")
    if not password:
        raise UsageError("the password is empty")
    saved = login(host, username, password)
    print(f"logged in to {host}; credentials saved in {saved}")
    return 0

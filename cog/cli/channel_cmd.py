"""`cog channel …`: list the channels, show one, resolve a userland's packages from one."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cuda_channels.channel import DEFAULT_CHANNEL, Channel, available, load
from derivations.apt import resolve_root
from store.local import Store


def register(sub: argparse._SubParsersAction[Any]) -> None:
    channel = sub.add_parser("channel")
    cmds = channel.add_subparsers(dest="channel_cmd", metavar="COMMAND", required=True)

    p = cmds.add_parser("list", help="list the known channels")
    p.set_defaults(func=cmd_list)

    p = cmds.add_parser("show", help="show a channel's archives, base set and Pythons")
    p.add_argument("name", nargs="?", default=DEFAULT_CHANNEL)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_show)

    p = cmds.add_parser(
        "resolve", help="resolve the root layers' .debs for system packages (as a lock would)"
    )
    p.add_argument("packages", nargs="*", help="system packages, e.g. ffmpeg libgl1")
    p.add_argument("--channel", default=DEFAULT_CHANNEL)
    p.add_argument("--arch", default="amd64")
    p.add_argument("--python", default="3.11", help="Python version (default: 3.11)")
    p.set_defaults(func=cmd_resolve)


def cmd_list(args: argparse.Namespace, store: Store) -> int:
    for name in available():
        channel = load(name)
        print(f"{name}  {channel.revision[:12]}  {channel.description}")
    return 0


def describe(channel: Channel) -> dict[str, Any]:
    return {
        "name": channel.name,
        "revision": channel.revision,
        "description": channel.description,
        "architectures": list(channel.architectures),
        "keyring": channel.keyring,
        "archives": [
            {
                "name": a.name,
                "mirror": a.mirror,
                "snapshot": a.snapshot,
                "suites": list(a.suites),
                "components": list(a.components),
            }
            for a in channel.archives
        ],
        "base_packages": list(channel.base_packages),
        "tool_packages": list(channel.tool_packages),
        "python": {
            v: {"source": p.source, "version": p.version}
            | ({"packages": list(p.packages)} if p.packages else {})
            | ({"platforms": p.platforms} if p.platforms else {})
            for v, p in sorted(channel.python.items())
        },
    }


def cmd_show(args: argparse.Namespace, store: Store) -> int:
    channel = load(args.name)
    if args.json:
        print(json.dumps(describe(channel), indent=2))
        return 0
    print(f"channel:       {channel.name} ({channel.description})")
    print(f"revision:      {channel.revision}")
    print(f"architectures: {', '.join(channel.architectures)}")
    print(f"keyring:       {channel.keyring}")
    for a in channel.archives:
        suites, components = " ".join(a.suites), " ".join(a.components)
        print(f"archive:       {a.name}: {a.mirror} {suites} [{components}]")
        print(f"  snapshot:    {a.snapshot}")
    print(f"base set:      {' '.join(channel.base_packages)}")
    print(f"tools:         {' '.join(channel.tool_packages)}")
    for version, p in sorted(channel.python.items()):
        detail = " ".join(p.packages) if p.packages else ", ".join(sorted(p.platforms))
        print(f"python {version}:   {p.source} {p.version} ({detail})")
    return 0


def cmd_resolve(args: argparse.Namespace, store: Store) -> int:
    channel = load(args.channel)
    pins = resolve_root(channel, args.arch, args.python, args.packages)
    result = {
        "channel": {"name": channel.name, "revision": channel.revision},
        "arch": args.arch,
        "base": [p.to_json() for p in pins.base],
        "python": [p.to_json() for p in pins.python],
        "system": [p.to_json() for p in pins.system],
    }
    print(json.dumps(result, indent=2))
    return 0

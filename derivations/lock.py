"""cog.lock: everything a build reads, pinned; written deterministically; checked for drift.

The lock records the inputs it was resolved from (Python version, requirement lines,
system packages, channel revision, architecture), so `--check` and `cog build --locked` can
name exactly what drifted without resolving anything. The runtime's own packages are
resolved separately from the model's, so a user's pins can never conflict with ours.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cuda_channels.channel import Channel
from derivations.apt import resolve_root
from derivations.config import CogConfig, requirement_lines
from derivations.errors import DerivationError
from derivations.pylock import Wheel, resolve

LOCK_FILE = "cog.lock"
LOCK_VERSION = 1
# The runtime environment (the server), locked on its own: see DESIGN.md, "Images".
RUNTIME_REQUIREMENTS = (
    "trio>=0.25",
    "h11>=0.14",
    "pydantic>=2.6",
    "httpx>=0.27",
)


class LockError(DerivationError):
    pass


def inputs(config: CogConfig, project: Path, channel: Channel, arch: str) -> dict[str, Any]:
    return {
        "arch": arch,
        "channel": {"name": channel.name, "revision": channel.revision},
        "python_version": config.build.python_version,
        "requirements": requirement_lines(config, project),
        "system_packages": sorted(config.build.system_packages),
    }


def create(
    config: CogConfig,
    project: Path,
    channel: Channel,
    arch: str,
    previous: dict[str, Any] | None = None,
    upgrade: Sequence[str] | bool = False,
) -> dict[str, Any]:
    """Resolves every input for the target; `previous` pins are kept where they still fit."""
    recorded = inputs(config, project, channel, arch)
    python = config.build.python_version
    source = channel.python_source(python)
    interpreter: dict[str, Any] = {"source": source.source, "version": source.version}
    if source.source == "python-build-standalone":
        interpreter.update(source.platforms[arch])
    roots = resolve_root(channel, arch, python, config.build.system_packages)
    old = previous or {}

    def pins(key: str) -> list[Wheel]:
        return [Wheel.from_json(w) for w in old.get(key, [])]

    model = resolve(
        recorded["requirements"], python, arch, channel.glibc, pins("python_packages"), upgrade
    )
    # The runtime comes from the same indexes the project names (a company mirror, say).
    index_options = [line for line in recorded["requirements"] if line.startswith("-")]
    runtime = resolve(
        [*index_options, *RUNTIME_REQUIREMENTS],
        python,
        arch,
        channel.glibc,
        pins("runtime_packages"),
        upgrade,
    )
    return {
        "version": LOCK_VERSION,
        "inputs": recorded,
        "platform": {"os": "linux", "arch": arch, "glibc": channel.glibc},
        "python": interpreter,
        "system": {
            "base": [p.to_json() for p in roots.base],
            "python": [p.to_json() for p in roots.python],
            "packages": [p.to_json() for p in roots.system],
        },
        "python_packages": [w.to_json() for w in model],
        "runtime_packages": [w.to_json() for w in runtime],
    }


def dumps(lock: dict[str, Any]) -> str:
    """The same lock always gives the same bytes."""
    return json.dumps(lock, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def read(project: Path) -> dict[str, Any] | None:
    path = project / LOCK_FILE
    if not path.is_file():
        return None
    try:
        lock: dict[str, Any] = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise LockError(
            f"{LOCK_FILE} is not valid JSON ({e})", hint="run `cog lock` to rewrite it"
        ) from None
    if lock.get("version") != LOCK_VERSION:
        raise LockError(
            f"{LOCK_FILE} has schema version {lock.get('version')!r}; "
            f"this cog writes {LOCK_VERSION}",
            hint="run `cog lock` to rewrite it",
        )
    return lock


def write(project: Path, lock: dict[str, Any]) -> bool:
    """Writes the lock atomically; False when it was already identical."""
    path = project / LOCK_FILE
    text = dumps(lock)
    if path.is_file() and path.read_text() == text:
        return False
    tmp = path.with_name(f".{LOCK_FILE}.{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


def _listed(items: Sequence[str]) -> str:
    return ", ".join(items) if items else "nothing"


def drift(
    lock: dict[str, Any], config: CogConfig, project: Path, channel: Channel, arch: str
) -> list[str]:
    """What changed since the lock was written, one sentence each; empty when it is fresh."""
    was = lock.get("inputs", {})
    now = inputs(config, project, channel, arch)
    changes = []
    if was.get("python_version") != now["python_version"]:
        changes.append(
            f"python_version changed from {was.get('python_version')} to {now['python_version']}"
        )
    if was.get("arch") != now["arch"]:
        changes.append(f"the target architecture changed from {was.get('arch')} to {now['arch']}")
    if was.get("channel") != now["channel"]:
        before, after = was.get("channel") or {}, now["channel"]
        if before.get("name") != after["name"]:
            changes.append(f"the channel changed from {before.get('name')} to {after['name']}")
        else:
            changes.append(
                f"channel {after['name']} changed (revision "
                f"{str(before.get('revision'))[:12]} -> {after['revision'][:12]})"
            )
    for key, label in (
        ("requirements", "Python requirements"),
        ("system_packages", "system_packages"),
    ):
        old, new = was.get(key, []), now[key]
        if old != new:
            added = [r for r in new if r not in old]
            removed = [r for r in old if r not in new]
            changes.append(f"{label} changed: added {_listed(added)}; removed {_listed(removed)}")
    return changes

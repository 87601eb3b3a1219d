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
from dataclasses import replace
from pathlib import Path
from typing import Any

from cuda_channels.channel import Channel, default_for
from cuda_channels.cuda import Choice, load_cuda, select, wheel_layer
from derivations.apt import resolve_root, resolve_toolchain
from derivations.config import CogConfig, RunItem, requirement_lines
from derivations.errors import DerivationError
from derivations.pylock import Wheel, resolve
from derivations.requirements import (
    Pinned,
    absolute_url,
    check_hashes,
    folder_url,
    local_files,
    relative_url,
    resolver_lines,
    with_included,
)

LOCK_FILE = "cog.lock"
LOCK_VERSION = 1
# What Cog's own SDK package depends on (replicate/cog pyproject.toml): in a Cog image these are
# in the model's environment, and models import them without naming them (cog-examples'
# hello-train imports requests). They are resolved with the model's requirements, as pip
# installs the cog wheel beside them.
SDK_REQUIREMENTS = (
    "requests>=2.25.0",
    "pyyaml>=6.0",
    "structlog>=21.0.0",
    "typing_extensions>=4.0",
)
# The runtime environment (the server), locked on its own: see DESIGN.md, "Images".
RUNTIME_REQUIREMENTS = (
    "trio>=0.25",
    "h11>=0.14",
    "pydantic>=2.6",
    "httpx>=0.27",
)


# requirements.txt options that say where packages come from (the runtime is resolved there too).
INDEX_OPTIONS = ("-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--no-index")


class LockError(DerivationError):
    pass


def channel_name(config: CogConfig, previous: dict[str, Any] | None) -> str:
    """The channel to lock on when none is asked for: the lock's, while its Python version is
    still the project's; otherwise the channel that suits the project's Python
    (`cuda_channels.default_for`: trixie's Debian ships 3.13)."""
    was = (previous or {}).get("inputs", {})
    name = was.get("channel", {}).get("name")
    if name and was.get("python_version") == config.build.python_version:
        return str(name)
    return default_for(config.build.python_version)


def step_input(item: RunItem) -> dict[str, Any]:
    """A build.run step as the lock records it: its command and where its secrets are
    mounted (never a secret's source or bytes)."""
    record: dict[str, Any] = {"command": item.command.strip()}
    if item.mounts:
        record["secrets"] = [{"id": m.id, "target": m.target} for m in item.mounts]
    return record


def inputs(config: CogConfig, project: Path, channel: Channel, arch: str) -> dict[str, Any]:
    recorded: dict[str, Any] = {
        "arch": arch,
        "channel": {"name": channel.name, "revision": channel.revision},
        "python_version": config.build.python_version,
        "requirements": requirement_lines(config, project),
        "system_packages": sorted(config.build.system_packages),
    }
    files = local_files(recorded["requirements"], project)
    if files:  # absent without local files, so other locks keep their bytes
        recorded["requirement_files"] = files
    if config.build.steps:  # absent without steps, so such locks keep their bytes
        recorded["run"] = [step_input(item) for item in config.build.steps]
    if config.build.gpu:  # absent without a GPU, likewise
        data = load_cuda()
        recorded["gpu"] = {
            "cuda": config.build.cuda,
            "cudnn": config.build.cudnn,
            "data": {"name": data.name, "revision": data.revision},
        }
    return recorded


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
    gpu: Choice | None = None
    cuda_wheels: list[str] = []
    if config.build.gpu:
        # The CUDA and cuDNN the project gets (a `cuda:` that contradicts the torch pin fails
        # here, before anything is fetched), and the CUDA layer: NVIDIA's wheels, resolved
        # and pinned with the model's requirements.
        data = load_cuda()
        gpu = select(data, recorded["requirements"], config.build.cuda, config.build.cudnn)
    lines = resolver_lines(recorded["requirements"], project)
    if gpu is not None:
        gpu, cuda_wheels = wheel_layer(data, gpu, lines, config.build.cudnn)
    python = config.build.python_version
    source = channel.python_source(python)
    interpreter: dict[str, Any] = {"source": source.source, "version": source.version}
    if source.source == "python-build-standalone":
        interpreter.update(source.platforms[arch])
    roots = resolve_root(channel, arch, python, config.build.system_packages)
    old = previous or {}

    def pins(key: str) -> list[Wheel]:
        found = [Wheel.from_json(w) for w in old.get(key, [])]
        return [replace(w, url=absolute_url(w.url, project)) for w in found]

    model = resolve(
        [*lines, *SDK_REQUIREMENTS, *cuda_wheels],
        python,
        arch,
        channel.glibc,
        pins("python_packages"),
        upgrade,
    )
    hashed = with_included(recorded["requirements"], project)
    check_hashes(hashed, [Pinned(w.name, w.sha256) for w in model])
    model = [replace(w, url=folder_url(relative_url(w.url, project))) for w in model]
    # The runtime comes from the same indexes the project names (a company mirror, say), and
    # from nothing else the requirements say (constraints are the model's).
    index_options = [line for line in lines if line.startswith(INDEX_OPTIONS)]
    runtime = resolve(
        [*index_options, *RUNTIME_REQUIREMENTS],
        python,
        arch,
        channel.glibc,
        pins("runtime_packages"),
        upgrade,
    )
    system: dict[str, Any] = {
        "base": [p.to_json() for p in roots.base],
        "python": [p.to_json() for p in roots.python],
        "packages": [p.to_json() for p in roots.system],
    }
    sdists = [w.name for w in (*model, *runtime) if w.is_sdist]
    if sdists:  # their compilers: a build-only layer, pinned like every .deb
        if not channel.toolchain_packages:
            raise LockError(
                f"{', '.join(sdists)} must be built from source, but channel {channel.name} "
                "names no toolchain_packages to build with",
                hint="pin versions that publish wheels, or use a channel with a toolchain",
            )
        system["toolchain"] = [p.to_json() for p in resolve_toolchain(channel, arch, python)]
    return {
        **({"cuda": gpu.to_json() | {"wheels": cuda_wheels}} if gpu is not None else {}),
        "version": LOCK_VERSION,
        "inputs": recorded,
        "platform": {"os": "linux", "arch": arch, "glibc": channel.glibc},
        "python": interpreter,
        "system": system,
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
    if was.get("gpu") != now.get("gpu"):
        before, after = was.get("gpu") or {}, now.get("gpu") or {}
        if bool(before) != bool(after):
            changes.append(f"gpu changed to {str(bool(after)).lower()}")
        elif before.get("data") != after.get("data"):
            changes.append(f"the CUDA data changed (now {after['data']['name']})")
        else:
            changes.append("build.cuda or build.cudnn changed")
    old_files, new_files = was.get("requirement_files", {}), now.get("requirement_files", {})
    for path in sorted(set(old_files) | set(new_files)):
        if path in old_files and path in new_files and old_files[path] != new_files[path]:
            changes.append(f"{path}, which the requirements name, changed")
    old_steps, new_steps = was.get("run", []), now.get("run", [])
    if old_steps != new_steps:
        added = [s["command"] for s in new_steps if s not in old_steps]
        removed = [s["command"] for s in old_steps if s not in new_steps]
        changes.append(
            f"build.run changed: added {_listed(added)}; removed {_listed(removed)}"
            if added or removed
            else "build.run changed order"
        )
    elif len(lock.get("run", [])) != len(new_steps):
        changes.append("cog.lock does not pin every build.run step")
    return changes

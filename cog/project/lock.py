"""Locking a project: cog.lock written afresh (`lock_project`), checked (`check_lock`), or, for
a build, read and relocked when allowed and needed (`plan_build`, which also plans the layers:
once per build, the steps' pins and the build sharing one plan)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from builders.build_secrets import Secrets, parse_secrets
from builders.hook_root import LockRoots
from builders.layers import Layers
from builders.progress import default_reporter
from builders.run_step import pin_steps
from cog.project.errors import UsageError, warn
from cog.project.options import BuildOptions
from cog.project.plan import add_steps, check_buildable, layers
from cuda_channels.channel import Channel, load
from derivations import ca_cert
from derivations import lock as locking
from derivations.config import CogConfig, deprecations, load_config
from store.local import Store


@dataclass(frozen=True)
class Plan:
    """What one build builds: the config and lock it reads, and its layers."""

    project: Path
    config: CogConfig
    lock: locking.Lock
    channel: Channel
    layers: Layers
    secrets: Secrets


@dataclass(frozen=True)
class Locked:
    """What `cog lock` wrote: the lock, and whether its bytes changed."""

    lock: locking.Lock
    changed: bool


def plan_build(store: Store, project: Path, options: BuildOptions) -> Plan:
    """The config, a lock to build from (relocked when `options` allow it and it is missing
    or stale) and the layers, planned once."""
    config = load_config(project)
    for warning in deprecations(project):
        print(warning, file=sys.stderr)
    check_buildable(config)
    secrets = parse_secrets(options.secrets, options.cwd)
    trust = ca_cert.from_environment()  # a bad value fails before anything is locked
    lock = locking.read(project)
    channel = load(locking.channel_name(config, lock))
    stale = _why_relock(project, config, lock, channel, options)
    if trust is not None:
        print(f"Injecting CA certificate from {ca_cert.VARIABLE}", file=sys.stderr)
    if stale is None and lock is not None:
        planned = layers(store, project, config, lock, channel, with_steps=False, ca_cert=trust)
    else:
        print(stale, file=sys.stderr)
        previous = lock
        roots = LockRoots(store, options.jobs)
        lock = locking.create(
            config, project, channel, options.arch, previous, warn=warn, roots=roots
        )
        planned = layers(store, project, config, lock, channel, with_steps=False, ca_cert=trust)
        lock = _pin_steps(store, config, lock, previous, planned, secrets, options.jobs)
        locking.write(project, lock)
    return Plan(project, config, lock, channel, add_steps(planned, config, lock), secrets)


def _why_relock(
    project: Path,
    config: CogConfig,
    lock: locking.Lock | None,
    channel: Channel,
    options: BuildOptions,
) -> str | None:
    """None when `lock` is to be built from as it is; else the line that says why it is
    relocked (refused when `options` say the lock must not change)."""
    if lock is None:
        if options.locked or options.frozen:
            raise UsageError("there is no cog.lock", hint="run `cog lock` first")
        return "no cog.lock yet: locking"
    if options.frozen:
        return None
    drift = locking.drift(lock, config, project, channel, options.arch)
    if not drift:
        return None
    if options.locked:
        raise UsageError("cog.lock is stale: " + "; ".join(drift), hint="run `cog lock`")
    return "cog.lock is stale (" + "; ".join(drift) + "): locking"


def lock_project(
    store: Store,
    project: Path,
    arch: str,
    channel_name: str | None,
    upgrade: bool | list[str],
    secrets: Secrets,
) -> Locked:
    """`cog lock`: every input of the build pinned into cog.lock (re-resolving the packages
    `upgrade` names, or all of them), build.run steps pinned by building them."""
    config = load_config(project)
    try:
        previous = locking.read(project)
    except locking.LockError as e:
        # What the error's hint asks for: a lock this cog cannot read is written afresh.
        print(f"{e}: rewriting it", file=sys.stderr)
        previous = None
    channel = load(channel_name or locking.channel_name(config, previous))
    result = locking.create(
        config, project, channel, arch, previous, upgrade, warn=warn, roots=LockRoots(store)
    )
    if config.build.steps:
        trust = ca_cert.from_environment()
        planned = layers(store, project, config, result, channel, with_steps=False, ca_cert=trust)
        result = _pin_steps(
            store, config, result, previous, planned, secrets, None, upgrade is True
        )
    return Locked(result, locking.write(project, result))


def check_lock(project: Path, arch: str, channel_name: str | None) -> None:
    """`cog lock --check`: refused, saying why, unless cog.lock is there and fresh."""
    config = load_config(project)
    previous = locking.read(project)
    if previous is None:
        raise UsageError("there is no cog.lock", hint="run `cog lock` to create it")
    channel = load(channel_name or locking.channel_name(config, previous))
    changes = locking.drift(previous, config, project, channel, arch)
    if changes:
        raise UsageError("cog.lock is stale: " + "; ".join(changes), hint="run `cog lock`")


def _pin_steps(
    store: Store,
    config: CogConfig,
    lock: locking.Lock,
    previous: locking.Lock | None,
    planned: Layers,
    secrets: Secrets,
    jobs: int | None,
    upgrade: bool = False,
) -> locking.Lock:
    """`lock` with its build.run steps pinned: building them over `planned` is how cog
    learns which need the network (builders.run_step.pin_steps)."""
    if not config.build.steps:
        return lock
    old = (previous.run if previous else None) or ()
    options = {"jobs": jobs, "reporter": default_reporter()}
    pins = pin_steps(
        store, planned.roots, planned.model_env, config, old, secrets, upgrade, **options
    )
    return lock.model_copy(update={"run": tuple(pins)})

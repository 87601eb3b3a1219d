"""`cog build`: lock if needed (or refuse, with --locked), then realise every layer."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from builders.image import MAX_LAYERS, image_derivation, layer_blobs, layers_env
from builders.progress import default_reporter
from builders.project import Layers, check_buildable, layers
from builders.realise import realise
from builders.run_step import (
    check_secrets,
    parse_secrets,
    pin_steps,
    secrets_to_build,
    with_secrets,
)
from builders.sandbox.jail import host_tool_argv
from cog.cli import docker_engine
from cog.cli.cache_flags import add_cache_flags
from cog.cli.caches import Caches
from cog.cli.compat import add_compat_flags
from cog.cli.images import local_name
from cog.cli.project import project_dir
from cog.project.errors import UsageError, warn
from cuda_channels.channel import Channel, load
from derivations import ca_cert
from derivations import lock as locking
from derivations.config import CogConfig, deprecations, load_config
from derivations.model import Derivation
from store.cache import PathInfos
from store.local import Store
from store.oci import Layout, copy_layout, write_docker_archive
from store.paths import StorePath


def cog_version() -> str:
    import cog

    return cog.__version__


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("build")
    add_image_flags(p)
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


def add_image_flags(p: argparse.ArgumentParser) -> None:
    """What `build_image` reads: how to lock, for which platform, and how to lay out layers."""
    add_compat_flags(p)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--locked", action="store_true", help="refuse a missing or stale cog.lock")
    mode.add_argument("--frozen", action="store_true", help="use cog.lock as it is")
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


def locked_inputs(
    project: Path,
    arch: str,
    locked: bool,
    frozen: bool,
    store: Store | None = None,
    secrets: Mapping[str, Path] | None = None,
    jobs: int | None = None,
) -> tuple[CogConfig, locking.Lock, Channel]:
    """The config and a lock to build from, relocking when allowed and needed (build.run
    steps are pinned in `store`, with `secrets`)."""
    config = load_config(project)
    for warning in deprecations(project):
        print(warning, file=sys.stderr)
    check_buildable(config)
    lock = locking.read(project)
    channel = load(locking.channel_name(config, lock))
    if lock is None:
        if locked or frozen:
            raise UsageError("there is no cog.lock", hint="run `cog lock` first")
        print("no cog.lock yet: locking", file=sys.stderr)
    else:
        if frozen:
            return config, lock, channel
        drift = locking.drift(lock, config, project, channel, arch)
        if not drift:
            return config, lock, channel
        if locked:
            raise UsageError("cog.lock is stale: " + "; ".join(drift), hint="run `cog lock`")
        print("cog.lock is stale (" + "; ".join(drift) + "): locking", file=sys.stderr)
    previous = lock
    lock = locking.create(config, project, channel, arch, lock, warn=warn, sandbox=host_tool_argv)
    lock = pin_run_steps(store or Store(), project, config, lock, channel, previous, secrets, jobs)
    locking.write(project, lock)
    return config, lock, channel


def pin_run_steps(
    store: Store,
    project: Path,
    config: CogConfig,
    lock: locking.Lock,
    channel: Channel,
    previous: locking.Lock | None,
    secrets: Mapping[str, Path] | None,
    jobs: int | None = None,
    upgrade: bool = False,
) -> locking.Lock:
    """`lock` with its build.run steps pinned: building them is how cog learns which need
    the network (builders.run_step.pin_steps)."""
    if not config.build.steps:
        return lock
    trust = ca_cert.from_environment()
    base = layers(store, project, config, lock, channel, with_steps=False, ca_cert=trust)
    old = (previous.run if previous else None) or ()
    options = {"jobs": jobs, "reporter": default_reporter()}
    pins = pin_steps(
        store, base.roots, base.model_env, config, old, secrets or {}, upgrade, **options
    )
    return lock.model_copy(update={"run": tuple(pins)})


def image_of(
    store: Store,
    config: CogConfig,
    lock: locking.Lock,
    project: Path,
    built: Layers,
    max_layers: int = MAX_LAYERS,
    compression: str = "gzip",
    infos: PathInfos | None = None,
) -> Derivation:
    """The image derivation; `infos` (default: the store's) plans its layers, so an image of
    paths that stay in a binary cache can be planned here."""
    recorded = config.model_dump(mode="json", exclude_defaults=True)
    if lock.cuda is not None:  # as Cog's label: the config completed with the CUDA chosen
        recorded["build"] |= {"cuda": lock.cuda.version, "cudnn": lock.cuda.cudnn}
    labels = {
        "run.cog.version": cog_version(),
        "run.cog.config": json.dumps(recorded, sort_keys=True),
        "run.cog.pip_freeze": "".join(f"{p.name}=={p.version}\n" for p in lock.python_packages),
        "run.cog.lock": "sha256:"
        + hashlib.sha256((project / locking.LOCK_FILE).read_bytes()).hexdigest(),
        "org.opencontainers.image.created": "1970-01-01T00:00:00Z",
    }
    env = dict(config.env)
    if config.predict:
        env["COG_PREDICT_TYPE_STUB"] = config.predict
    if config.train:
        env["COG_TRAIN_TYPE_STUB"] = config.train
    arch = lock.platform.arch
    env |= layers_env(store, config, built, arch)
    return image_derivation(
        infos or store,
        "image",
        built,
        labels,
        env,
        arch,
        config.predict,
        max_layers,
        compression,
        static_schema=os.environ.get("COG_STATIC_SCHEMA", "") not in ("", "0", "false"),
    )


def build(
    store: Store,
    project: Path,
    args: argparse.Namespace,
    caches: Caches | None = None,
    fetch: bool = True,
) -> tuple[CogConfig, locking.Lock, Layers]:
    """Realises every layer; returns the config and lock it built from, and the layers. With
    `fetch` false, layers a binary cache holds stay there."""
    check_project_state(project)
    secrets = parse_secrets(getattr(args, "secret", None) or [], Path.cwd())
    trust = ca_cert.from_environment()  # a bad value fails before anything is locked
    config, lock, channel = locked_inputs(
        project, args.arch, args.locked, args.frozen, store, secrets, args.jobs
    )
    if trust is not None:
        print(f"Injecting CA certificate from {ca_cert.VARIABLE}", file=sys.stderr)
    result = layers(store, project, config, lock, channel, ca_cert=trust)
    check_secrets(secrets_to_build(store, result.steps), secrets)
    realise(
        store,
        result.derivations,
        fetch,
        jobs=args.jobs,
        reporter=default_reporter(),
        builders=with_secrets(secrets),
        substituter=(caches or Caches.from_args(args)).substituter,
    )
    roots = project / ".cog" / "roots"
    roots.mkdir(parents=True, exist_ok=True)
    for name, path in result.paths().items():
        if store.is_valid(path):  # (a path left in a cache has nothing here to keep alive)
            store.add_indirect_root(roots / name.replace(":", "-").replace("/", "-"), path)
    return config, lock, result


def build_image(
    store: Store, project: Path, args: argparse.Namespace, fetch: bool = True
) -> tuple[CogConfig, StorePath, Caches]:
    """Builds every layer and the image; keeps a GC root to it at .cog/image, and publishes
    its closure to the --cache caches. With `fetch` false, an image a cache holds stays there
    (the returned path is then not valid here), and so does whatever it alone needs."""
    config = load_config(project)  # cheap, so what cannot be an image fails before building
    if not config.predict and not config.train:
        raise UsageError(
            "cog.yaml says no predictor: there is no run: (or predict:) to build an image of",
            hint="add run: predict.py:Predictor (cog exec needs none)",
        )
    caches = Caches.from_args(args)
    fetch = fetch or bool(config.build.gpu)  # the image's GPU settings read the environment
    config, lock, result = build(store, project, args, caches, fetch)
    infos = PathInfos(store, caches.substituter)
    for name, path in result.paths().items():
        info = infos.info(path)
        print(f"{name:<16} {path}  {info.nar_size / 2**20:8.1f} MiB")
    image = image_of(
        store,
        config,
        lock,
        project,
        result,
        getattr(args, "max_layers", MAX_LAYERS),
        getattr(args, "compression", "gzip"),
        infos,
    )
    [outputs] = realise(
        store,
        [image],
        fetch,
        jobs=args.jobs,
        reporter=default_reporter(),
        substituter=caches.substituter,
    )
    path = outputs["out"]
    print(f"image            {path}")
    if store.is_valid(path):
        store.add_indirect_root(project / ".cog" / "image", path)
        # The image's closure, and the root layers it holds only as compressed blobs.
        built = [p for p in result.paths().values() if store.is_valid(p)]
        finder = layer_blobs(store, result.roots)
        caches.publish(store, [*built, path], jobs=args.jobs or 4, find_blob=finder)
        print(f"digest           {Layout.open(store.real_path(path)).manifest_digest}")
    return config, path, caches


def cmd_build(args: argparse.Namespace, store: Store) -> int:
    project = project_dir()
    if args.tag:
        local_name(args.tag)  # a bad name fails now, not after the build
    if args.output:
        check_output(args.output)  # a wrong place fails now, not after the build
    config, path, _ = build_image(store, project, args)
    layout = Layout.open(store.real_path(path))
    name = image_name(config, project, args.tag)
    store.set_name(name, store.parse(str(layout.root)))
    if args.output:
        write_output(store, layout, args.output, name)
    elif not args.no_docker_load:
        load_into_engine(store, layout, name)
    print(f"Image built as {name}", file=sys.stderr)
    return 0


def load_into_engine(store: Store, layout: Layout, name: str) -> None:
    """As Cog: the built image is in the Docker engine too when one answers (so `docker run
    NAME` works), loaded only if the engine does not hold it already; no engine is fine."""
    engine = docker_engine.reachable()
    if engine is None:
        print(
            f"no Docker engine answered: {name} is in cog's store only "
            "(cog run, serve and push use it from there)",
            file=sys.stderr,
        )
        return
    if docker_engine.holds(engine, layout, name):
        print(f"the Docker engine already holds {name}", file=sys.stderr)
        return
    with store.temp_dir("docker-load-") as scratch:
        docker_engine.load(layout, name, scratch, engine)


def image_name(config: CogConfig, project: Path, tag: str | None) -> str:
    """`-t`, else cog.yaml's `image:`, else `cog-<directory>`, as Cog names it; tag `latest`
    unless given."""
    return local_name(tag or config.image or f"cog-{project.resolve().name.lower()}")


def check_output(spec: str) -> tuple[str, Path | None]:
    """The output's kind and place, refused before anything is built when it cannot work."""
    kind, _, target = spec.partition(":")
    if kind == "docker" and not target:
        return kind, None
    if kind not in ("oci", "docker-archive") or not target:
        raise UsageError(
            f"--output {spec!r} is not supported",
            hint="use --output oci:DIR, --output docker-archive:FILE or --output docker",
        )
    destination = Path(target)
    if kind == "docker-archive" and destination.is_dir():
        raise UsageError(
            f"{destination} is a directory", hint="give --output docker-archive: a file name"
        )
    if kind == "oci":
        if destination.is_symlink() or (destination.exists() and not destination.is_dir()):
            raise UsageError(
                f"{destination} exists and is not a directory",
                hint="give --output oci: a new directory, or an OCI layout to replace",
            )
        if destination.is_dir() and any(destination.iterdir()) and not _is_layout(destination):
            raise UsageError(
                f"{destination} is not empty and not an OCI layout; cog will not replace it",
                hint="give --output oci: a new or empty directory, or an OCI layout to replace",
            )
    parent = destination.absolute().parent
    existing = next((p for p in (parent, *parent.parents) if p.exists()), Path("/"))
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(
            f"cannot write {destination}: {existing} is not a writable directory",
            hint="choose a writable place for --output",
        )
    return kind, destination


def write_output(store: Store, layout: Layout, spec: str, tag: str) -> None:
    kind, destination = check_output(spec)
    if destination is None:
        with store.temp_dir("docker-load-") as scratch:
            docker_engine.load(layout, tag, scratch)
        print(f"loaded {tag} into the Docker engine")
        return
    try:
        if kind == "docker-archive":
            _write_archive(layout, destination, tag)
            print(f"wrote the docker archive {destination} ({tag})")
        else:
            _write_layout(layout, destination)
            print(f"wrote the OCI layout to {destination}")
    except OSError as e:
        raise UsageError(
            f"cannot write {destination} ({e.strerror or e})",
            hint="choose a writable place with room for the image",
        ) from None


def _write_archive(layout: Layout, destination: Path, tag: str) -> None:
    """The archive goes to a temp file beside FILE, renamed over it only when whole."""
    partial = destination.with_name(f".{destination.name}.partial-{os.getpid()}")
    try:
        with open(partial, "xb") as out:
            write_docker_archive(layout, out, tag)
        partial.replace(destination)
    finally:
        partial.unlink(missing_ok=True)


def _write_layout(layout: Layout, destination: Path) -> None:
    """The layout goes to a temp directory beside DIR, swapped in only when whole. DIR may
    be absent, empty or an OCI layout (replaced, as check_output allowed); nothing else is
    ever deleted."""
    parent = destination.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{destination.name}.partial-", dir=parent))
    old = parent / f".{destination.name}.old-{os.getpid()}"
    try:
        copy_layout(layout, partial / "layout")
        if destination.exists():
            destination.rename(old)
        (partial / "layout").rename(destination)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def _is_layout(directory: Path) -> bool:
    return (directory / "oci-layout").is_file() and (directory / "index.json").is_file()


def check_project_state(project: Path) -> None:
    """`.cog` holds links that cog replaces; through a link they would land somewhere else."""
    for state in (project / ".cog", project / ".cog" / "roots"):
        if state.is_symlink():
            raise UsageError(
                f"{state} is a link (to {os.readlink(state)}); cog will not write through it",
                hint=f"remove the link ({state}), cog recreates it as a directory",
            )

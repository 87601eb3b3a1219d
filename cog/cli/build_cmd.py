"""`cog build`: lock if needed (or refuse, with --locked), then realise every layer."""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from builders.image import MAX_LAYERS, image_derivation
from builders.progress import default_reporter
from builders.project import Layers, layers
from builders.realise import realise
from cog.cli import docker_engine
from cog.cli.errors import UsageError
from cuda_channels.channel import DEFAULT_CHANNEL, Channel, load
from derivations import lock as locking
from derivations.config import CogConfig, load_config
from derivations.model import Derivation
from store.local import Store
from store.oci import Layout, copy_layout, write_docker_archive


def cog_version() -> str:
    import cog

    return cog.__version__


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("build", help="build the project here: every layer, then its image")
    add_image_flags(p)
    p.add_argument("-t", "--tag", help="the image's name (default: cog.yaml's image, or cog-DIR)")
    p.add_argument(
        "--output",
        help="also write the image elsewhere: oci:DIR, docker-archive:FILE, or docker (the engine)",
    )
    p.set_defaults(func=cmd_build)


def add_image_flags(p: argparse.ArgumentParser) -> None:
    """What `build_image` reads: how to lock, for which platform, and how to lay out layers."""
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


def locked_inputs(
    project: Path, arch: str, locked: bool, frozen: bool
) -> tuple[CogConfig, dict[str, Any], Channel]:
    """The config and a lock to build from, relocking when allowed and needed."""
    config = load_config(project)
    lock = locking.read(project)
    name = (lock or {}).get("inputs", {}).get("channel", {}).get("name") or DEFAULT_CHANNEL
    channel = load(name)
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
    lock = locking.create(config, project, channel, arch, lock)
    locking.write(project, lock)
    return config, lock, channel


def image_of(
    store: Store,
    config: CogConfig,
    lock: dict[str, Any],
    project: Path,
    built: Layers,
    max_layers: int = MAX_LAYERS,
    compression: str = "gzip",
) -> Derivation:
    labels = {
        "run.cog.version": cog_version(),
        "run.cog.config": json.dumps(
            config.model_dump(mode="json", exclude_defaults=True), sort_keys=True
        ),
        "run.cog.pip_freeze": "".join(
            f"{p['name']}=={p['version']}\n" for p in lock["python_packages"]
        ),
        "run.cog.lock": "sha256:"
        + hashlib.sha256((project / locking.LOCK_FILE).read_bytes()).hexdigest(),
        "org.opencontainers.image.created": "1970-01-01T00:00:00Z",
    }
    env = dict(config.env)
    if config.predict:
        env["COG_PREDICT_TYPE_STUB"] = config.predict
    if config.train:
        env["COG_TRAIN_TYPE_STUB"] = config.train
    arch = lock["platform"]["arch"]
    return image_derivation(
        store, "image", built, labels, env, arch, config.predict, max_layers, compression
    )


def build(
    store: Store, project: Path, args: argparse.Namespace
) -> tuple[CogConfig, dict[str, Any], Layers]:
    """Realises every layer; returns the config and lock it built from, and the layers."""
    config, lock, channel = locked_inputs(project, args.arch, args.locked, args.frozen)
    result = layers(store, project, config, lock, channel)
    realise(store, result.derivations, jobs=args.jobs, reporter=default_reporter())
    roots = project / ".cog" / "roots"
    roots.mkdir(parents=True, exist_ok=True)
    for name, path in result.paths().items():
        store.add_indirect_root(roots / name.replace(":", "-").replace("/", "-"), path)
    return config, lock, result


def build_image(store: Store, project: Path, args: argparse.Namespace) -> tuple[CogConfig, Layout]:
    """Builds every layer and the image; keeps a GC root to it at .cog/image."""
    config, lock, result = build(store, project, args)
    for name, path in result.paths().items():
        info = store.info(path)
        print(f"{name:<16} {path}  {info.nar_size / 2**20:8.1f} MiB")
    image = image_of(
        store,
        config,
        lock,
        project,
        result,
        getattr(args, "max_layers", MAX_LAYERS),
        getattr(args, "compression", "gzip"),
    )
    [outputs] = realise(store, [image], jobs=args.jobs, reporter=default_reporter())
    path = outputs["out"]
    store.add_indirect_root(project / ".cog" / "image", path)
    layout = Layout.open(store.real_path(path))
    print(f"image            {path}")
    print(f"digest           {layout.manifest_digest}")
    return config, layout


def cmd_build(args: argparse.Namespace, store: Store) -> int:
    project = Path.cwd()
    config, layout = build_image(store, project, args)
    if args.output:
        write_output(store, layout, args.output, image_name(config, project, args.tag))
    return 0


def image_name(config: CogConfig, project: Path, tag: str | None) -> str:
    name = tag or config.image or f"cog-{project.resolve().name.lower()}"
    return name if ":" in name.rpartition("/")[2] else f"{name}:latest"


def write_output(store: Store, layout: Layout, spec: str, tag: str) -> None:
    kind, _, target = spec.partition(":")
    if kind == "docker" and not target:
        with store.temp_dir("docker-load-") as scratch:
            docker_engine.load(layout, tag, scratch)
        print(f"loaded {tag} into the Docker engine")
        return
    if kind not in ("oci", "docker-archive") or not target:
        raise UsageError(
            f"--output {spec!r} is not supported",
            hint="use --output oci:DIR, --output docker-archive:FILE or --output docker",
        )
    destination = Path(target)
    if kind == "docker-archive":
        partial = destination.with_name(f".{destination.name}.partial")
        with open(partial, "wb") as out:
            write_docker_archive(layout, out, tag)
        partial.replace(destination)
        print(f"wrote the docker archive {destination} ({tag})")
        return
    if destination.exists():
        shutil.rmtree(destination)
    copy_layout(layout, destination)
    print(f"wrote the OCI layout to {destination}")

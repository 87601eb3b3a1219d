"""Where a built image goes besides the store: its local name, a reachable Docker engine, an
OCI layout directory or a docker-archive file (each written whole or not at all)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from cog.project import docker_engine
from cog.project.build import build_image
from cog.project.errors import UsageError
from cog.project.images import local_name
from cog.project.options import BuildOptions
from derivations.config import CogConfig
from store.local import Store
from store.oci import Layout, copy_layout, write_docker_archive


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


def build_and_deliver(
    store: Store,
    project: Path,
    options: BuildOptions,
    tag: str | None,
    output: str | None,
    docker_load: bool,
) -> str:
    """`cog build`: the image built, named (`tag`, else cog.yaml's image, else cog-DIR),
    then written to `output`, or else loaded into a reachable Docker engine when
    `docker_load`; returns its name. A bad name or output fails before anything is built."""
    if tag:
        local_name(tag)
    if output:
        check_output(output)
    image = build_image(store, project, options)
    layout = Layout.open(store.real_path(image.path))
    name = image_name(image.plan.config, project, tag)
    store.set_name(name, store.parse(str(layout.root)))
    if output:
        write_output(store, layout, output, name)
    elif docker_load:
        load_into_engine(store, layout, name)
    return name

"""The Docker engine, through the docker SDK: loading our images and running them.

Only the first contact has a deadline: an engine that does not answer a ping within
PING_TIMEOUT seconds is reported as unreachable. After that no call has a read timeout, since an
engine can work for minutes without a word (loading a multi-GB image, or creating a container
from it with the vfs driver, which copies every layer); a load streams the engine's progress to
stderr instead, one line per layer it loads.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cog.project.errors import UsageError
from store.oci import Layout, write_docker_archive

if TYPE_CHECKING:
    from docker import DockerClient

PING_TIMEOUT = 15  # seconds, when the engine is required
REACHABLE_TIMEOUT = 2  # seconds, when it is only welcome (cog build -t)
DEFAULT_SOCKET = "/var/run/docker.sock"


def _connect(timeout: int) -> DockerClient:
    """The engine at DOCKER_HOST (else the default socket) once it has answered a ping within
    `timeout`; its later calls have no read timeout. Raises what the docker SDK raises."""
    import docker

    engine = docker.from_env(timeout=timeout)
    engine.ping()
    engine.api.timeout = None  # type: ignore[assignment]  # requests: None is no timeout
    return engine


def _engine_errors() -> tuple[type[Exception], ...]:
    """What the docker SDK raises when the engine is absent or fails."""
    import requests
    from docker.errors import DockerException

    return (DockerException, requests.RequestException)


def client() -> DockerClient:
    """The engine, required: one that does not answer is a usage error."""
    try:
        return _connect(PING_TIMEOUT)
    except _engine_errors() as e:
        raise UsageError(
            f"cannot reach the Docker engine ({str(e).splitlines()[0][:200]})",
            hint="start dockerd, or set DOCKER_HOST to its socket",
        ) from None


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def reachable() -> DockerClient | None:
    """The engine, if one answers (DOCKER_HOST, else the default socket) within a second or two;
    None when there is none, which is fine: the store holds the image either way."""
    if not os.environ.get("DOCKER_HOST") and not Path(DEFAULT_SOCKET).exists():
        return None
    try:
        return _connect(REACHABLE_TIMEOUT)
    except _engine_errors():
        return None


def holds(engine: DockerClient, layout: Layout, tag: str) -> bool:
    """Whether the engine already has this image under `tag`; if it has the image under
    another name only, it is tagged (no load needed either way)."""
    from docker.errors import DockerException

    ids = {layout.manifest["config"]["digest"], layout.manifest_digest}  # classic, containerd
    try:
        if engine.images.get(tag).id in ids:
            return True
    except DockerException:
        pass
    for image_id in ids:
        try:
            image = engine.images.get(image_id)
        except DockerException:
            continue
        repository, _, version = tag.rpartition(":")
        return bool(image.tag(repository, version))
    return False


def load(layout: Layout, tag: str, scratch: Path, engine: DockerClient | None = None) -> str:
    """Loads the image into the engine under `tag`, showing the engine's progress on stderr;
    returns the engine's image id."""
    from docker.errors import DockerException

    engine = engine or client()
    archive = scratch / "image.tar"
    with open(archive, "wb") as out:
        write_docker_archive(layout, out, tag)
    count = len(layout.manifest["layers"])
    print(
        f"loading {tag} into the Docker engine ({_size(archive.stat().st_size)}, "
        f"{count} layers; layers it already has are skipped)",
        file=sys.stderr,
        flush=True,
    )
    started, seen = time.monotonic(), set[str]()
    try:
        with open(archive, "rb") as data:
            for message in engine.api.load_image(data, quiet=False):  # type: ignore[no-untyped-call]
                if "errorDetail" in message or "error" in message:
                    detail = message.get("errorDetail", {}).get("message") or message["error"]
                    raise UsageError(
                        f"the Docker engine could not load {tag}: {' '.join(str(detail).split())}",
                        hint="see the engine's log; an image built with --compression zstd "
                        "needs Docker 23 or later",
                    )
                layer = message.get("id")
                if message.get("status") == "Loading layer" and layer and layer not in seen:
                    seen.add(layer)
                    total = message.get("progressDetail", {}).get("total")
                    size = f" ({_size(total)})" if total else ""
                    print(
                        f"  loading layer {len(seen)}: {layer}{size}", file=sys.stderr, flush=True
                    )
    except _engine_errors() as e:
        raise UsageError(
            f"the Docker engine failed while loading {tag} ({str(e).splitlines()[0][:200]})",
            hint="see the engine's log, and check that it has room for the image",
        ) from None
    finally:
        archive.unlink()
    elapsed = time.monotonic() - started
    print(f"loaded {len(seen)} new layers in {elapsed:.0f} s", file=sys.stderr, flush=True)
    try:
        return str(engine.images.get(tag).id)
    except DockerException:
        raise UsageError(
            f"the Docker engine loaded the image but has no {tag}",
            hint="see the engine's log",
        ) from None


def run(image: str, env: dict[str, str], gpus: str | None, name: str | None = None) -> Any:
    """Starts the image in the engine on the host's network; returns the container."""
    from docker.types import DeviceRequest

    requests = []
    if gpus:
        count = -1 if gpus == "all" else int(gpus)
        requests.append(DeviceRequest(count=count, capabilities=[["gpu"]]))
    return client().containers.run(
        image,
        detach=True,
        network_mode="host",
        environment=env,
        device_requests=requests or None,
        name=name,
        auto_remove=False,
    )

"""The Docker engine, through the docker SDK: loading our images and running them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cog.cli.errors import UsageError
from store.oci import Layout, write_docker_archive


def client() -> Any:
    import docker
    from docker.errors import DockerException

    try:
        engine = docker.from_env()
        engine.ping()
    except DockerException as e:
        raise UsageError(
            f"cannot reach the Docker engine ({str(e).splitlines()[0][:200]})",
            hint="start dockerd, or set DOCKER_HOST to its socket",
        ) from None
    return engine


def load(layout: Layout, tag: str, scratch: Path) -> str:
    """Loads the image into the engine under `tag`; returns the engine's image id."""
    engine = client()
    archive = scratch / "image.tar"
    with open(archive, "wb") as out:
        write_docker_archive(layout, out, tag)
    with open(archive, "rb") as data:
        images = engine.images.load(data)
    archive.unlink()
    return str(images[0].id) if images else tag


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

"""Our images in a real Docker engine: `docker load` of the docker-archive, then `docker run`."""

from __future__ import annotations

import base64
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.projects import cog, project
from tests.services import free_port


def wait_ready(url: str, container: str, docker: list[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            health = httpx.get(f"{url}/health-check", timeout=2).json()
            if health["status"] == "READY":
                return
            assert health["status"] == "STARTING", health
        except httpx.TransportError:
            pass
        state = subprocess.run(
            [*docker, "inspect", "-f", "{{.State.Running}}", container],
            capture_output=True,
            text=True,
            check=False,
        )
        if state.stdout.strip() == "false":
            logs = subprocess.run([*docker, "logs", container], capture_output=True, text=True)
            raise AssertionError(f"the container stopped: {logs.stdout}{logs.stderr}")
        time.sleep(0.3)
    raise AssertionError("the container did not become READY")


def run_and_predict(docker: list[str], image: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """`docker run --network host` of the image, then one prediction over its HTTP API."""
    port = free_port()
    started = subprocess.run(
        [*docker, "run", "-d", "--network", "host", "-e", f"PORT={port}", image],
        capture_output=True,
        text=True,
        check=True,
    )
    container = started.stdout.strip()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, container, docker)
        response = httpx.post(f"{url}/predictions", json={"input": inputs}, timeout=120)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body
    finally:
        subprocess.run([*docker, "rm", "-f", container], capture_output=True, check=False)


def test_docker_archive_loads_and_runs(
    offline: dict[str, str], docker_host: str, tmp_path: Path
) -> None:
    docker = ["docker", "-H", docker_host]
    root = project("hello-world", tmp_path)
    archive = tmp_path / "hello.tar"
    built = cog(root, offline, "build", "-t", "hello:v1", "--output", f"docker-archive:{archive}")
    assert built.returncode == 0, built.stderr[-2000:]
    loaded = subprocess.run([*docker, "load", "-i", str(archive)], capture_output=True, text=True)
    assert loaded.returncode == 0 and "hello:v1" in loaded.stdout, loaded.stderr
    # The engine sees our config unchanged: its image id is the config's digest.
    inspect = subprocess.run(
        [*docker, "image", "inspect", "-f", "{{.Id}} {{.Config.WorkingDir}}", "hello:v1"],
        capture_output=True,
        text=True,
        check=True,
    )
    image_id, workdir = inspect.stdout.split()
    assert workdir == "/src"
    config_digest = subprocess.run(
        ["skopeo", "inspect", "--raw", f"docker-archive:{archive}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert image_id in config_digest.stdout
    body = run_and_predict(docker, "hello:v1", {"text": "docker"})
    assert body["status"] == "succeeded" and body["output"] == "hello docker"


def test_numpy_pillow_loads_through_the_sdk_and_runs(
    offline: dict[str, str], docker_host: str, tmp_path: Path
) -> None:
    docker = ["docker", "-H", docker_host]
    root = project("numpy-pillow", tmp_path)
    env = offline | {"DOCKER_HOST": docker_host}
    built = cog(root, env, "build", "-t", "numpy-pillow", "--output", "docker")
    assert built.returncode == 0, built.stderr[-2000:]
    assert "loaded numpy-pillow:latest into the Docker engine" in built.stdout
    # The load streams the engine's progress (no read timeout to hit): a line per new layer.
    layers = [line for line in built.stderr.splitlines() if line.startswith("  loading layer ")]
    assert len(layers) >= 5 and layers[0].startswith("  loading layer 1: "), built.stderr[-2000:]
    assert f"loaded {len(layers)} new layers in " in built.stderr
    body = run_and_predict(docker, "numpy-pillow:latest", {"size": 4})
    assert body["status"] == "succeeded", body
    assert "numpy 2.1.3, tqdm 4.67.1" in body["logs"]
    png = base64.b64decode(body["output"].split(",", 1)[1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # `cog predict --docker` in the project: build, load, run in the engine, one prediction.
    predicted = cog(root, env, "predict", "--docker", "-i", "size=3", "-o", str(tmp_path / "o.png"))
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert (tmp_path / "o.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "numpy 2.1.3" in predicted.stderr
    left = subprocess.run([*docker, "ps", "-aq"], capture_output=True, text=True, check=True)
    assert left.stdout.strip() == ""  # the container was removed


def test_docker_output_without_an_engine_is_one_sentence(
    offline: dict[str, str], tmp_path: Path
) -> None:
    root = project("hello-world", tmp_path)
    env = offline | {"DOCKER_HOST": f"unix://{tmp_path}/nothing.sock"}
    result = cog(root, env, "build", "--output", "docker")
    assert result.returncode == 1
    assert "cannot reach the Docker engine" in result.stderr and "Traceback" not in result.stderr


def test_an_engine_error_while_loading_is_one_sentence(
    offline: dict[str, str], docker_host: str, tmp_path: Path
) -> None:
    """Docker before 23 cannot read zstd layers; the engine says so in the load's progress
    stream, and `cog build --output docker` reports it in one sentence with a hint."""
    docker = ["docker", "-H", docker_host]
    root = project("hello-world", tmp_path)
    (root / "unique.txt").write_text(str(tmp_path))  # a new code layer: never skipped as loaded
    env = offline | {"DOCKER_HOST": docker_host}
    result = cog(
        root, env, "build", "--compression", "zstd", "-t", "zstd-hello", "--output", "docker"
    )
    version = subprocess.run(
        [*docker, "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if int(version.split(".")[0]) >= 23:  # an engine that reads zstd loads the image
        assert result.returncode == 0, result.stderr[-2000:]
        return
    assert result.returncode == 1, result.stdout[-2000:]
    error = result.stderr[result.stderr.index("error: ") :].splitlines()
    assert error[0].startswith("error: the Docker engine could not load zstd-hello:latest: ")
    assert error[1].startswith("hint: ") and len(error) == 2, result.stderr[-2000:]


def test_build_tag_loads_into_a_reachable_engine_once(
    offline: dict[str, str], docker_host: str, tmp_path: Path
) -> None:
    """As Cog, `cog build -t NAME` leaves NAME in the engine; a rebuild of the same image does
    not load it again (a no-op build stays a no-op), a second name is a tag, not a load."""
    docker = ["docker", "-H", docker_host]
    root = project("hello-world", tmp_path)
    with open(root / "predict.py", "a") as code:  # an image no other test has loaded
        code.write(f"# {tmp_path.name}\n")
    env = offline | {"DOCKER_HOST": docker_host}
    first = cog(root, env, "build", "-t", "engine-hello")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "loading engine-hello:latest into the Docker engine" in first.stderr
    image_id = subprocess.run(
        [*docker, "image", "inspect", "-f", "{{.Id}}", "engine-hello"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    again = cog(root, env, "build", "-t", "engine-hello")
    assert "the Docker engine already holds engine-hello:latest" in again.stderr, again.stderr
    assert "loading" not in again.stderr
    other = cog(root, env, "build", "-t", "engine-other:v2")
    assert "already holds engine-other:v2" in other.stderr and "loading" not in other.stderr
    tagged = subprocess.run(
        [*docker, "image", "inspect", "-f", "{{.Id}}", "engine-other:v2"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert tagged.stdout.strip() == image_id
    skipped = cog(root, env, "build", "-t", "engine-skipped", "--no-docker-load")
    assert skipped.returncode == 0 and "Docker engine" not in skipped.stderr
    absent = subprocess.run([*docker, "image", "inspect", "engine-skipped"], capture_output=True)
    assert absent.returncode != 0


def test_build_tag_without_an_engine_says_so_in_one_line(
    offline: dict[str, str], tmp_path: Path
) -> None:
    root = project("hello-world", tmp_path)
    env = offline | {"DOCKER_HOST": f"unix://{tmp_path}/nothing.sock"}
    result = cog(root, env, "build", "-t", "no-engine")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if "Docker engine" in line]
    assert lines == [
        "no Docker engine answered: no-engine:latest is in cog's store only "
        "(cog run, serve and push use it from there)"
    ]

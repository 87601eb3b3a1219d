"""Benchmark: `cog build` + `cog push` against `docker build` + `docker push`, side by side.

One run, one registry (Debian's docker-registry on loopback behind a proxy that counts the
bytes each push sends), one Docker engine (dockerd, vfs storage: the driver this machine has).
The project is numpy + tqdm with a small predictor. Steps, each timed for both:

1. cold: an empty store / an engine with only the base image, then build and push;
2. a one-line edit of predict.py, then build and push;
3. pillow added to requirements.txt (relocked, untimed), then build and push.

Docker's side is the equivalent Dockerfile: `FROM` a base made by `docker import` of our own
root file system (base, Python and system layers), `pip install` of the same pinned wheels
from a local directory, `COPY . /src`.

Offline: it uses the frozen Debian mirror and wheel cache of `make test-fixtures`
(COG_TEST_CACHE, default /var/cache/cog-tests) and pip's own wheel from the same cache.
Run as root: `python bench/push.py`. Prints a table; `--json` for raw numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.debian_mirror import serve
from tests.registry_proxy import proxy
from tests.services import dockerd, registry

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("COG_TEST_CACHE", "/var/cache/cog-tests"))
WHEELS = CACHE / "wheels"
PIP = "pip==24.3.1"

PREDICT = """\
import numpy as np

from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def predict(self, size: int = Input(default=8, ge=1, le=512)) -> float:
        return float(np.linspace(0, 255, size * size).mean())
"""

DOCKERFILE = """\
FROM cogbench-base
COPY pip.whl /tmp/pip.whl
COPY wheels /tmp/wheels
RUN python3 /tmp/pip.whl/pip install --break-system-packages --no-index --no-deps \\
    --no-cache-dir /tmp/wheels/*.whl
COPY src /src
WORKDIR /src
CMD ["python3", "-m", "cog.server.http"]
"""


def run(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(argv[:4])} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
        )
    return done.stdout


def timed(argvs: list[list[str]], env: dict[str, str], cwd: Path | None = None) -> float:
    subprocess.run(["sync"], check=True)
    t0 = time.perf_counter()
    for argv in argvs:
        run(argv, env, cwd)
    return time.perf_counter() - t0


def pip_wheel() -> Path:
    target = CACHE / "bench"
    found = sorted(target.glob("pip-*.whl"))
    if not found:
        target.mkdir(parents=True, exist_ok=True)
        run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", PIP, "-d", str(target)],
            dict(os.environ),
        )
        found = sorted(target.glob("pip-*.whl"))
    return found[0]


def docker_context(project: Path, context: Path, pip: Path) -> None:
    """The Docker build context: the lock's pinned wheels, the code, pip."""
    lock = json.loads((project / "cog.lock").read_text())
    shutil.rmtree(context, ignore_errors=True)
    (context / "wheels").mkdir(parents=True)
    for pin in lock["python_packages"] + lock["runtime_packages"]:
        source = Path(unquote(urlparse(pin["url"]).path))
        shutil.copy(source, context / "wheels" / source.name)
    shutil.copytree(project, context / "src", ignore=shutil.ignore_patterns(".cog", "cog.lock"))
    shutil.copy(pip, context / "pip.whl")
    (context / "Dockerfile").write_text(DOCKERFILE)


def offline_env(work: Path, mirror: str) -> dict[str, str]:
    """The CLI's environment on the frozen Debian mirror (served at `mirror`) and the wheel
    and uv caches: bookworm's channel pointed at the mirror, in `work/channels`."""
    channels = work / "channels"
    channels.mkdir()
    data = json.loads((REPO / "cuda_channels/data/debian-bookworm.json").read_text())
    for archive in data["archives"]:
        archive["mirror"] = f"{mirror}/{archive['name']}"
    (channels / "debian-bookworm.json").write_text(json.dumps(data))
    return dict(os.environ) | {
        "COG_CHANNEL_PATH": str(channels),
        "PYTHONPATH": str(REPO),
        "UV_CACHE_DIR": str(CACHE / "uv"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--compression", choices=["gzip", "zstd"], default="gzip")
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cog-bench-push-"))
    pip = pip_wheel()
    results: dict[str, Any] = {}
    with (
        serve(CACHE / "debian-mirror") as mirror,
        dockerd(shutil.which("dockerd") or "dockerd") as host,
        registry(
            shutil.which("docker-registry") or "docker-registry",
            shutil.which("htpasswd") or "htpasswd",
        ) as reg,
        proxy(reg.host) as px,
    ):
        env = offline_env(work, mirror) | {
            "COG_CACHE_DIR": str(work / "cog-cache"),
            "COG_STORE_DIR": str(work / "store-prep"),
            "DOCKER_CONFIG": str(work / "docker-config"),
            "DOCKER_HOST": host,
        }
        cog = [sys.executable, "-m", "cog.cli.main"]
        docker = ["docker", "-H", host]
        project = work / "project"
        project.mkdir()
        (project / "cog.yaml").write_text(
            'build:\n  python_version: "3.11"\n  python_requirements: requirements.txt\n'
            'predict: "predict.py:Predictor"\n'
        )
        header = f"--no-index\n--find-links {WHEELS}\n"
        (project / "requirements.txt").write_text(header + "numpy==2.1.3\ntqdm==4.67.1\n")
        (project / "predict.py").write_text(PREDICT)
        for who in (cog, docker):
            subprocess.run(
                [*who, "login", px.host, "-u", "cog", "--password-stdin"],
                input=reg.password,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
        # Untimed preparation: the lock, and Docker's base image from our own root layers.
        run([*cog, "lock"], env, project)
        run([*cog, "build", "--locked"], env, project)
        roots = [
            (project / ".cog" / "roots" / n).resolve()
            for n in ("rootfs-base", "rootfs-python", "rootfs-system")
        ]
        view = work / "base-view"
        from builders.rootview import merge_view

        merge_view(roots, view)
        tar = subprocess.Popen(["tar", "-C", str(view), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(
            [*docker, "import", "-", "cogbench-base"],
            stdin=tar.stdout,
            check=True,
            capture_output=True,
        )
        tar.wait()
        shutil.rmtree(project / ".cog")
        env["COG_STORE_DIR"] = str(work / "store")  # cold: an empty store
        context = work / "docker-context"
        tag_cog, tag_docker = f"{px.host}/bench-cog", f"{px.host}/bench-docker"

        push = [*cog, "push", "--locked", "--compression", options.compression]

        def step(name: str) -> None:
            docker_context(project, context, pip)
            px.received[0] = 0
            cog_s = timed([[*push, f"{tag_cog}:{name}"]], env, project)
            cog_bytes = px.received[0]
            px.received[0] = 0
            docker_s = timed(
                [
                    [*docker, "build", "-q", "-t", f"{tag_docker}:{name}", str(context)],
                    [*docker, "push", f"{tag_docker}:{name}"],
                ],
                env | {"DOCKER_BUILDKIT": "0"},
            )
            docker_bytes = px.received[0]
            results[name] = {
                "cog_s": cog_s,
                "docker_s": docker_s,
                "cog_bytes": cog_bytes,
                "docker_bytes": docker_bytes,
            }

        step("cold")
        (project / "predict.py").write_text(PREDICT.replace("mean()", "mean() + 0"))
        step("edit")
        (project / "requirements.txt").write_text(
            header + "numpy==2.1.3\npillow==11.0.0\ntqdm==4.67.1\n"
        )
        run([*cog, "lock"], env, project)
        step("add-package")
        results["pillow_wheel_bytes"] = next(WHEELS.glob("pillow-11.0.0-*.whl")).stat().st_size
    shutil.rmtree(work, ignore_errors=True)
    if options.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'step':<12} {'cog':>9} {'docker':>9} {'ratio':>7} {'cog up':>12} {'docker up':>12}")
    for name in ("cold", "edit", "add-package"):
        r = results[name]
        speedup = r["docker_s"] / r["cog_s"]
        print(
            f"{name:<12} {r['cog_s']:8.2f}s {r['docker_s']:8.2f}s {speedup:6.1f}x "
            f"{r['cog_bytes'] / 2**20:9.2f} MiB {r['docker_bytes'] / 2**20:9.2f} MiB"
        )
    added = results["add-package"]["cog_bytes"] / results["pillow_wheel_bytes"]
    wheel_mib = results["pillow_wheel_bytes"] / 2**20
    print(f"adding pillow uploaded {added:.2f}x its wheel ({wheel_mib:.2f} MiB)")


if __name__ == "__main__":
    main()

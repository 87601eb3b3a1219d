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

`--project torch` is issue 14's GPU model instead: examples/torch-gpu (`gpu: true`,
torch==2.5.1 with its NVIDIA wheels, ~7 GB installed) on Python 3.11, the wheels fetched once
into COG_TEST_CACHE/bench/torch-wheels (`pip download torch==2.5.1` for cp311). Its steps are
cold, a one-line edit, and an unchanged push; Docker's side `pip install`s from the same wheels
served over loopback (`docker build --network host`), so no 3 GB build context is copied. It
also records the peak RSS of the cog process (VmHWM, sampled). Needs ~40 GB of free disk
(Docker's vfs driver copies every layer).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
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


TORCH_WHEELS = CACHE / "bench" / "torch-wheels"
TORCH_DOCKERFILE = """\
FROM cogbench-base
COPY pip.whl /tmp/pip.whl
RUN python3 /tmp/pip.whl/pip install --break-system-packages --no-index --no-deps \\
    --no-cache-dir --find-links {wheels} {pins}
COPY src /src
WORKDIR /src
CMD ["python3", "-m", "cog.server.http"]
"""


@dataclass
class Bench:
    """What a project is benchmarked with: its files, its steps and how Docker gets wheels."""

    cog_yaml: str
    requirements: str
    predict: str
    edit: tuple[str, str]  # predict.py's one-line edit: (old, new)
    steps: tuple[str, ...]
    served: bool  # Docker pip-installs from wheels served over loopback, not a COPY


def projects() -> dict[str, Bench]:
    numpy_yaml = 'build:\n  python_version: "3.11"\n  python_requirements: requirements.txt\n'
    torch_predict = (REPO / "examples/torch-gpu/predict.py").read_text()
    return {
        "numpy": Bench(
            numpy_yaml + 'predict: "predict.py:Predictor"\n',
            f"--no-index\n--find-links {WHEELS}\nnumpy==2.1.3\ntqdm==4.67.1\n",
            PREDICT,
            ("mean()", "mean() + 0"),
            ("cold", "edit", "add-package"),
            served=False,
        ),
        "torch": Bench(
            numpy_yaml.replace("build:\n", "build:\n  gpu: true\n")
            + 'predict: "predict.py:Predictor"\n',
            f"--no-index\n--find-links {TORCH_WHEELS}\n--find-links {WHEELS}\ntorch==2.5.1\n",
            torch_predict,
            ("* 2", "* 2.0"),
            ("cold", "edit", "unchanged"),
            served=True,
        ),
    }


def byte_compile() -> None:
    """This checkout's packages byte-compiled, as an installed cog has them. Otherwise, where
    PYTHONDONTWRITEBYTECODE is set (this machine's shell sets it), every module edited since
    its .pyc was written is compiled again at each start, and the benchmark times that."""
    packages = ("cog", "runtime", "store", "derivations", "builders", "cuda_channels")
    for package in packages:
        compileall.compile_dir(REPO / package, quiet=1)


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


def timed_rss(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int]:
    """Wall time and the peak resident set of the process itself (its VmHWM, read every
    50 ms until it exits; children such as the sandboxed installers are not counted)."""
    subprocess.run(["sync"], check=True)
    t0 = time.perf_counter()
    with subprocess.Popen(
        argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as child:
        peak = 0
        status = Path(f"/proc/{child.pid}/status")
        while child.poll() is None:
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) * 1024)
            except OSError:
                pass
            time.sleep(0.05)
        out, err = child.communicate()
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed:\n{out[-2000:]!r}{err[-3000:]!r}")
    return time.perf_counter() - t0, peak


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


def docker_context(
    project: Path, context: Path, pip: Path, served: tuple[Path, str] | None = None
) -> None:
    """The Docker build context: the lock's pinned wheels (or, with `served`, links to them
    in a folder served at a URL the build pip-installs from), the code, pip."""
    lock = json.loads((project / "cog.lock").read_text())
    shutil.rmtree(context, ignore_errors=True)
    wheels = served[0] if served is not None else context / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    for pin in lock["python_packages"] + lock["runtime_packages"]:
        source = Path(unquote(urlparse(pin["url"]).path))
        if served is not None:
            (wheels / source.name).unlink(missing_ok=True)
            (wheels / source.name).symlink_to(source)
        else:
            shutil.copy(source, wheels / source.name)
    shutil.copytree(project, context / "src", ignore=shutil.ignore_patterns(".cog", "cog.lock"))
    shutil.copy(pip, context / "pip.whl")
    if served is None:
        (context / "Dockerfile").write_text(DOCKERFILE)
        return
    pins = " ".join(
        f"{p['name']}=={p['version']}" for p in lock["python_packages"] + lock["runtime_packages"]
    )
    (context / "Dockerfile").write_text(TORCH_DOCKERFILE.format(wheels=served[1], pins=pins))


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
    parser.add_argument("--project", choices=["numpy", "torch"], default="numpy")
    options = parser.parse_args()
    byte_compile()
    bench = projects()[options.project]
    work = Path(tempfile.mkdtemp(prefix="cog-bench-push-", dir=os.environ.get("COG_BENCH_DIR")))
    pip = pip_wheel()
    results: dict[str, Any] = {}
    served_dir = work / "served-wheels"
    served_dir.mkdir()
    with (
        serve(CACHE / "debian-mirror") as mirror,
        serve(served_dir) as wheel_url,
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
        (project / "cog.yaml").write_text(bench.cog_yaml)
        (project / "requirements.txt").write_text(bench.requirements)
        (project / "predict.py").write_text(bench.predict)
        for who in (cog, docker):
            subprocess.run(
                [*who, "login", px.host, "-u", "cog", "--password-stdin"],
                input=reg.password,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
        # Untimed preparation: the lock, and Docker's base image from our own root layers,
        # built by a copy of the project without its packages (the store is emptied after).
        run([*cog, "lock"], env, project)
        prep = work / "prep"
        shutil.copytree(project, prep)
        header = "".join(
            line + "\n" for line in bench.requirements.splitlines() if "==" not in line
        )
        (prep / "requirements.txt").write_text(header)
        # Without gpu: true, or CUDA's wheel set would be added to its empty requirements.
        (prep / "cog.yaml").write_text(bench.cog_yaml.replace("  gpu: true\n", ""))
        (prep / "predict.py").write_text(
            "from cog import BasePredictor\n\n\nclass Predictor(BasePredictor):\n"
            "    def predict(self) -> str:\n        return ''\n"
        )
        run([*cog, "build"], env, prep)
        roots = [
            (prep / ".cog" / "roots" / n).resolve()
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
        shutil.rmtree(prep)
        shutil.rmtree(view)
        shutil.rmtree(work / "store-prep", ignore_errors=True)
        env["COG_STORE_DIR"] = str(work / "store")  # cold: an empty store
        context = work / "docker-context"
        tag_cog, tag_docker = f"{px.host}/bench-cog", f"{px.host}/bench-docker"
        served = (served_dir, wheel_url) if bench.served else None
        push = [*cog, "push", "--locked", "--compression", options.compression]
        build_flags = ["--network", "host"] if bench.served else []

        def step(name: str, tag: str) -> None:
            docker_context(project, context, pip, served)
            px.received[0] = 0
            before = len(px.requests)
            cog_s, cog_rss = timed_rss([*push, f"{tag_cog}:{tag}"], env, project)
            cog_bytes = px.received[0]
            cog_blobs = sum("/blobs/uploads/" in path for _, path in px.requests[before:])
            px.received[0] = 0
            before = len(px.requests)
            docker_s = timed(
                [
                    [
                        *docker,
                        "build",
                        *build_flags,
                        "-q",
                        "-t",
                        f"{tag_docker}:{tag}",
                        str(context),
                    ],
                    [*docker, "push", f"{tag_docker}:{tag}"],
                ],
                env | {"DOCKER_BUILDKIT": "0"},
            )
            docker_bytes = px.received[0]
            docker_blobs = sum("/blobs/uploads/" in path for _, path in px.requests[before:])
            results[name] = {
                "cog_s": cog_s,
                "docker_s": docker_s,
                "cog_bytes": cog_bytes,
                "docker_bytes": docker_bytes,
                "cog_blob_requests": cog_blobs,
                "docker_blob_requests": docker_blobs,
                "cog_peak_rss": cog_rss,
            }
            print(f"{name}: {json.dumps(results[name])}", file=sys.stderr, flush=True)

        step("cold", "cold")
        old, new = bench.edit
        (project / "predict.py").write_text(bench.predict.replace(old, new, 1))
        step("edit", "edit")
        if "unchanged" in bench.steps:
            step("unchanged", "edit")  # the same image to the same tag again
        else:
            (project / "requirements.txt").write_text(
                bench.requirements.replace("numpy==2.1.3\n", "numpy==2.1.3\npillow==11.0.0\n")
            )
            run([*cog, "lock"], env, project)
            step("add-package", "add-package")
            results["pillow_wheel_bytes"] = next(WHEELS.glob("pillow-11.0.0-*.whl")).stat().st_size
    shutil.rmtree(work, ignore_errors=True)
    if options.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"{'step':<12} {'cog':>9} {'docker':>9} {'ratio':>7} {'cog up':>12} {'docker up':>12} "
        f"{'cog RSS':>9}"
    )
    for name in bench.steps:
        r = results[name]
        speedup = r["docker_s"] / r["cog_s"]
        print(
            f"{name:<12} {r['cog_s']:8.2f}s {r['docker_s']:8.2f}s {speedup:6.1f}x "
            f"{r['cog_bytes'] / 2**20:9.2f} MiB {r['docker_bytes'] / 2**20:9.2f} MiB "
            f"{r['cog_peak_rss'] / 2**20:6.0f} MiB"
        )
    if "pillow_wheel_bytes" in results:
        added = results["add-package"]["cog_bytes"] / results["pillow_wheel_bytes"]
        wheel_mib = results["pillow_wheel_bytes"] / 2**20
        print(f"adding pillow uploaded {added:.2f}x its wheel ({wheel_mib:.2f} MiB)")


if __name__ == "__main__":
    main()

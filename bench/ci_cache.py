"""Benchmark: the registry as a CI binary cache (issue 16), one run.

Three CI machines (each an empty store, a Docker config and a download cache of its own) push
examples/numpy-pillow (offline: `--no-index --find-links` the wheel cache, as the tests make
it) to one registry: Debian's docker-registry on loopback, behind the counting proxy of
tests/registry_proxy.py, which also holds the cache (`oci://PROXY/ci-cache`).

1. machine A, empty store, signing key: `cog push --cache oci://PROXY/ci-cache PROXY/model:v1`
   (cold: it builds everything and publishes it to the cache);
2. machine B, empty store, A's public key trusted, the same checkout (cog.lock included):
   the same push (warm cache);
3. B edits one line of predict.py and pushes v2 with the cache;
4. machine C, empty store, no cache: the same push as B's first ("B without a cache").

The anchor is Docker (dockerd 20.10, vfs, the classic builder: buildx has no Debian package
here), with bench/push.py's Dockerfile: `FROM` a base made by `docker import` of our own root
file system, `pip install` of the same pinned wheels, `COPY` of the code:

5. docker build + docker push on an engine holding only the base;
6. on a second such engine: docker pull of step 5's image, `docker build --cache-from` it, and
   docker push (whether the classic builder reused the layers is recorded);
7. on that second engine, the predict.py edit: docker build --cache-from + docker push.

Counted at the proxy for every step: blob GETs and the bytes they downloaded (each GET'd
blob's size, from the registry's storage), GETs of the image's own layers, blob uploads and
their bytes, mounts, manifest PUTs; and the derivations built (cog's `building NAME` lines).

Run as root after `make test-fixtures`: `.venv/bin/python bench/ci_cache.py [--json] [--logs DIR]`
(`--json`: the raw numbers, with every blob GET and upload).
`--logs DIR` writes each cog run's stderr with the seconds since its start on every line.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.push import CACHE, byte_compile, docker_context, offline_env, pip_wheel, run
from store.oci import Layout
from tests.debian_mirror import serve
from tests.projects import project
from tests.registry_proxy import Proxy, proxy
from tests.services import Registry, dockerd, registry

REPO = Path(__file__).resolve().parent.parent
COG = [sys.executable, "-m", "cog.cli.main"]
_BLOB_GET = re.compile(r"^/v2/(.+)/blobs/(sha256:[0-9a-f]{64})")


@dataclass
class Ran:
    seconds: float
    stdout: str
    stderr: list[tuple[float, str]]  # (seconds since the start, line)

    def lines(self) -> list[str]:
        return [line for _, line in self.stderr]


def timed_run(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> Ran:
    """Runs a command after `sync`, timing it and stamping each stderr line as it comes."""
    subprocess.run(["sync"], check=True)
    stamped: list[tuple[float, str]] = []
    out: list[str] = []
    t0 = time.perf_counter()
    process = subprocess.Popen(
        argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stderr is not None
    stdout = process.stdout
    reader = threading.Thread(target=lambda: out.append(stdout.read()), daemon=True)
    reader.start()
    for line in process.stderr:
        stamped.append((time.perf_counter() - t0, line.rstrip("\n")))
    code = process.wait()
    seconds = time.perf_counter() - t0
    reader.join()
    if code != 0:
        tail = "\n".join(line for _, line in stamped[-40:])
        raise SystemExit(f"{' '.join(argv[:5])} failed ({code}):\n{''.join(out)[-2000:]}{tail}")
    return Ran(seconds, "".join(out), stamped)


def blob_size(storage: Path, digest: str) -> int:
    hexdigest = digest.split(":", 1)[1]
    data = storage / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"
    return data.stat().st_size


def traffic(px: Proxy, storage: Path, layers: set[str]) -> dict[str, Any]:
    """What the proxy saw since it was last cleared."""
    fetched = [
        (m.group(1), m.group(2))
        for method, path in px.requests
        if method == "GET" and (m := _BLOB_GET.match(path)) is not None
    ]
    gets = [digest for _, digest in fetched]
    sent = [(d, blob_size(storage, d)) for d in px.blob_uploads()]
    return {
        "requests": len(px.requests),
        "manifest_gets": px.count("GET", "/manifests/"),
        "blob_heads": px.count("HEAD", "/blobs/sha256:"),
        "blob_gets": len(gets),
        "bytes_downloaded": sum(blob_size(storage, d) for d in gets),
        "layer_gets": sum(1 for d in gets if d in layers),
        "layer_bytes_downloaded": sum(blob_size(storage, d) for d in gets if d in layers),
        "uploads": len(px.blob_uploads()),
        "bytes_uploaded": px.received[0],
        "mounts": px.count("POST", "mount="),
        "manifest_puts": px.count("PUT", "/manifests/"),
        # (repository, digest, size) of each blob GET, and (digest, size) of each upload
        "blob_get_list": [(r, d, blob_size(storage, d)) for r, d in fetched],
        "upload_list": sent,
    }


def reset(px: Proxy) -> None:
    px.requests.clear()
    px.received[0] = 0


def cog_step(
    px: Proxy,
    reg: Registry,
    argv: list[str],
    env: dict[str, str],
    cwd: Path,
    layers: set[str],
    logs: Path | None,
    name: str,
) -> dict[str, Any]:
    reset(px)
    ran = timed_run([*COG, *argv], env, cwd)
    lines = ran.lines()
    if logs is not None:
        text = "".join(f"{t:8.2f}  {line}\n" for t, line in ran.stderr)
        (logs / f"{name}.log").write_text(text)
    digest = next(
        (line.rsplit("@", 1)[1] for line in ran.stdout.splitlines() if line.startswith("pushed")),
        None,
    )
    return {
        "seconds": ran.seconds,
        "built": sum(1 for line in lines if line.startswith("building ")),
        "built_names": sorted({line.split()[1] for line in lines if line.startswith("building ")}),
        "fetched": sum(1 for line in lines if line.startswith("fetched ")),
        "summary": [line for line in lines if "blobs uploaded" in line or "published" in line],
        "digest": digest,
        **traffic(px, reg.storage, layers),
    }


def docker_step(
    px: Proxy,
    reg: Registry,
    argvs: list[list[str]],
    env: dict[str, str],
    layers: set[str],
) -> dict[str, Any]:
    reset(px)
    subprocess.run(["sync"], check=True)
    t0 = time.perf_counter()
    output = "".join(run(argv, env) for argv in argvs)
    seconds = time.perf_counter() - t0
    steps = len(re.findall(r"^Step \d+/\d+", output, re.M))
    cached = output.count("Using cache")
    return {
        "seconds": seconds,
        "steps": steps,
        "steps_cached": cached,
        **traffic(px, reg.storage, layers),
    }


def stored_layers(storage: Path, repository: str, tag: str) -> set[str]:
    """The layer digests of the manifest a tag names, read from the registry's storage."""
    tags = storage / "docker/registry/v2/repositories" / repository / "_manifests/tags"
    digest = (tags / tag / "current/link").read_text().strip()
    hexdigest = digest.split(":", 1)[1]
    blob = storage / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"
    return {d["digest"] for d in json.loads(blob.read_bytes())["layers"]}


def image_layers(root: Path) -> set[str]:
    layout = Layout.open((root / ".cog" / "image").resolve())
    return {d["digest"] for d in layout.manifest["layers"]}


def login(argv: list[str], env: dict[str, str], host: str, password: str) -> None:
    subprocess.run(
        [*argv, "login", host, "-u", "cog", "--password-stdin"],
        input=password,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--logs", type=Path, help="write each cog run's stamped stderr here")
    options = parser.parse_args()
    byte_compile()
    logs: Path | None = options.logs
    if logs is not None:
        logs.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="cog-bench-ci-cache-"))
    pip = pip_wheel()
    results: dict[str, Any] = {}
    with (
        serve(CACHE / "debian-mirror") as mirror,
        dockerd(shutil.which("dockerd") or "dockerd") as host1,
        dockerd(shutil.which("dockerd") or "dockerd") as host2,
        registry(
            shutil.which("docker-registry") or "docker-registry",
            shutil.which("htpasswd") or "htpasswd",
        ) as reg,
        proxy(reg.host) as px,
    ):
        base = offline_env(work, mirror)
        base.pop("DOCKER_HOST", None)

        def machine(name: str, **extra: str) -> dict[str, str]:
            """One CI machine: a store, a Docker config and a download cache of its own."""
            return base | {
                "COG_STORE_DIR": str(work / name / "store"),
                "COG_CACHE_DIR": str(work / name / "cog-cache"),
                "DOCKER_CONFIG": str(work / name / "docker-config"),
                **extra,
            }

        keys = work / "keys"
        keys.mkdir()
        run([*COG, "store", "generate-key", "ci-1", "--dir", str(keys)], base, work)
        prep = machine("prep")
        a = machine("machine-a", COG_SIGNING_KEY=str(keys / "ci-1.sec"))
        b = machine("machine-b", COG_TRUSTED_KEYS=str(keys / "ci-1.pub"))
        c = machine("machine-c")
        docker1 = machine("docker-1") | {"DOCKER_HOST": host1, "DOCKER_BUILDKIT": "0"}
        docker2 = machine("docker-2") | {"DOCKER_HOST": host2, "DOCKER_BUILDKIT": "0"}
        for env in (a, b, c):
            login(COG, env, px.host, reg.password)
        for env in (docker1, docker2):
            login(["docker"], env, px.host, reg.password)

        # Untimed preparation: the lock (committed, in CI), and Docker's base image from our
        # own root layers, the same image (saved and loaded) in both engines.
        a_root = project("numpy-pillow", work / "a")
        run([*COG, "lock"], prep, a_root)
        run([*COG, "build", "--locked", "--no-docker-load"], prep, a_root)
        roots = [
            (a_root / ".cog" / "roots" / n).resolve()
            for n in ("rootfs-base", "rootfs-python", "rootfs-system")
        ]
        from builders.rootview import merge_view

        view = work / "base-view"
        merge_view(roots, view)
        tar = subprocess.Popen(["tar", "-C", str(view), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(
            ["docker", "import", "-", "cogbench-base"],
            stdin=tar.stdout,
            env=docker1,
            check=True,
            capture_output=True,
        )
        tar.wait()
        saved = work / "base.tar"
        run(["docker", "save", "-o", str(saved), "cogbench-base"], docker1)
        run(["docker", "load", "-i", str(saved)], docker2)
        saved.unlink()
        shutil.rmtree(view)
        shutil.rmtree(a_root / ".cog")
        b_root = work / "b" / "numpy-pillow"
        c_root = work / "c" / "numpy-pillow"
        for root in (b_root, c_root):
            shutil.copytree(a_root, root)

        cache = f"oci://{px.host}/ci-cache"
        push = ["push", "--locked"]
        results["a_cold"] = cog_step(
            px,
            reg,
            [*push, "--cache", cache, f"{px.host}/model:v1"],
            a,
            a_root,
            set(),
            logs,
            "a_cold",
        )
        layers = stored_layers(reg.storage, "model", "v1")
        if layers != image_layers(a_root):
            raise SystemExit("the registry holds other layers than machine A's image")
        results["image_layers"] = len(layers)
        results["image_layer_bytes"] = sum(blob_size(reg.storage, d) for d in layers)

        results["b_warm"] = cog_step(
            px,
            reg,
            [*push, "--cache", cache, f"{px.host}/model:v1"],
            b,
            b_root,
            layers,
            logs,
            "b_warm",
        )
        predict = b_root / "predict.py"
        edited = predict.read_text().replace("mean():.1f}", "mean():.2f}")
        assert edited != predict.read_text()
        predict.write_text(edited)
        results["b_edit"] = cog_step(
            px,
            reg,
            [*push, "--cache", cache, f"{px.host}/model:v2"],
            b,
            b_root,
            layers,
            logs,
            "b_edit",
        )
        results["c_no_cache"] = cog_step(
            px, reg, [*push, f"{px.host}/model:v1"], c, c_root, layers, logs, "c_no_cache"
        )
        for name in ("b_warm", "c_no_cache"):
            if results[name]["digest"] != results["a_cold"]["digest"]:
                raise SystemExit(f"{name} pushed another image than machine A")

        # The anchor: Docker, with the same wheels and code.
        context = work / "docker-context"
        docker_context(a_root, context, pip)
        tag = f"{px.host}/model-docker"
        results["docker_cold"] = docker_step(
            px,
            reg,
            [["docker", "build", "-t", f"{tag}:v1", str(context)], ["docker", "push", f"{tag}:v1"]],
            docker1,
            set(),
        )
        docker_layers = stored_layers(reg.storage, "model-docker", "v1")
        results["docker_cache_from"] = docker_step(
            px,
            reg,
            [
                ["docker", "pull", f"{tag}:v1"],
                ["docker", "build", "--cache-from", f"{tag}:v1", "-t", f"{tag}:v1", str(context)],
                ["docker", "push", f"{tag}:v1"],
            ],
            docker2,
            docker_layers,
        )
        docker_context(b_root, context, pip)
        results["docker_edit"] = docker_step(
            px,
            reg,
            [
                ["docker", "build", "--cache-from", f"{tag}:v1", "-t", f"{tag}:v2", str(context)],
                ["docker", "push", f"{tag}:v2"],
            ],
            docker2,
            docker_layers,
        )
    shutil.rmtree(work, ignore_errors=True)
    if options.json:
        print(json.dumps(results, indent=2))
        return
    report(results)


def report(results: dict[str, Any]) -> None:
    rows = [
        ("A: cold, fills the cache", "a_cold"),
        ("B: warm cache", "b_warm"),
        ("B: predict.py edit, v2", "b_edit"),
        ("C: no cache", "c_no_cache"),
        ("docker: empty engine", "docker_cold"),
        ("docker: --cache-from", "docker_cache_from"),
        ("docker: edit, warm engine", "docker_edit"),
    ]
    print(
        f"{'step':<27} {'wall':>8} {'built':>9} {'layer GETs':>10} {'downloaded':>12} "
        f"{'uploaded':>17} {'mounts':>6} {'PUT mf':>6}"
    )
    for label, key in rows:
        r = results[key]
        built = (
            str(r["built"]) if "built" in r else f"{r['steps'] - r['steps_cached']}/{r['steps']}"
        )
        print(
            f"{label:<27} {r['seconds']:7.2f}s {built:>9} {r['layer_gets']:>10} "
            f"{r['bytes_downloaded'] / 2**20:8.2f} MiB "
            f"{r['uploads']:>4} / {r['bytes_uploaded'] / 2**20:7.2f} MiB "
            f"{r['mounts']:>6} {r['manifest_puts']:>6}"
        )
    warm = results["b_warm"]["seconds"]
    print(f"B warm vs C no cache: {results['c_no_cache']['seconds'] / warm:.1f}x (target >= 10x)")
    print(f"B warm absolute: {warm:.2f} s (target <= 5 s)")
    for key in ("docker_cold", "docker_cache_from"):
        print(f"B warm vs {key}: {results[key]['seconds'] / warm:.1f}x")
    edit = results["docker_edit"]["seconds"] / results["b_edit"]["seconds"]
    print(f"B edit vs docker edit: {edit:.1f}x")


if __name__ == "__main__":
    main()

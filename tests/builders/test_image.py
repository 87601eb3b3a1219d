"""The OCI image built from store paths: validated by skopeo and umoci, and runnable."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from builders.errors import BuildError
from store.oci import Layout
from tests.conftest import require_tool
from tests.projects import WHEELS, cog, project
from tests.services import free_port
from tests.wheels import make_wheel


def test_image_is_a_valid_oci_layout(offline: dict[str, str], tmp_path: Path) -> None:
    skopeo, umoci = require_tool("skopeo"), require_tool("umoci")
    root = project("hello-world", tmp_path)
    layout = tmp_path / "oci"
    result = cog(root, offline, "build", "--output", f"oci:{layout}")
    assert result.returncode == 0, result.stderr[-2000:]
    digest = next(
        line.split()[1] for line in result.stdout.splitlines() if line.startswith("digest")
    )
    inspect = subprocess.run(
        [skopeo, "inspect", f"oci:{layout}:latest"], capture_output=True, text=True, check=True
    )
    info = json.loads(inspect.stdout)
    assert info["Digest"] == digest and info["Created"] == "1970-01-01T00:00:00Z"
    assert info["Labels"]["run.cog.version"] == "0.23.1"
    assert json.loads(info["Labels"]["run.cog.config"])["predict"] == "predict.py:Predictor"
    assert info["Labels"]["run.cog.lock"].startswith("sha256:")
    schema = json.loads(info["Labels"]["run.cog.openapi_schema"])  # read from the model itself
    text = schema["components"]["schemas"]["Input"]["properties"]["text"]
    assert text["type"] == "string" and "prefix" in text["description"]
    assert schema["info"]["version"] == info["Labels"]["run.cog.version"]  # as Cog writes it
    config = subprocess.run(
        [skopeo, "inspect", "--config", f"oci:{layout}:latest"],
        capture_output=True,
        text=True,
        check=True,
    )
    image_config = json.loads(config.stdout)["config"]
    assert image_config["WorkingDir"] == "/src" and "5000/tcp" in image_config["ExposedPorts"]
    assert image_config["Cmd"][1:3] == ["-m", "runtime"]
    copy = tmp_path / "copy"
    subprocess.run(
        [skopeo, "copy", f"oci:{layout}:latest", f"oci:{copy}:latest"],
        capture_output=True,
        check=True,
    )
    bundle = tmp_path / "bundle"
    subprocess.run(
        [umoci, "unpack", "--image", f"{layout}:latest", str(bundle)],
        capture_output=True,
        check=True,
    )
    rootfs = bundle / "rootfs"
    assert (rootfs / "src" / "predict.py").is_file()
    assert stat.S_IMODE(os.stat(rootfs / "tmp").st_mode) == 0o1777
    assert (rootfs / "usr/bin/python3.11").is_file()
    model_env = image_config["Cmd"][-1].removesuffix("/bin/python")
    assert (rootfs / model_env.lstrip("/") / "pyvenv.cfg").is_file()
    # The runtime environment and everything it needs came along (the closure is complete).
    runtime_env = image_config["Cmd"][0]
    run = subprocess.run(
        [
            "chroot",
            str(rootfs),
            runtime_env,
            "-c",
            "import runtime.main, trio, h11; print('ok')",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.stdout.strip() == "ok", run.stderr
    # A default its own bounds refuse: one sentence from the build, as Cog's SDK words it.
    predictor = root / "predict.py"
    bounded = "Input(default='long', max_length=3, "
    predictor.write_text(predictor.read_text().replace("Input(", bounded))
    refused = cog(root, offline, "build", "--output", f"oci:{tmp_path / 'refused'}")
    assert refused.returncode == 1
    refusal = "error: the predictor's signature is refused: default conflicts with max_length=3"
    assert refusal in refused.stderr
    assert "Traceback" not in refused.stderr


def test_predict_runs_an_image_natively(offline: dict[str, str], tmp_path: Path) -> None:
    """An OCI directory and the store path of an image both run under bwrap, over the image's
    own unpacked layers; the project directory is not needed."""
    root = project("hello-world", tmp_path)
    layout = tmp_path / "oci"
    built = cog(root, offline, "build", "--output", f"oci:{layout}")
    assert built.returncode == 0, built.stderr[-2000:]
    store_path = next(
        line.split()[1] for line in built.stdout.splitlines() if line.startswith("image ")
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for image in (str(layout), store_path):
        result = cog(elsewhere, offline, "predict", image, "-i", "text=image")
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.strip() == "hello image"
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "cog.cli.main", "serve", str(layout), "-p", str(port)],
        cwd=elsewhere,
        env=offline,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/health-check", timeout=2).json()["status"] == "READY":
                    break
            assert server.poll() is None, "cog serve exited"
            time.sleep(0.2)
        answer = httpx.post(f"{url}/predictions", json={"input": {"text": "served"}}, timeout=60)
        assert answer.json()["output"] == "hello served"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        assert server.wait(timeout=30) is not None
    bad = cog(elsewhere, offline, "predict", str(tmp_path / "missing"), "-i", "text=x")
    assert bad.returncode == 1 and "there is no image at" in bad.stderr, bad.stderr
    not_layout = cog(elsewhere, offline, "predict", str(elsewhere), "-i", "text=x")
    assert not_layout.returncode == 1 and "is not an OCI image layout" in not_layout.stderr
    gpus = cog(elsewhere, offline, "predict", str(layout), "--gpus", "all", "-i", "text=x")
    assert gpus.returncode == 1 and "no NVIDIA GPU here" in gpus.stderr


ASYNC_ENV = """\
import os
from cog import BasePredictor


class Predictor(BasePredictor):
    async def predict(self, text: str) -> str:
        return os.environ.get("COG_MAX_CONCURRENCY", "unset")
"""


def test_concurrency_max_reaches_the_runtime_as_in_cogs_image(
    offline: dict[str, str], tmp_path: Path
) -> None:
    """Cog's Dockerfile sets ENV COG_MAX_CONCURRENCY from cog.yaml's concurrency.max (its
    cogEnvVars), which the runtime reads for its slots: so does the image, and a run from
    source sees the same; `-e` still overrides it there."""
    root = project("hello-world", tmp_path)
    config = root / "cog.yaml"
    config.write_text(config.read_text() + "concurrency:\n  max: 3\n")
    (root / "predict.py").write_text(ASYNC_ENV)
    layout = tmp_path / "oci"
    built = cog(root, offline, "build", "--output", f"oci:{layout}")
    assert built.returncode == 0, built.stderr[-2000:]
    env = Layout.open(layout).config()["config"]["Env"]
    assert "COG_MAX_CONCURRENCY=3" in env
    assert "COG_PREDICT_TYPE_STUB=predict.py:Predictor" in env
    for args in ((str(layout),), ()):
        ran = cog(root, offline, "predict", *args, "-i", "text=x")
        assert ran.returncode == 0, ran.stderr[-2000:]
        assert ran.stdout.strip() == "3"
    overridden = cog(root, offline, "predict", "-e", "COG_MAX_CONCURRENCY=2", "-i", "text=x")
    assert overridden.stdout.strip() == "2", overridden.stderr[-2000:]


def test_plan_layers_groups_small_paths_stably() -> None:
    from builders.image import ALONE, plan_layers
    from store.paths import StorePath

    def path(i: int) -> StorePath:
        return StorePath.make("source", f"test:{i}", f"p{i}")

    sizes = {path(i): (ALONE if i % 10 == 0 else 1000 + i) for i in range(60)}
    assert plan_layers(sizes, 60) == [[p] for p in sorted(sizes)]  # within budget: all alone
    plan = plan_layers(sizes, 20)
    assert len(plan) <= 20 and sorted(p for g in plan for p in g) == sorted(sizes)
    assert all([p] in plan for p in sizes if sizes[p] >= ALONE)  # large paths stand alone
    assert plan == plan_layers(dict(reversed(sizes.items())), 20)  # order of input is moot
    # A new small path changes exactly one group; every other layer stays the same.
    grown = plan_layers(sizes | {path(99): 5}, 20)
    assert len([g for g in grown if g not in plan]) == 1
    with pytest.raises(BuildError, match="large store paths alone"):
        plan_layers(sizes, 6)


def test_grouped_image_is_valid_and_keeps_large_layers(
    offline: dict[str, str], tmp_path: Path
) -> None:
    """Past --max-layers, small store paths share layers while a large one keeps its own: the
    test makes the large one, a real wheel of incompressible data just over ALONE."""
    from builders.image import ALONE

    umoci = require_tool("umoci")
    root = project("hello-world", tmp_path)
    extra = tmp_path / "large-wheels"
    extra.mkdir()
    blob = random.Random(16).randbytes(ALONE + (1 << 20))
    files = {"largeblob/__init__.py": b"", "largeblob/blob.bin": blob}
    make_wheel(extra, "largeblob", "1.0", files=files)
    (root / "requirements.txt").write_text(
        f"--no-index\n--find-links {WHEELS}\n--find-links {extra}\nlargeblob==1.0\n"
    )
    (root / "cog.yaml").write_text(
        'build:\n  python_version: "3.11"\n  python_requirements: requirements.txt\n'
        'predict: "predict.py:Predictor"\n'
    )
    default, grouped = tmp_path / "default", tmp_path / "grouped"
    built = cog(root, offline, "build", "--output", f"oci:{default}")
    assert built.returncode == 0, built.stderr[-2000:]
    result = cog(root, offline, "build", "--max-layers", "12", "--output", f"oci:{grouped}")
    assert result.returncode == 0, result.stderr[-2000:]
    [large] = Path(offline["COG_STORE_DIR"]).glob("*-python3.11-largeblob-1.0")
    info = cog(root, offline, "store", "path-info", "--json", str(large))
    assert info.returncode == 0, info.stderr
    [large_info] = json.loads(info.stdout)
    assert large_info["tar_size"] >= ALONE

    def image(layout: Path) -> tuple[list[str], list[str]]:
        """The layer digests of the image in `layout`, and their diff_ids."""
        index = json.loads((layout / "index.json").read_text())
        digest = index["manifests"][0]["digest"].split(":")[1]
        manifest = json.loads((layout / "blobs" / "sha256" / digest).read_text())
        config_digest = manifest["config"]["digest"].split(":")[1]
        config = json.loads((layout / "blobs" / "sha256" / config_digest).read_text())
        return [d["digest"] for d in manifest["layers"]], config["rootfs"]["diff_ids"]

    (few, few_ids), (many, many_ids) = image(grouped), image(default)
    assert len(few) <= 12 < len(many)
    assert many[:3] == few[:3] and many[-1] == few[-1]  # root layers and code: unchanged
    # The large path is a layer of its own in both images (its diff_id is the store's layer
    # sha256 of that one path), and the same blob: grouping did not recompress it.
    large_id = f"sha256:{large_info['tar_sha256']}"
    assert large_id in few_ids and large_id in many_ids
    assert few[few_ids.index(large_id)] == many[many_ids.index(large_id)]
    bundle = tmp_path / "bundle"
    subprocess.run(
        [umoci, "unpack", "--image", f"{grouped}:latest", str(bundle)],
        capture_output=True,
        check=True,
    )
    config = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--config", f"oci:{grouped}:latest"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    runtime_python, model_python = config["config"]["Cmd"][0], config["config"]["Cmd"][-1]

    def chroot(python: str, code: str) -> subprocess.CompletedProcess[str]:
        argv = ["chroot", str(bundle / "rootfs"), python, "-c", code]
        return subprocess.run(argv, capture_output=True, text=True, check=False)

    run = chroot(runtime_python, "import runtime.main")
    assert run.returncode == 0, run.stderr
    size = "import largeblob, os; print(os.path.getsize(largeblob.__path__[0] + '/blob.bin'))"
    run = chroot(model_python, size)
    assert run.stdout.strip() == str(len(blob)), run.stderr


def test_weights_are_described_not_copied(offline: dict[str, str], tmp_path: Path) -> None:
    """A weight layer's bytes stay in the weight's store path: the image in the store lists
    its parts, and every way out (an OCI directory, a docker-archive, a native run) streams
    them; zstd compression on request gives a different, equally valid image."""
    root = project("hello-world", tmp_path)
    weight = os.urandom(3 << 20)
    (root / "weights").mkdir()
    (root / "weights" / "model.bin").write_bytes(weight)
    (root / "cog.yaml").write_text(
        (root / "cog.yaml").read_text() + "weights:\n  - source: weights/model.bin\n"
    )
    (root / "predict.py").write_text(
        (root / "predict.py")
        .read_text()
        .replace(
            'return f"{self.prefix} {text}"',
            "import hashlib\n"
            "        data = open('/src/weights/model.bin', 'rb').read()\n"
            "        return hashlib.sha256(data).hexdigest()",
        )
    )
    layout = tmp_path / "oci"
    built = cog(root, offline, "build", "--output", f"oci:{layout}")
    assert built.returncode == 0, built.stderr[-2000:]
    in_store = (root / ".cog" / "image").resolve()
    stored = Layout.open(in_store)
    digest = stored.manifest["layers"][-1]["digest"]  # weights come last
    parts = json.loads((in_store / "external-blobs.json").read_text())[digest]
    assert sum(p.get("size", 0) for p in parts) == len(weight)
    # No layer is copied into the stored image: its blobs are the config and the manifest.
    assert len(list((in_store / "blobs" / "sha256").iterdir())) == 2
    # Written out, the blob exists and is what its digest says (skopeo checks it on copy).
    blob = layout / "blobs" / "sha256" / digest.split(":")[1]
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == digest.split(":")[1]
    subprocess.run(
        ["skopeo", "copy", f"oci:{layout}:latest", f"oci:{tmp_path / 'copy'}:latest"],
        capture_output=True,
        check=True,
    )
    archive = tmp_path / "image.tar"
    assert cog(root, offline, "build", "--output", f"docker-archive:{archive}").returncode == 0
    subprocess.run(
        ["skopeo", "copy", f"docker-archive:{archive}", f"oci:{tmp_path / 'from-tar'}:latest"],
        capture_output=True,
        check=True,
    )
    expected = hashlib.sha256(weight).hexdigest()
    ran = cog(tmp_path, offline, "predict", str(in_store), "-i", "text=x")
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.strip() == expected
    zstd_layout = tmp_path / "zstd"
    zstd = cog(root, offline, "build", "--compression", "zstd", "--output", f"oci:{zstd_layout}")
    assert zstd.returncode == 0, zstd.stderr[-2000:]
    index = json.loads((zstd_layout / "index.json").read_text())
    manifest = json.loads(
        (zstd_layout / "blobs" / "sha256" / index["manifests"][0]["digest"][7:]).read_text()
    )
    types = {layer["mediaType"] for layer in manifest["layers"]}
    assert types == {
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.oci.image.layer.v1.tar",
    }
    ran = cog(tmp_path, offline, "predict", str(zstd_layout), "-i", "text=x")
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.strip() == expected

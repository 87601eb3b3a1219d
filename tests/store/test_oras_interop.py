"""A standard OCI client reads what `cog` writes to a registry.

Our pushes go through our own registry client (store/registry.py, on httpx); here oras-py, a
pinned test dependency that shares no code with it, logs in to Debian's docker-registry
(htpasswd auth) and pulls what the real CLI pushed: an image (`cog push`), the binary cache's
entries (`cog build --cache oci://...`) and a weights artifact (`cog weights import`). Every
check compares bytes oras-py fetched with the bytes our store or the weights' sources hold, so
any push a standard client cannot read, or reads differently, fails here.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import oras.defaults  # type: ignore[import-untyped]
import oras.schemas  # type: ignore[import-untyped]
import pytest
from oras.client import OrasClient  # type: ignore[import-untyped]

from store.local import Store
from store.oci import MANIFEST, Layout
from store.paths import StorePath
from tests.conftest import REPO
from tests.projects import cog, project
from tests.services import Registry
from tests.store.test_registry import login, pushed_digest

CHUNK = 1 << 20
ENTRY_ANNOTATION = "run.cog.store.entry"  # where a cache entry's manifest holds the entry


@dataclass
class Pushed:
    """hello-world built into a binary cache and pushed as an image, by the CLI."""

    store: Store
    layout: Layout
    image: StorePath
    image_ref: str  # HOST/REPOSITORY:TAG
    cache_repository: str  # HOST/REPOSITORY


@pytest.fixture(scope="module")
def pushed(
    offline: dict[str, str], oci_registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pushed]:
    work = tmp_path_factory.mktemp("interop")
    root = project("hello-world", work)
    env = offline | {"DOCKER_CONFIG": str(work / "docker-config")}
    made = cog(work, env, "store", "generate-key", "ci-1", "--dir", str(work))
    assert made.returncode == 0, made.stderr
    env["COG_SIGNING_KEY"] = str(work / "ci-1.sec")
    logged_in = login(root, env, oci_registry.host, oci_registry.password)
    assert logged_in.returncode == 0, logged_in.stderr

    cache_repository = f"{oci_registry.host}/interop-cache"
    built = cog(root, env, "build", "--no-docker-load", "--cache", f"oci://{cache_repository}")
    assert built.returncode == 0, built.stderr[-3000:]
    image_ref = f"{oci_registry.host}/interop/hello:v1"
    push = cog(root, env, "push", image_ref)
    assert push.returncode == 0, push.stderr[-3000:]

    layout = Layout.open((root / ".cog" / "image").resolve())
    assert pushed_digest(push.stdout) == layout.manifest_digest
    store = Store(Path(env["COG_STORE_DIR"]))
    try:
        image = store.parse(layout.root.name)
        yield Pushed(store, layout, image, image_ref, cache_repository)
    finally:
        store.close()


@pytest.fixture
def oras_client(oci_registry: Registry, tmp_path: Path) -> OrasClient:
    """oras-py logged in to the test registry over plain HTTP, with HTTP Basic auth (what an
    htpasswd registry asks for), its credentials in a Docker config of its own."""
    client = OrasClient(hostname=oci_registry.host, insecure=True, auth_backend="basic")
    answer = client.login(
        oci_registry.user,
        oci_registry.password,
        hostname=oci_registry.host,
        config_path=str(tmp_path / "oras-docker-config.json"),
    )
    assert answer.get("Status") == "Login Succeeded", answer
    return client


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        while chunk := data.read(CHUNK):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def sha256_stream(stream: Readable) -> str:
    digest = hashlib.sha256()
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def gunzipped_sha256(path: Path) -> str:
    """The sha256 of a gzip blob's content, as a standard reader decompresses it."""
    with gzip.open(path, "rb") as data:
        return sha256_stream(data)


def same_as_store(pulled: Path, layout: Layout, digest: str) -> bool:
    """Whether a file oras-py fetched holds, byte for byte, the blob our store holds."""
    reader = layout.open_blob(digest)
    try:
        with open(pulled, "rb") as theirs:
            while True:
                ours = reader.read(CHUNK)
                if ours != theirs.read(len(ours) or 1):
                    return False
                if not ours:
                    return True
    finally:
        reader.close()


def fetched(client: OrasClient, container: str, descriptor: dict[str, Any], into: Path) -> Path:
    """A blob downloaded by oras-py, checked against its descriptor's size and digest."""
    digest: str = descriptor["digest"]
    out = into / digest.replace(":", "-")
    assert client.download_blob(container, digest, str(out)) == str(out)
    assert out.stat().st_size == descriptor["size"], descriptor
    assert sha256_file(out) == digest
    return out


def raw_manifest(client: OrasClient, host: str, repository: str, reference: str) -> bytes:
    """A manifest's bytes as the registry serves them to oras-py (its get_manifest parses
    them), asked for with the media types oras-py accepts by default; the registry answers
    with the media type and digest the push declared."""
    url = f"http://{host}/v2/{repository}/manifests/{reference}"
    accept = ", ".join(oras.defaults.default_manifest_accepted_media_types)
    response = client.do_request(url, "GET", headers={"Accept": accept})
    assert response.status_code == 200, response.text
    data = bytes(response.content)
    assert response.headers["Content-Type"] == json.loads(data)["mediaType"] == MANIFEST
    assert response.headers["Docker-Content-Digest"] == "sha256:" + hashlib.sha256(data).hexdigest()
    return data


def test_oras_pulls_the_pushed_image_byte_for_byte(
    pushed: Pushed, oras_client: OrasClient, oci_registry: Registry, tmp_path: Path
) -> None:
    layout = pushed.layout
    manifest = oras_client.get_manifest(pushed.image_ref, validation_schema=oras.schemas.manifest)
    assert manifest == layout.manifest
    data = raw_manifest(oras_client, oci_registry.host, "interop/hello", "v1")
    assert data == layout.manifest_bytes
    assert "sha256:" + hashlib.sha256(data).hexdigest() == layout.manifest_digest

    config_file = fetched(oras_client, pushed.image_ref, manifest["config"], tmp_path)
    assert same_as_store(config_file, layout, manifest["config"]["digest"])
    config = json.loads(config_file.read_bytes())
    diff_ids = config["rootfs"]["diff_ids"]
    assert len(diff_ids) == len(manifest["layers"]) > 1
    for layer, diff_id in zip(manifest["layers"], diff_ids, strict=True):
        blob = fetched(oras_client, pushed.image_ref, layer, tmp_path)
        assert same_as_store(blob, layout, layer["digest"]), layer["digest"]
        # A standard gzip reader gets the layer the image config promises.
        assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
        assert gunzipped_sha256(blob) == diff_id, layer["digest"]
        blob.unlink()

    # The registry behind it does check credentials: oras-py with a wrong password is refused.
    stranger = OrasClient(hostname=oci_registry.host, insecure=True, auth_backend="basic")
    stranger.auth.set_basic_auth(oci_registry.user, "not-the-password")
    refused = stranger.do_request(
        f"http://{oci_registry.host}/v2/interop/hello/manifests/v1", "GET"
    )
    assert refused.status_code == 401


def test_oras_reads_every_cache_entry_and_its_blob_verifies(
    pushed: Pushed, oras_client: OrasClient, tmp_path: Path
) -> None:
    store, cache = pushed.store, pushed.cache_repository
    closure = store.closure([pushed.image])
    tags = set(oras_client.get_tags(cache))
    assert {path.hash for path in closure} <= tags
    forms: set[str] = set()
    for path in closure:
        manifest = oras_client.get_manifest(
            f"{cache}:{path.hash}", validation_schema=oras.schemas.manifest
        )
        entry = json.loads(manifest["annotations"][ENTRY_ANNOTATION])
        local = store.info(path)
        assert entry["info"]["path"] == str(path)
        assert entry["info"]["nar_hash"] == local.nar_hash
        assert entry["info"]["references"] == [str(r) for r in local.references]
        assert entry["info"]["signatures"], path  # published with the signing key
        [layer] = manifest["layers"]
        assert {k: layer[k] for k in ("mediaType", "digest", "size")} == entry["blob"]
        blob = fetched(oras_client, cache, layer, tmp_path)
        forms.add(entry["form"])
        if entry["form"] == "blob":  # an image layer path: the blob is its own file
            assert blob.read_bytes() == (store.real_path(path) / "blob").read_bytes()
        elif entry["form"] == "layer":  # the path's canonical tar, compressed
            assert gunzipped_sha256(blob) == entry["diff_id"] == f"sha256:{local.tar_sha256}"
        else:  # the image's root layer holding the path's tree, the very blob the image holds
            assert entry["form"] == "tree", entry["form"]
            assert same_as_store(blob, pushed.layout, layer["digest"])
            assert gunzipped_sha256(blob) == entry["diff_id"]
        blob.unlink()
    assert "layer" in forms and "blob" in forms, forms


WEIGHTS_PROJECT = """build:
  python_version: "3.11"
run: "predict.py:Predictor"
model: test/interop-weights
weights:
  - name: encoder
    target: /src/weights/encoder
    source:
      uri: file://./encoder
  - name: head
    target: /opt/weights/head
    source:
      uri: file://./head
"""


def weight_sources(root: Path) -> dict[str, bytes]:
    """Files of both sizes the weights' layers treat differently (alone, or bundled), with
    bytes that no two files share."""
    files = {
        "encoder/model.safetensors": os.urandom(3 << 20),
        "encoder/config.json": b'{"layers": 2}\n',
        "encoder/tokenizer/vocab.json": b'{"vocab": ["a", "b"]}\n',
        "head/head.bin": os.urandom(4096),
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def untar(blob: Path) -> dict[str, bytes]:
    """The regular files of an uncompressed tar layer, read with the standard library."""
    found: dict[str, bytes] = {}
    with tarfile.open(blob, mode="r:") as archive:
        for member in archive:
            if member.isfile():
                extracted = archive.extractfile(member)
                assert extracted is not None
                found[member.name.removeprefix("./")] = extracted.read()
    return found


def test_oras_pulls_weights_files_byte_identical(
    oci_registry: Registry, oras_client: OrasClient, tmp_path: Path
) -> None:
    root = tmp_path / "model"
    root.mkdir()
    (root / "cog.yaml").write_text(WEIGHTS_PROJECT)
    (root / "predict.py").write_text("")
    sources = weight_sources(root)
    env = dict(os.environ) | {
        "PYTHONPATH": str(REPO),
        "DOCKER_CONFIG": str(tmp_path / "docker-config"),
        "COG_CACHE_DIR": str(tmp_path / "cache"),
        "COG_STORE_DIR": str(tmp_path / "store"),
        "COG_MODEL_REGISTRY": oci_registry.host,
    }
    for name in ("COG_MODEL", "COG_MODEL_REPO", "XDG_CACHE_HOME"):
        env.pop(name, None)
    assert login(root, env, oci_registry.host, oci_registry.password).returncode == 0
    imported = cog(root, env, "weights", "import")
    assert imported.returncode == 0, imported.stderr[-3000:]

    lock = json.loads((root / "weights.lock").read_text())
    assert [w["name"] for w in lock["weights"]] == ["encoder", "head"]
    for weight in lock["weights"]:
        target = f"{oci_registry.host}/test/interop-weights@{weight['digest']}"
        manifest = oras_client.get_manifest(target, validation_schema=oras.schemas.manifest)
        data = raw_manifest(
            oras_client, oci_registry.host, "test/interop-weights", weight["digest"]
        )
        assert "sha256:" + hashlib.sha256(data).hexdigest() == weight["digest"]
        assert manifest["annotations"]["run.cog.weight.target"] == weight["target"]

        # oras-py's own pull: each layer lands as a file (named by its digest: no titles).
        outdir = tmp_path / "pulled" / weight["name"]
        files = oras_client.pull(target=target, outdir=str(outdir))
        assert len(files) == len(manifest["layers"])
        pulled: dict[str, bytes] = {}
        for layer, file in zip(manifest["layers"], files, strict=True):
            blob = Path(file)
            assert blob.stat().st_size == layer["size"]
            assert sha256_file(blob) == layer["digest"]
            assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar"
            pulled |= untar(blob)
        expected = {
            rel.split("/", 1)[1]: data
            for rel, data in sources.items()
            if rel.startswith(f"{weight['name']}/")
        }
        assert pulled == expected, weight["name"]
        assert {f["path"]: f["digest"] for f in weight["files"]} == {
            rel: "sha256:" + hashlib.sha256(data).hexdigest() for rel, data in expected.items()
        }
        config = fetched(oras_client, target, manifest["config"], tmp_path)
        json.loads(config.read_bytes())  # a JSON document a client can read

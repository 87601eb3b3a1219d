"""Pushing to a real registry (Debian's docker-registry, htpasswd auth) through a loopback proxy
that counts requests and, for the fault test, injects 500s, resets and stalls."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from store.errors import RegistryError
from store.oci import BlobReader, BlobSource, Layout
from store.push import KnownBlobs, push, upload_with_retries
from store.reference import Reference
from store.registry import Registry as Client
from store.registry import login as registry_login
from tests.builders.test_docker import run_and_predict
from tests.projects import cog, project
from tests.registry_proxy import Faults, proxy
from tests.services import Registry, free_port


@pytest.fixture
def env(offline: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The CLI's environment with a Docker config of its own (where `cog login` writes)."""
    return offline | {"DOCKER_CONFIG": str(tmp_path / "docker-config")}


def login(
    root: Path, env: dict[str, str], host: str, password: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cog_argv(), "login", host, "-u", "cog", "--password-stdin"],
        cwd=root,
        env=env,
        input=password + "\n",
        capture_output=True,
        text=True,
        check=False,
    )


def cog_argv() -> list[str]:
    import sys

    return [sys.executable, "-m", "cog.cli.main"]


def pushed_digest(stdout: str) -> str:
    return next(line.split("@")[1] for line in stdout.splitlines() if line.startswith("pushed "))


def blob_lines(stderr: str) -> dict[str, str]:
    """What a push said of each blob, from lines that must each be whole (the blobs go up on
    several threads, and their lines must not run into each other)."""
    said: dict[str, str] = {}
    for line in stderr.splitlines():
        if "sha256:" in line and not line.startswith("pushed"):
            found = re.fullmatch(r" *(present|mounted|uploaded) (sha256:\w{12}) +[\d.]+ MiB", line)
            assert found is not None, f"a garbled line: {line!r}"
            assert found[2] not in said
            said[found[2]] = found[1]
    return said


def built_layout(root: Path) -> Layout:
    return Layout.open((root / ".cog" / "image").resolve())


def test_push_uploads_only_what_changed_and_docker_runs_it(
    env: dict[str, str], oci_registry: Registry, docker_host: str, tmp_path: Path
) -> None:
    root = project("hello-world", tmp_path)
    with proxy(oci_registry.host) as px:
        assert login(root, env, px.host, oci_registry.password).returncode == 0
        first = cog(root, env, "push", f"{px.host}/hello:v1")
        assert first.returncode == 0, first.stderr[-2000:]
        layout = built_layout(root)
        assert pushed_digest(first.stdout) == layout.manifest_digest
        blobs = {d["digest"] for d in layout.descriptors()}
        assert set(px.blob_uploads()) == blobs  # every blob went up once
        assert len(px.blob_uploads()) == len(blobs)
        assert blob_lines(first.stderr) == {d[:19]: "uploaded" for d in blobs}

        px.requests.clear()
        again = cog(root, env, "push", f"{px.host}/hello:v1")
        assert again.returncode == 0, again.stderr[-2000:]
        assert px.blob_uploads() == [] and px.count("POST", "/blobs/uploads/") == 0
        assert px.count("HEAD", "/blobs/") == len(blobs)
        assert px.count("PUT", "/manifests/") == 1
        assert blob_lines(again.stderr) == {d[:19]: "present" for d in blobs}

        # Another repository of the same registry: every blob is mounted, none uploaded.
        px.requests.clear()
        other = cog(root, env, "push", f"{px.host}/copy:v1")
        assert other.returncode == 0, other.stderr[-2000:]
        assert px.blob_uploads() == [] and px.count("POST", "mount=") == len(blobs)
        assert f"0 blobs uploaded (0.0 MiB), {len(blobs)} mounted" in other.stderr

        # A one-line edit uploads the code layer and the config, then the manifest.
        predict = root / "predict.py"
        predict.write_text(predict.read_text().replace('"hello"', '"bonjour"'))
        px.requests.clear()
        edited = cog(root, env, "push", f"{px.host}/hello:v2")
        assert edited.returncode == 0, edited.stderr[-2000:]
        new = built_layout(root)
        code_layer = new.manifest["layers"][-1]["digest"]
        assert sorted(px.blob_uploads()) == sorted([code_layer, new.manifest["config"]["digest"]])
        assert px.count("PUT", "/manifests/") == 1

        # `cog predict REF` pulls it into the store, verifying each blob, and runs it natively.
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        pulled = cog(elsewhere, env, "predict", f"{px.host}/hello:v2", "-i", "text=pulled")
        assert pulled.returncode == 0, pulled.stderr[-2000:]
        assert pulled.stdout.strip() == "bonjour pulled"
        assert f"pulled {px.host}/hello@{new.manifest_digest}" in pulled.stderr
        missing = cog(elsewhere, env, "predict", f"{px.host}/hello:nope", "-i", "text=x")
        assert missing.returncode == 1 and "there is no image" in missing.stderr
        # Blobs are fixed-output paths: v1 fetches only the two blobs v2 did not have...
        px.requests.clear()
        v1 = cog(elsewhere, env, "predict", f"{px.host}/hello:v1", "-i", "text=again")
        assert v1.returncode == 0 and v1.stdout.strip() == "hello again", v1.stderr[-2000:]
        assert px.count("GET", "/blobs/sha256:") == 2
        # ...and an image named by digest needs no network at all once it is in the store.
        px.requests.clear()
        pinned = f"{px.host}/hello@{new.manifest_digest}"
        by_digest = cog(elsewhere, env, "predict", pinned, "-i", "text=pinned")
        assert by_digest.returncode == 0 and by_digest.stdout.strip() == "bonjour pinned"
        assert px.requests == []

    # docker pulls it from the registry itself, and it serves the edited predictor.
    docker = ["docker", "-H", docker_host]
    docker_env = {"DOCKER_CONFIG": str(tmp_path / "docker-client"), "PATH": env["PATH"]}
    subprocess.run(
        [*docker, "login", oci_registry.host, "-u", "cog", "--password-stdin"],
        input=oci_registry.password,
        env=docker_env,
        capture_output=True,
        text=True,
        check=True,
    )
    image = f"{oci_registry.host}/hello:v2"
    pulled = subprocess.run(
        [*docker, "pull", image], env=docker_env, capture_output=True, text=True, check=False
    )
    assert pulled.returncode == 0, pulled.stderr
    assert new.manifest_digest in pulled.stdout
    body = run_and_predict(docker, image, {"text": "registry"})
    assert body["output"] == "bonjour registry"


def test_push_survives_faults(env: dict[str, str], oci_registry: Registry, tmp_path: Path) -> None:
    root = project("hello-world", tmp_path)
    shutil.rmtree(Path(env["COG_STORE_DIR"]) / ".cog" / "registries", ignore_errors=True)
    faults = Faults(rate=0.2, stall=8.0, seed=11)
    env = env | {
        "COG_REGISTRY_TIMEOUT": "5",
        "COG_REGISTRY_ATTEMPTS": "8",
        "COG_PUSH_CHUNK_SIZE": str(4 << 20),  # large layers go up in PATCH chunks
    }
    with proxy(oci_registry.host, faults) as px:
        assert login(root, env, px.host, oci_registry.password).returncode == 0
        result = cog(root, env, "push", f"{px.host}/faulty:v1")
        assert result.returncode == 0, result.stderr[-3000:]
        assert px.count("PATCH", "/blobs/uploads/") > 0
    kinds = {kind for kind, _, _ in faults.injected}
    assert kinds == {"500", "reset", "stall"}, faults.injected
    layout = built_layout(root)
    assert pushed_digest(result.stdout) == layout.manifest_digest
    # The registry holds a valid image: skopeo copies it out, checking every digest.
    copy = tmp_path / "copy"
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--src-tls-verify=false",
            f"--src-creds=cog:{oci_registry.password}",
            f"docker://{oci_registry.host}/faulty:v1",
            f"oci:{copy}:v1",
        ],
        capture_output=True,
        check=True,
    )
    index = json.loads((copy / "index.json").read_text())
    assert index["manifests"][0]["digest"] == layout.manifest_digest


def test_bad_input_is_one_sentence(
    env: dict[str, str], oci_registry: Registry, tmp_path: Path
) -> None:
    root = project("hello-world", tmp_path)
    cases = [
        (["push", "Not A Valid/ref!"], "is not a valid image reference"),
        (["push", f"127.0.0.1:{free_port()}/x:v1"], "cannot reach the registry at 127.0.0.1"),
        (["push", f"{oci_registry.host}/x:v1"], "asks for credentials and none are saved"),
        (["push"], "there is no image name to push to"),
    ]
    for args, message in cases:
        result = cog(root, env, *args)
        assert result.returncode == 1, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    wrong = login(root, env, oci_registry.host, "not-the-password")
    assert wrong.returncode == 1 and "refused our credentials" in wrong.stderr, wrong.stderr
    assert not (tmp_path / "docker-config" / "config.json").exists()  # nothing saved
    right = login(root, env, oci_registry.host, oci_registry.password)
    assert right.returncode == 0, right.stderr
    saved = json.loads((tmp_path / "docker-config" / "config.json").read_text())
    assert oci_registry.host in saved["auths"]


class _Blob:
    """One blob in memory, as a push reads blobs (store.oci.BlobSource)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.digest = f"sha256:{hashlib.sha256(data).hexdigest()}"

    def blob_size(self, digest: str) -> int:
        return len(self.data)

    def open_blob(self, digest: str, start: int = 0, end: int | None = None) -> BlobReader:
        return BlobReader([self.data], start, end)

    def verify_blob(self, digest: str) -> None:
        pass


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_redirected_blob_downloads_keep_credentials_home(
    oci_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Registries send blob downloads to storage on another origin: the blob is fetched from
    there, checked, and our Authorization header goes to the registry only; a reset there is
    retried, and a storage that stays down is one RegistryError (never a raw transport
    error). Uploads stream in chunks with a Content-Length, never chunked encoding."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    blob = _Blob(os.urandom(3 << 20) + b"end")
    with proxy(oci_registry.host, redirect_blobs=True) as px:
        registry = Client(px.host, insecure=True)
        registry.credentials = _basic(oci_registry.user, oci_registry.password)
        upload_with_retries(registry, "redirected", blob.digest, blob, 1 << 20)
        assert px.count("PATCH", "/blobs/uploads/") == 4 and px.chunked == []
        assert registry.blob_exists("redirected", blob.digest)

        px.requests.clear()
        px.storage_resets = 1
        target = tmp_path / "blob"
        registry.fetch_blob("redirected", blob.digest, len(blob.data), target)
        assert target.read_bytes() == blob.data
        assert px.count("GET", f"/blobs/{blob.digest}") == 2  # the reset one, then again
        assert len(px.storage) == 2
        for _, headers in px.storage:
            assert "authorization" not in {k.lower() for k in headers}, headers
        assert px.schemes[-1] == "Basic"  # while the registry itself got the credentials

        monkeypatch.setenv("COG_REGISTRY_ATTEMPTS", "2")
        px.storage_resets = 10
        registry = Client(px.host, insecure=True)
        registry.credentials = _basic(oci_registry.user, oci_registry.password)
        with pytest.raises(RegistryError, match=r"connection reset.* after 2 tries"):
            registry.fetch_blob("redirected", blob.digest, len(blob.data), tmp_path / "again")


def test_bearer_tokens_and_credential_helpers(
    oci_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registry with a token service: credentials (from config.json, or from a credential
    helper) are traded for a bearer token scoped by the registry's challenge."""
    config = tmp_path / "docker-config"
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    blob = _Blob(b"bearer " * 1000)
    with proxy(oci_registry.host, bearer=(oci_registry.user, oci_registry.password)) as px:
        with pytest.raises(RegistryError, match="asks for credentials and none are saved"):
            Client(px.host, insecure=True).ping()
        with pytest.raises(RegistryError, match="refused our credentials"):
            registry_login(px.host, oci_registry.user, "not-the-password")
        assert not (config / "config.json").exists()
        registry_login(px.host, oci_registry.user, oci_registry.password)
        saved = json.loads((config / "config.json").read_text())
        assert saved["auths"][px.host]["auth"] == _basic(oci_registry.user, oci_registry.password)

        px.requests.clear()
        registry = Client(px.host, insecure=True)
        upload_with_retries(registry, "bearer/test", blob.digest, blob, 1 << 20)
        registry.fetch_blob("bearer/test", blob.digest, len(blob.data), tmp_path / "blob")
        assert (tmp_path / "blob").read_bytes() == blob.data
        asked = [p for m, p in px.requests if m == "GET" and p.startswith("/token?")]
        assert asked and "scope=repository%3Abearer%2Ftest%3Apull%2Cpush" in asked[0], asked
        assert "service=cog-tests" in asked[0]
        assert px.schemes[-1] == "Bearer"

        # The same credentials from a credential store (`docker-credential-NAME get`).
        helper = tmp_path / "bin" / "docker-credential-fake"
        helper.parent.mkdir()
        answer = {"Username": oci_registry.user, "Secret": oci_registry.password}
        helper.write_text(
            f'#!/bin/sh\nread host\n[ "$host" = "{px.host}" ] || exit 1\n'
            f"echo '{json.dumps(answer)}'\n"
        )
        helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setenv("PATH", f"{helper.parent}{os.pathsep}{os.environ['PATH']}")
        (config / "config.json").write_text(json.dumps({"credsStore": "fake"}))
        from_helper = Client(px.host, insecure=True)
        assert from_helper.blob_exists("bearer/test", blob.digest)
        (config / "config.json").write_text(json.dumps({"credsStore": "missing"}))
        with pytest.raises(RegistryError, match="asks for credentials and none are saved"):
            Client(px.host, insecure=True).ping()


class _Counting(Client):
    """The real client, counting how many checks and uploads are in flight at once."""

    def __init__(self, host: str) -> None:
        super().__init__(host, insecure=True)
        self.lock = threading.Lock()
        self.now = {"check": 0, "upload": 0}
        self.most = {"check": 0, "upload": 0}

    def _in_flight(self, kind: str, step: int) -> None:
        with self.lock:
            self.now[kind] += step
            self.most[kind] = max(self.most[kind], self.now[kind])

    def blob_exists(self, repository: str, digest: str) -> bool:
        self._in_flight("check", 1)
        try:
            time.sleep(0.02)  # a registry farther away than loopback
            return super().blob_exists(repository, digest)
        finally:
            self._in_flight("check", -1)

    def upload(self, repository: str, digest: str, layout: BlobSource, chunk: int) -> None:
        self._in_flight("upload", 1)
        try:
            time.sleep(0.02)
            super().upload(repository, digest, layout, chunk)
        finally:
            self._in_flight("upload", -1)


def test_blob_checks_run_wide_and_uploads_keep_to_their_limit(
    env: dict[str, str], oci_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An edit's push is mostly HEADs for blobs the registry has: they are small requests and
    go many at once; uploads stay at `--uploads` (jobs), however many blobs are missing."""
    root = project("hello-world", tmp_path)
    built = cog(root, env, "build")
    assert built.returncode == 0, built.stderr[-2000:]
    layout = built_layout(root)
    blobs = len(list(layout.descriptors()))
    assert blobs >= 8
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    ref = Reference.parse(f"{oci_registry.host}/wide:v1")
    for uploaded in (blobs, 0):  # the first push uploads every blob, the second none
        registry = _Counting(oci_registry.host)
        registry.credentials = _basic(oci_registry.user, oci_registry.password)
        known = KnownBlobs(tmp_path / "known", oci_registry.host)
        result = push(layout, ref, known, jobs=1, registry=registry)
        assert len(result.uploaded) == uploaded
        assert len(result.present) == blobs - uploaded
        assert registry.most["upload"] <= 1
        assert registry.most["check"] > 1

"""The registry as the CI binary cache: two empty stores stand for two CI machines, a real
registry on loopback (behind a proxy that counts requests) holds the cache and the images."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from store.cache import CacheError, FileCache, OciCache, Substituter, entry_for, open_cache, publish
from store.hashing import file_sha256
from store.local import Store
from store.oci import Layout
from store.paths import StorePath
from store.registry import login as registry_login
from store.signing import SigningKey, TrustedKeys, generate_key
from store.verify import verify_store
from tests.conftest import make_tree
from tests.projects import cog, project
from tests.registry_proxy import Proxy, proxy
from tests.services import Registry
from tests.store.test_registry import login, pushed_digest


@pytest.fixture
def keys(offline: dict[str, str], tmp_path: Path) -> Path:
    """A key pair made by `cog store generate-key`."""
    made = cog(tmp_path, offline, "store", "generate-key", "ci-1", "--dir", str(tmp_path))
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "ci-1.sec").stat().st_mode & 0o077 == 0
    return tmp_path


def machine(offline: dict[str, str], tmp_path: Path, name: str, **extra: str) -> dict[str, str]:
    """The environment of one CI machine: an empty store and Docker config of its own."""
    return offline | {
        "COG_STORE_DIR": str(tmp_path / name / "store"),
        "DOCKER_CONFIG": str(tmp_path / name / "docker-config"),
        **extra,
    }


def layer_gets(requests: list[tuple[str, str]], layers: set[str]) -> list[str]:
    return [p for m, p in requests if m == "GET" and any(d in p for d in layers)]


def test_ci_machines_share_builds_through_the_registry(
    offline: dict[str, str], oci_registry: Registry, keys: Path, tmp_path: Path
) -> None:
    a_root = project("hello-world", tmp_path / "a")
    with proxy(oci_registry.host) as px:
        cache = f"oci://{px.host}/ci-cache"
        a = machine(offline, tmp_path, "machine-a", COG_SIGNING_KEY=str(keys / "ci-1.sec"))
        b = machine(offline, tmp_path, "machine-b", COG_TRUSTED_KEYS=str(keys / "ci-1.pub"))
        for env in (a, b):
            assert login(a_root, env, px.host, oci_registry.password).returncode == 0

        first = cog(a_root, a, "push", "--cache", cache, f"{px.host}/model:v1")
        assert first.returncode == 0, first.stderr[-3000:]
        digest = pushed_digest(first.stdout)
        layout = Layout.open((a_root / ".cog" / "image").resolve())
        layers = {d["digest"] for d in layout.manifest["layers"]}
        assert "paths published" in first.stderr

        # Machine B: the same checkout (cog.lock included), an empty store.
        b_root = tmp_path / "b" / "hello-world"
        shutil.copytree(a_root, b_root, ignore=shutil.ignore_patterns(".cog"))
        px.requests.clear()
        second = cog(b_root, b, "push", "--cache", cache, f"{px.host}/model:v1")
        assert second.returncode == 0, second.stderr[-3000:]
        assert pushed_digest(second.stdout) == digest
        assert "building" not in second.stderr, second.stderr[:1500]
        assert layer_gets(px.requests, layers) == []  # not one layer byte downloaded
        assert px.blob_uploads() == []
        assert px.count("PUT", "/manifests/") == 1  # the image's manifest, nothing else
        assert not list((tmp_path / "machine-b" / "store").glob("*-oci-layer"))

        # B edits predict.py: only the code's layers are built and uploaded.
        predict = b_root / "predict.py"
        predict.write_text(predict.read_text().replace('"hello"', '"bonjour"'))
        px.requests.clear()
        edited = cog(b_root, b, "push", "--cache", cache, f"{px.host}/model:v2")
        assert edited.returncode == 0, edited.stderr[-3000:]
        new = Layout.open((b_root / ".cog" / "image").resolve())
        code_layer = new.manifest["layers"][-1]["digest"]
        # The code layer goes up once, into the cache, and is mounted into the image's repo.
        assert uploads_to(px, "model") == {new.manifest["config"]["digest"]}
        assert code_layer in uploads_to(px, "ci-cache")
        assert px.count("POST", f"mount={code_layer.replace(':', '%3A')}") == 1
        built = {line.split()[1] for line in edited.stderr.splitlines() if "building" in line}
        assert built == {"oci-layer", "image-root", "image"}, edited.stderr[-3000:]
        # The cache gained the new paths: the code, its layer and the image.
        assert len(uploads_to(px, "ci-cache")) == 3

        # Whatever was downloaded, the image B built serves the edit.
        run = cog(b_root, b, "predict", "-i", "text=cache")
        assert run.returncode == 0 and run.stdout.strip() == "bonjour cache", run.stderr[-2000:]


def uploads_to(px: Proxy, repository: str) -> set[str]:
    """The digests of the blob uploads into one repository."""
    return {
        path.split("digest=")[1].split("&")[0].replace("%3A", ":")
        for method, path in px.requests
        if method == "PUT" and path.startswith(f"/v2/{repository}/blobs/uploads/")
    }


def test_untrusted_tampered_lying_and_unreachable_caches_are_refused(
    offline: dict[str, str], keys: Path, tmp_path: Path
) -> None:
    root = project("hello-world", tmp_path / "a")
    cache_dir = tmp_path / "file-cache"
    a = machine(offline, tmp_path, "a", COG_SIGNING_KEY=str(keys / "ci-1.sec"))
    built = cog(root, a, "build", "--no-docker-load", "--cache", f"file://{cache_dir}")
    assert built.returncode == 0, built.stderr[-3000:]
    assert "nothing more was published" not in built.stderr, built.stderr[-3000:]
    image = (root / ".cog" / "image").resolve().name
    entries = sorted(cache_dir.glob("*.json"))
    assert len(entries) > 10

    other = cog(tmp_path, offline, "store", "generate-key", "other", "--dir", str(tmp_path))
    assert other.returncode == 0
    copy = ["store", "copy", "--from", f"file://{cache_dir}", f"/cog/store/{image}"]

    # A key that is not trusted: refused with one sentence, nothing registered.
    c = machine(offline, tmp_path, "c", COG_TRUSTED_KEYS=str(tmp_path / "other.pub"))
    refused = cog(tmp_path, c, *copy)
    assert refused.returncode == 1
    assert "no trusted key signed it" in refused.stderr
    assert "Traceback" not in refused.stderr

    # The trusted key: the whole closure arrives, checked.
    d = machine(offline, tmp_path, "d", COG_TRUSTED_KEYS=str(keys / "ci-1.pub"))
    fetched = cog(tmp_path, d, *copy)
    assert fetched.returncode == 0, fetched.stderr[-2000:]
    verify = cog(tmp_path, d, "store", "verify")
    assert verify.returncode == 0 and ", 0 corrupt" in verify.stdout

    # A tampered blob: its digest no longer matches, so the path is refused.
    entry = json.loads((cache_dir / f"{image.split('-')[0]}.json").read_text())
    blob = cache_dir / "blobs" / "sha256" / entry["blob"]["digest"].split(":")[1]
    original = blob.read_bytes()
    blob.chmod(0o644)
    blob.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    e = machine(offline, tmp_path, "e", COG_TRUSTED_KEYS=str(keys / "ci-1.pub"))
    tampered = cog(tmp_path, e, *copy)
    assert tampered.returncode == 1 and "corrupt blob" in tampered.stderr
    blob.write_bytes(original)

    # An entry whose path info lies (another path's hashes, re-signed by an untrusted key or
    # left with the old signature): the signature no longer verifies.
    victim = cache_dir / f"{image.split('-')[0]}.json"
    lying = json.loads(victim.read_text())
    lying["info"]["nar_hash"] = "0" * 64
    victim.write_text(json.dumps(lying))
    f = machine(offline, tmp_path, "f", COG_TRUSTED_KEYS=str(keys / "ci-1.pub"))
    lied = cog(tmp_path, f, *copy)
    assert lied.returncode == 1 and "no trusted key signed it" in lied.stderr

    # An unreachable cache: one line, and the build is done here, correctly.
    g = machine(offline, tmp_path, "g", COG_TRUSTED_KEYS=str(keys / "ci-1.pub"))
    unreachable = cog(root, g, "build", "--no-docker-load", "--cache-from", "oci://127.0.0.1:9/x")
    assert unreachable.returncode == 0, unreachable.stderr[-2000:]
    assert unreachable.stderr.count("is left out") == 1
    assert (root / ".cog" / "image").resolve().name == image


def test_bad_cache_flags_fail_before_building(offline: dict[str, str], tmp_path: Path) -> None:
    root = project("hello-world", tmp_path)
    for flags, message in [
        (["--cache", "s3://bucket"], "is not a cache URL"),
        (["--cache", "oci://127.0.0.1:5000/x:tag"], "names a tag or digest"),
        (["--cache", "file:///tmp/c", "--signing-key", str(tmp_path / "nope.sec")], "cannot read"),
    ]:
        result = cog(root, offline, "build", "--no-docker-load", *flags)
        assert result.returncode != 0 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and "building" not in result.stderr


def _cli() -> list[str]:
    import sys

    return [sys.executable, "-m", "cog.cli.main"]


def _two_paths(store: Store, tmp_path: Path) -> tuple[StorePath, StorePath]:
    """A content-addressed path, and an input-addressed one that refers to it."""
    dep = store.add(make_tree(tmp_path / "dep", {"lib/data.txt": "shared bytes\n"}), "dep")
    out = StorePath.make("output", "a-test-derivation", "thing")
    tree = make_tree(tmp_path / "out", {"bin/run": f"#!/bin/sh\nexec {dep}/lib/data.txt\n"})
    with store.writing(), store.output_lock(out):
        store.install(tree, out, scan=[dep])
    return dep, out


def test_oci_cache_checks_signatures_bytes_and_manifests(
    oci_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    registry_login(oci_registry.host, oci_registry.user, oci_registry.password)
    a = Store(tmp_path / "a")
    dep, out = _two_paths(a, tmp_path)
    secret, public = generate_key("ci-1", tmp_path)
    _, stranger = generate_key("stranger", tmp_path)
    key = SigningKey.load(secret)
    cache = open_cache(f"oci://{oci_registry.host}/unit-cache")
    assert isinstance(cache, OciCache)
    published = publish(a, cache, [out], key)
    assert sorted(published.uploaded) == sorted([dep, out])
    assert publish(a, cache, [out], key).present == [dep, out]  # a second time: nothing sent

    # Trusted: the closure arrives, the signature is kept, and the bytes are the same.
    said: list[str] = []
    b = Store(tmp_path / "b")
    assert Substituter([cache], TrustedKeys.load([public]), said.append).fetch(b, out)
    assert b.info(out).nar_hash == a.info(out).nar_hash and b.info(out).signatures
    assert b.info(out).references == (dep,) and b.is_valid(dep)

    # A stranger's key: the input-addressed path is refused, the content-addressed one is not.
    c = Store(tmp_path / "c")
    refusing = Substituter([cache], TrustedKeys.load([stranger]), said.append)
    assert not refusing.fetch(c, out) and not c.is_valid(out)
    assert refusing.fetch(c, dep) and c.is_valid(dep)
    assert any("no trusted key signed it" in line for line in said)

    # A trusted signer that lies about the bytes: the hashes do not match, nothing registered.
    entry = cache.lookup(out)
    assert entry is not None
    lying = replace(entry, info=replace(entry.info, nar_hash="0" * 64, signatures=()))
    lying = replace(lying, info=replace(lying.info, signatures=(key.sign(lying.fingerprint()),)))
    cache.upload(lying, tmp_path / "unused")  # the blob is there already
    d = Store(tmp_path / "d")
    said.clear()
    assert not Substituter([cache], TrustedKeys.load([public]), said.append).fetch(d, out)
    assert not d.is_valid(out) and any("is refused" in line for line in said), said

    # A manifest whose layer is not the blob its entry names: not an entry at all.
    manifest = json.loads(cache.registry.find_manifest("unit-cache", out.hash) or b"{}")
    other = cache.lookup(dep)
    assert other is not None
    manifest["layers"] = [other.blob]  # a blob the registry holds, but not this path's
    data = json.dumps(manifest).encode()
    cache.registry.put_manifest("unit-cache", out.hash, data, manifest["mediaType"])
    with pytest.raises(CacheError, match="names another blob"):
        cache.lookup(out)

    # The entry's own blob, described to standard clients as another kind of blob.
    manifest["layers"] = [dict(entry.blob, mediaType="application/octet-stream")]
    data = json.dumps(manifest).encode()
    cache.registry.put_manifest("unit-cache", out.hash, data, manifest["mediaType"])
    with pytest.raises(CacheError, match="names another blob"):
        cache.lookup(out)


@pytest.mark.parametrize("backend", ["oci", "file"])
def test_concurrent_publishers_and_fetchers(
    backend: str, oci_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four processes publish the same paths to one cache, then four fetch them into one
    store: the cache's entries and both stores stay valid."""
    env = dict(os.environ) | {
        "DOCKER_CONFIG": str(tmp_path / "docker-config"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    logged = subprocess.run(
        [*_cli(), "login", oci_registry.host, "-u", "cog", "--password-stdin"],
        input=oci_registry.password + "\n",
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert logged.returncode == 0, logged.stderr
    monkeypatch.setenv("DOCKER_CONFIG", env["DOCKER_CONFIG"])
    a = Store(tmp_path / "a")
    dep, out = _two_paths(a, tmp_path)
    secret, public = generate_key("ci-1", tmp_path)
    url = f"oci://{oci_registry.host}/busy-cache" if backend == "oci" else f"file://{tmp_path}/c"
    to = [*_cli(), "store", "copy", "--to", url, "--signing-key", str(secret), str(out)]
    pushes = [
        subprocess.Popen(to, env=env | {"COG_STORE_DIR": str(tmp_path / "a")}) for _ in range(4)
    ]
    assert [p.wait(timeout=300) for p in pushes] == [0, 0, 0, 0]
    back = [*_cli(), "store", "copy", "--from", url, "--trusted-key", str(public), str(out)]
    pulls = [
        subprocess.Popen(back, env=env | {"COG_STORE_DIR": str(tmp_path / "b")}) for _ in range(4)
    ]
    assert [p.wait(timeout=300) for p in pulls] == [0, 0, 0, 0]
    b = Store(tmp_path / "b")
    assert b.is_valid(out) and b.is_valid(dep)
    for store in (a, b):
        assert verify_store(store).clean
    cache = open_cache(url)
    assert all(cache.lookup(p) is not None for p in (dep, out))
    assert not list(tmp_path.rglob("*.partial"))


def test_fixed_output_paths_are_checked_by_their_hash(tmp_path: Path) -> None:
    """An unsigned fixed-output path is used when its bytes hash to what the derivation
    fixes (which its name says), and refused when they do not, even if its path info says
    otherwise."""
    a = Store(tmp_path / "a")
    data = tmp_path / "wheel.whl"
    data.write_bytes(b"pretend wheel bytes\n")
    sha256 = file_sha256(data)  # (install moves the file into the store)
    path = StorePath.make("fixed:out", f"sha256:{sha256}", "wheel.whl")
    with a.writing(), a.output_lock(path):
        a.install(data, path, ca=f"fixed:sha256:{sha256}")
    cache = open_cache(f"file://{tmp_path / 'cache'}")
    publish(a, cache, [path], key=None)
    no_keys = TrustedKeys.load([])

    said: list[str] = []
    by_name = Substituter([cache], no_keys, said.append)
    assert by_name.fetch(Store(tmp_path / "b0"), path)  # its name says what it must be

    # Under another name, the same claim is no longer tied to the name: refused.
    elsewhere = StorePath.make("output", "fetch-derivation", "wheel.whl")
    copy = tmp_path / "copy.whl"
    copy.write_bytes(b"pretend wheel bytes\n")
    with a.writing(), a.output_lock(elsewhere):
        a.install(copy, elsewhere, ca=f"fixed:sha256:{sha256}")
    publish(a, cache, [elsewhere], key=None)
    assert not Substituter([cache], no_keys, said.append).fetch(Store(tmp_path / "b1"), elsewhere)
    assert any("its name does not match its content address" in line for line in said), said

    expecting = Substituter([cache], no_keys, said.append)
    expecting.expected_ca[path] = f"fixed:sha256:{sha256}"
    b = Store(tmp_path / "b")
    assert expecting.fetch(b, path)
    assert b.real_path(path).read_bytes() == b"pretend wheel bytes\n"

    # Other bytes under the same claim: the blob and entry agree, the fixed hash does not.
    other = tmp_path / "other.whl"
    other.write_bytes(b"something else entirely\n")
    c_store = Store(tmp_path / "c-src")
    with c_store.writing(), c_store.output_lock(path):
        c_store.install(other, path, ca=f"fixed:sha256:{sha256}")
    forged = open_cache(f"file://{tmp_path / 'forged'}")
    publish(c_store, forged, [path], key=None)
    said.clear()
    cheated = Substituter([forged], no_keys, said.append)
    cheated.expected_ca[path] = f"fixed:sha256:{sha256}"
    c = Store(tmp_path / "c")
    assert not cheated.fetch(c, path) and not c.is_valid(path)
    assert any("its bytes do not match its content address" in line for line in said), said


def test_threads_uploading_the_same_blob_to_a_file_cache_all_succeed(
    store: Store, tmp_path: Path
) -> None:
    """A publish uploads on several threads, and two paths may share a blob: each writer
    prepares its own partial file (one name per process made the second rename fail)."""
    path = store.add(make_tree(tmp_path / "m", {"w.bin": os.urandom(4 << 20)}))
    entry, blob = entry_for(store, path, tmp_path, None)

    def upload(cache: FileCache, start: threading.Barrier) -> None:
        start.wait()
        cache.upload(entry, blob)

    for round_ in range(10):
        cache = open_cache(f"file://{tmp_path / f'cache-{round_}'}")
        assert isinstance(cache, FileCache)
        start = threading.Barrier(8)
        with ThreadPoolExecutor(max_workers=8) as pool:
            for done in [pool.submit(upload, cache, start) for _ in range(8)]:
                done.result()
        assert cache.lookup(path) == entry
        assert (
            file_sha256(cache.root / "blobs" / "sha256" / entry.blob["digest"][7:])
            == (entry.blob["digest"][7:])
        )
        assert [p.name for p in cache.root.rglob("*.partial")] == []

"""`cog weights import` / `cog weights pull` against a real registry (Debian's docker-registry,
htpasswd auth), through the CLI as a subprocess: weights.lock, the weight files in the store
(kept by the project's root, collected once nothing names them, never partial after a crash),
the OCI artifact in the registry, and the weights a prediction sees."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from cog.project.weights_sources import matches
from derivations.weights_artifact import build_artifact, envelope_format
from derivations.weights_lock import LockFile, LockSource, WeightsLock
from store.errors import StoreError
from store.local import Store
from store.verify import verify_store
from store.weight_files import add_stream, weight_path
from store.weight_layers import hash_parts
from tests.conftest import REPO
from tests.projects import cog, project
from tests.services import Registry

WEIGHTS_YAML = """model: test/{repo}
weights:
  - name: alpha
    target: /src/weights/alpha
    source:
      uri: file://./src-alpha
      include: ["*.safetensors", "*.json"]
      exclude: ["README*"]
  - name: beta
    target: /opt/weights/beta
    source:
      uri: file://./src-beta
"""


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_sources(root: Path) -> dict[str, bytes]:
    files = {
        "src-alpha/model.safetensors": b"S" * 3000,
        "src-alpha/config.json": b'{"layers": 2}\n',
        "src-alpha/sub/tokenizer.json": b'{"vocab": []}\n',
        "src-alpha/model.onnx": b"onnx",
        "src-alpha/README.md": b"readme",
        "src-beta/model.bin": b"B" * 1024,
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def weights_project(tmp_path: Path, repo: str) -> Path:
    root = tmp_path / "model"
    root.mkdir()
    (root / "cog.yaml").write_text(
        'build:\n  python_version: "3.11"\npredict: "predict.py:Predictor"\n'
        + WEIGHTS_YAML.format(repo=repo)
    )
    (root / "predict.py").write_text("")
    write_sources(root)
    return root


@pytest.fixture
def env(oci_registry: Registry, tmp_path: Path) -> dict[str, str]:
    """The CLI's environment: its own Docker config (logged in), weight cache and store."""
    environment = dict(os.environ) | {
        "PYTHONPATH": str(REPO),
        "DOCKER_CONFIG": str(tmp_path / "docker-config"),
        "COG_CACHE_DIR": str(tmp_path / "cache"),
        "COG_STORE_DIR": str(tmp_path / "store"),
        "COG_MODEL_REGISTRY": oci_registry.host,
    }
    for name in ("COG_MODEL", "COG_MODEL_REPO", "XDG_CACHE_HOME"):
        environment.pop(name, None)
    argv = [sys.executable, "-m", "cog.cli.main", "login", oci_registry.host]
    login = subprocess.run(
        [*argv, "-u", oci_registry.user, "--password-stdin"],
        env=environment,
        input=oci_registry.password + "\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert login.returncode == 0, login.stderr
    return environment


def cached(env: dict[str, str], digest: str) -> Path:
    """Where the store the CLI uses keeps the weight file of `digest`."""
    return Path(env["COG_STORE_DIR"]) / weight_path(digest).base


def forget(root: Path, env: dict[str, str]) -> None:
    """The project lets go of its weights (its root removed) and the store collects them."""
    (root / ".cog" / "roots" / "weights.lock").unlink()
    collected = cog(root, env, "store", "gc")
    assert collected.returncode == 0, collected.stderr


def registry_get(registry: Registry, path: str, accept: str = "") -> httpx.Response:
    headers = {"Accept": accept} if accept else {}
    return httpx.get(
        f"http://{registry.host}{path}",
        auth=(registry.user, registry.password),
        headers=headers,
        timeout=30,
    )


def test_import_locks_caches_and_pushes_the_filtered_weights(
    env: dict[str, str], oci_registry: Registry, tmp_path: Path
) -> None:
    root = weights_project(tmp_path, "import")
    sources = write_sources(root)
    result = cog(root, env, "weights", "import")
    assert result.returncode == 0, result.stderr
    assert "Pushing 2 weight(s)" in result.stderr
    assert "Download complete" in result.stderr

    lock = json.loads((root / "weights.lock").read_text())
    assert lock["version"] == 1
    alpha, beta = lock["weights"]
    assert (alpha["name"], alpha["target"]) == ("alpha", "/src/weights/alpha")
    # Only the included files, not the excluded or unmatched ones, each by its sha256.
    assert {f["path"]: f["digest"] for f in alpha["files"]} == {
        "config.json": sha256(sources["src-alpha/config.json"]),
        "model.safetensors": sha256(sources["src-alpha/model.safetensors"]),
        "sub/tokenizer.json": sha256(sources["src-alpha/sub/tokenizer.json"]),
    }
    assert alpha["sources"][0]["include"] == ["*.json", "*.safetensors"]
    assert alpha["sources"][0]["exclude"] == ["README*"]
    assert [f["path"] for f in beta["files"]] == ["model.bin"]

    # The store holds each file's bytes under its digest, as what its name says.
    for rel, data in sources.items():
        if rel.endswith(("onnx", "README.md")):
            assert not cached(env, sha256(data)).exists()
        else:
            assert cached(env, sha256(data)).read_bytes() == data

    # The registry holds the artifact the lock names, tagged by name and set digest.
    manifest = registry_get(
        oci_registry,
        f"/v2/test/import/manifests/{alpha['digest']}",
        "application/vnd.oci.image.manifest.v1+json",
    )
    assert manifest.status_code == 200
    assert sha256(manifest.content) == alpha["digest"]
    document = manifest.json()
    assert document["artifactType"] == "application/vnd.cog.weight.v1"
    assert document["annotations"]["run.cog.weight.target"] == "/src/weights/alpha"
    assert sorted(x["digest"] for x in document["layers"]) == [x["digest"] for x in alpha["layers"]]
    tags = registry_get(oci_registry, "/v2/test/import/tags/list").json()["tags"]
    assert f"cog-weight.alpha.{alpha['setDigest'][7:19]}" in tags

    # Importing again changes nothing: the same lock, byte for byte.
    before = (root / "weights.lock").read_bytes()
    again = cog(root, env, "weights", "import")
    assert again.returncode == 0, again.stderr
    assert "status: unchanged" in again.stderr
    assert (root / "weights.lock").read_bytes() == before

    # A changed source file makes a new entry, with a new digest.
    (root / "src-beta" / "model.bin").write_bytes(b"C" * 1024)
    changed = cog(root, env, "weights", "import", "beta")
    assert changed.returncode == 0, changed.stderr
    assert "status: upstream changed" in changed.stderr
    relocked = json.loads((root / "weights.lock").read_text())["weights"]
    assert relocked[0] == alpha
    assert relocked[1]["files"][0]["digest"] == sha256(b"C" * 1024)
    assert relocked[1]["digest"] != beta["digest"]


def test_pull_fetches_only_what_the_cache_lacks(
    env: dict[str, str], oci_registry: Registry, tmp_path: Path
) -> None:
    root = weights_project(tmp_path, "pull")
    sources = write_sources(root)
    assert cog(root, env, "weights", "import").returncode == 0
    forget(root, env)
    assert not cached(env, sha256(sources["src-beta/model.bin"])).exists()

    cold = cog(root, env, "weights", "pull")
    assert cold.returncode == 0, cold.stderr
    assert "Pulling alpha... (3 file(s))" in cold.stderr
    assert "Pulling beta... done (1.0KB, 1 file(s), 1 layer(s))" in cold.stderr
    assert "Pulled " in cold.stderr
    for rel in (
        "src-alpha/model.safetensors",
        "src-alpha/sub/tokenizer.json",
        "src-beta/model.bin",
    ):
        assert cached(env, sha256(sources[rel])).read_bytes() == sources[rel]

    warm = cog(root, env, "weights", "pull")
    assert warm.returncode == 0, warm.stderr
    assert "All 2 weight(s) already cached." in warm.stderr

    # A file lost from the store (the repair unregisters it): only it is fetched again.
    cached(env, sha256(sources["src-alpha/config.json"])).unlink()
    assert cog(root, env, "store", "verify", "--repair").returncode == 0
    one = cog(root, env, "weights", "pull", "--verbose")
    assert one.returncode == 0, one.stderr
    assert "files:    1 missing / 3 total" in one.stderr
    assert "Pulling beta... cached (1/1 files)" in one.stderr
    assert "1 file(s) / 1 layer(s) for 1 weight(s); 1 already cached" in one.stderr
    assert cached(env, sha256(sources["src-alpha/config.json"])).is_file()
    assert f"Cache:    {env['COG_STORE_DIR']}" in one.stderr

    forget(root, env)
    named = cog(root, env, "weights", "pull", "beta")
    assert named.returncode == 0, named.stderr
    assert "Pulling beta" in named.stderr and "Pulling alpha" not in named.stderr
    assert not cached(env, sha256(sources["src-alpha/config.json"])).exists()


def test_weights_errors_are_one_sentence(
    env: dict[str, str], oci_registry: Registry, tmp_path: Path
) -> None:
    root = weights_project(tmp_path, "errors")
    no_lock = cog(root, env, "weights", "pull")
    assert no_lock.returncode == 1
    assert "error: weights.lock not found" in no_lock.stderr
    assert "cog weights import" in no_lock.stderr

    assert cog(root, env, "weights", "import").returncode == 0
    unknown = cog(root, env, "weights", "pull", "alpha", "nope", "typo")
    assert unknown.returncode == 1
    assert "error: unknown weight(s): nope, typo" in unknown.stderr

    bad_import = cog(root, env, "weights", "import", "gamma")
    assert bad_import.returncode == 1
    assert "gamma" in bad_import.stderr

    down = cog(root, env | {"COG_MODEL_REGISTRY": "127.0.0.1:1"}, "weights", "import")
    assert down.returncode == 1
    assert "cannot reach the registry at 127.0.0.1:1" in down.stderr

    config = root / "cog.yaml"
    config.write_text(config.read_text().replace("model: test/errors\n", ""))
    no_model = cog(root, env, "weights", "import")
    assert no_model.returncode == 1
    assert "weight commands require a model ref" in no_model.stderr

    config.write_text(
        config.read_text().replace('"*.safetensors", "*.json"', '"*.gguf"') + "model: test/e\n"
    )
    nothing = cog(root, env, "weights", "import")
    assert nothing.returncode == 1
    assert "matched none of the 5 files" in nothing.stderr

    for result in (no_lock, unknown, bad_import, down, no_model, nothing):
        assert "Traceback" not in result.stderr


def test_globs_follow_gitignore_rules() -> None:
    assert matches("a/b/model.safetensors", ["*.safetensors"])
    assert not matches("onnx/x/model.bin", ["onnx/*.bin"])
    assert matches("onnx/model.bin", ["onnx/*.bin"])
    assert matches("a/b/c/d.bin", ["a/**/d.bin"])
    assert matches("docs/x/readme", ["docs/"])
    assert not matches("README.md", ["*.md", "!README.md"])


PREDICT = """import os

from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self, s: str) -> str:
        alpha = sorted(os.listdir("/src/weights/alpha"))
        beta = os.path.getsize("/opt/weights/beta/model.bin")
        return f"{s} alpha={','.join(alpha)} beta={beta}"
"""


def test_predict_sees_the_weights_at_their_targets(
    offline: dict[str, str], env: dict[str, str], tmp_path: Path
) -> None:
    root = project("hello-world", tmp_path)
    (root / "predict.py").write_text(PREDICT)
    with (root / "cog.yaml").open("a") as f:
        f.write(WEIGHTS_YAML.format(repo="predict"))
    write_sources(root)
    both = offline | {k: v for k, v in env.items() if k != "COG_STORE_DIR"}

    missing_lock = cog(root, both, "predict", "-i", "s=x")
    assert missing_lock.returncode == 1
    assert "weights.lock not found" in missing_lock.stderr

    assert cog(root, both, "weights", "import").returncode == 0
    result = cog(root, both, "predict", "-i", "s=hi")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hi alpha=config.json,model.safetensors,sub beta=1024"
    mounts = root / ".cog" / "mounts"
    assert not mounts.exists() or not any(mounts.iterdir())

    # Weights gone from the store are an error that says what to run, not a missing file in
    # the model.
    forget(root, both)
    cold = cog(root, both, "predict", "-i", "s=hi")
    assert cold.returncode == 1
    assert "not fully cached locally" in cold.stderr and "cog weights pull" in cold.stderr
    assert cog(root, both, "weights", "pull").returncode == 0
    again = cog(root, both, "predict", "-i", "s=again")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "again alpha=config.json,model.safetensors,sub beta=1024"


def test_push_in_model_mode_ties_image_and_weights_in_an_index(
    offline: dict[str, str], env: dict[str, str], oci_registry: Registry, tmp_path: Path
) -> None:
    """`cog push` with a model ref (cog.yaml's model:, COG_MODEL*): the image at
    cog-image.TAG and the imported weights, tied by an OCI index at TAG, as Cog pushes them."""
    root = project("hello-world", tmp_path)
    with (root / "cog.yaml").open("a") as f:
        f.write(WEIGHTS_YAML.format(repo="bundle"))
    write_sources(root)
    both = (
        offline | {k: v for k, v in env.items() if k != "COG_STORE_DIR"} | {"COG_MODEL_TAG": "v1"}
    )

    refused = cog(root, both, "push", f"{oci_registry.host}/test/other")
    assert refused.returncode == 1
    assert "positional image argument not supported with 'model' config" in refused.stderr
    missing = cog(root, both, "push")  # the weights were never imported: fails before a build
    assert missing.returncode == 1 and "weights.lock not found" in missing.stderr
    assert "image-rootfs" not in missing.stderr

    assert cog(root, both, "weights", "import").returncode == 0
    pushed = cog(root, both, "push")
    assert pushed.returncode == 0, pushed.stderr[-2000:]
    repository = f"{oci_registry.host}/test/bundle"
    assert f"Pushing to {repository}:v1..." in pushed.stderr
    index = registry_get(
        oci_registry, "/v2/test/bundle/manifests/v1", "application/vnd.oci.image.index.v1+json"
    )
    assert index.status_code == 200
    digest = sha256(index.content)
    assert pushed.stdout.splitlines()[-1] == f"pushed {repository}@{digest}"
    assert f"  model   {repository}@{digest}" in pushed.stderr
    document = index.json()
    assert document["mediaType"] == "application/vnd.oci.image.index.v1+json"
    image, *weights = document["manifests"]
    assert image["platform"] == {"architecture": "amd64", "os": "linux"}
    tagged = registry_get(
        oci_registry, "/v2/test/bundle/manifests/cog-image.v1", image["mediaType"]
    )
    assert sha256(tagged.content) == image["digest"] and len(tagged.content) == image["size"]
    lock = json.loads((root / "weights.lock").read_text())
    assert [w["digest"] for w in weights] == [w["digest"] for w in lock["weights"]]
    for weight, locked in zip(weights, lock["weights"], strict=True):
        assert weight["artifactType"] == "application/vnd.cog.weight.v1"
        assert weight["platform"] == {"architecture": "unknown", "os": "unknown"}
        assert weight["annotations"] == {
            "run.cog.weight.name": locked["name"],
            "run.cog.weight.set-digest": locked["setDigest"],
            "run.cog.weight.size.uncompressed": str(locked["size"]),
        }
        name = locked["name"].ljust(5)
        assert f" weight  {name}  {repository}@{locked['digest']}" in pushed.stderr


@pytest.fixture
def offline_env(tmp_path: Path) -> dict[str, str]:
    """The CLI's environment with a registry nothing answers at: a refusal comes before it."""
    return dict(os.environ) | {
        "PYTHONPATH": str(REPO),
        "COG_CACHE_DIR": str(tmp_path / "cache"),
        "COG_STORE_DIR": str(tmp_path / "store"),
        "COG_MODEL_REGISTRY": "127.0.0.1:1",
    }


@pytest.mark.parametrize("form", ["parent", "absolute", "link"])
def test_a_cog_yaml_source_outside_the_project_is_refused(
    offline_env: dict[str, str], tmp_path: Path, form: str
) -> None:
    """cog.yaml travels with a project: its sources may not reach a host folder (one standing
    for ~/.ssh) by `..`, an absolute path or a link; naming the folder on the command line is
    the user's own choice, and the output says what is read and where it is pushed."""
    root = weights_project(tmp_path, "outside")
    secret = tmp_path / "ssh"
    secret.mkdir()
    (secret / "id_ed25519").write_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----\n")
    (root / "linked").symlink_to(secret)
    uri = {"parent": "file://../ssh", "absolute": f"file://{secret}", "link": "file://./linked"}
    config = root / "cog.yaml"
    config.write_text(config.read_text().replace("file://./src-beta", uri[form]))
    refused = cog(root, offline_env, "weights", "import")
    assert refused.returncode == 1, refused.stderr
    assert f"the source {uri[form]} is {secret}, outside the project" in refused.stderr
    assert f"--allow-source {secret}" in refused.stderr and "Traceback" not in refused.stderr
    assert not list((tmp_path / "store").glob("*-weight"))  # nothing was read in
    allowed = cog(
        root, offline_env, "weights", "import", "--dry-run", "--allow-source", str(secret)
    )
    assert allowed.returncode == 0, allowed.stderr
    assert f"reads: {secret}\n  pushes to: 127.0.0.1:1/test/outside" in allowed.stderr


# Files whose artifact and lock entry were computed by cog before its weights moved into the
# store: the same files must give the same bytes, or every weight imported before would be
# pushed again under new digests.
GOLDEN_FILES = {
    "config.json": b'{"layers": 2}\n',
    "sub/tokenizer.json": b'{"vocab": []}\n',
    "model.safetensors": b"S" * 3000,
    "big.bin": bytes(range(256)) * (64 * 4096),  # 64 MiB: a layer of its own
    "\u00fcn\u00efcode/\u540d\u524d.txt": b"x",
    "deep/" + "d" * 120 + "/leaf.bin": b"leaf" * 100,  # a name only a PAX header holds
    "empty": b"",
}
GOLDEN_LOCK = "sha256:7e5ff60ce752f6683e3370f0a3fdaa862021249b0f488b5738ab6cf9e1916a6c"
GOLDEN_MANIFEST = "sha256:53c22d2dfef06220190a60f9181a5466b1f7e61321c10380357599020a15a7cb"
GOLDEN_CONFIG = "sha256:4c1438ea4e9ecb5a7a659e4c0e17fbece2b6a668eeca27980a79dfe8453fb2c1"
GOLDEN_LAYERS = [
    "sha256:2481f4d975af1337b41be7938b24d27f81fd1794f5544244d2c65d602e10f2f3",
    "sha256:51a37e7ebac4008882d6baec7f13015996f2473e004bbd8d7cb6167d61f39787",
]


def test_the_artifact_and_the_lock_keep_their_bytes(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    files = []
    for rel, data in sorted(GOLDEN_FILES.items()):
        path = add_stream(store, io.BytesIO(data), len(data), sha256(data))
        assert store.real_path(path).read_bytes() == data
        files.append((LockFile(rel, len(data), sha256(data), ""), store.real_path(path)))
    source = LockSource("file://./w", "sha256:" + "ab" * 32, ["*.json"], ["README*"])
    artifact = build_artifact("alpha", "/src/weights/alpha", [source], files)
    artifact.entry.imported_at = "2024-01-02T03:04:05.000006Z"
    lock = WeightsLock(envelope_format(), [artifact.entry])
    assert sha256(lock.to_bytes()) == GOLDEN_LOCK
    assert artifact.entry.digest == sha256(artifact.manifest) == GOLDEN_MANIFEST
    assert sha256(artifact.config_blob) == GOLDEN_CONFIG
    assert sorted(artifact.parts) == GOLDEN_LAYERS
    assert artifact.tag == "cog-weight.alpha.b464c43e4ba1"
    # The layers' parts are the store's own files: the blobs they describe are the layers.
    for digest, parts in artifact.parts.items():
        assert hash_parts(parts)[0] == digest
        assert {p[0] for p in parts if isinstance(p, tuple)} <= {real for _, real in files}
    # Every weight file is a valid path that is what its name says, registered with the
    # hashes the store computes itself.
    report = verify_store(store)
    assert report.clean and report.checked == len(GOLDEN_FILES)
    with pytest.raises(StoreError, match="wrong content"):
        add_stream(store, io.BytesIO(b"other"), 5, sha256(b"x" * 5))


def test_gc_keeps_the_files_weights_lock_names(
    env: dict[str, str], oci_registry: Registry, tmp_path: Path
) -> None:
    root = weights_project(tmp_path, "gc")
    sources = write_sources(root)
    assert cog(root, env, "weights", "import").returncode == 0
    old_beta = cached(env, sha256(sources["src-beta/model.bin"]))
    collected = cog(root, env, "store", "gc")
    assert collected.returncode == 0, collected.stderr
    assert old_beta.is_file()
    warm = cog(root, env, "weights", "pull")
    assert "All 2 weight(s) already cached." in warm.stderr

    # A new beta: the root follows weights.lock, so the file it no longer names goes.
    (root / "src-beta" / "model.bin").write_bytes(b"C" * 1024)
    assert cog(root, env, "weights", "import", "beta").returncode == 0
    assert cog(root, env, "store", "gc").returncode == 0
    assert not old_beta.exists()
    assert cached(env, sha256(b"C" * 1024)).is_file()
    assert cached(env, sha256(sources["src-alpha/model.safetensors"])).is_file()


@pytest.mark.parametrize(
    "point", ["weight:partial", "install:before-register", "install:after-register"]
)
def test_a_crash_mid_import_leaves_the_store_consistent(
    env: dict[str, str], oci_registry: Registry, tmp_path: Path, point: str
) -> None:
    """Killed while a file is written, before or after it is registered: no weights.lock, no
    valid partial file, nothing the next command does not clean; the import then runs whole."""
    root = weights_project(tmp_path, "crash")
    sources = write_sources(root)
    killed = cog(root, env | {"COG_FAILPOINT": point}, "weights", "import")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (root / "weights.lock").exists()
    tmp = Path(env["COG_STORE_DIR"]) / ".cog" / "tmp"
    if point == "weight:partial":
        assert [p.name for p in tmp.glob("weight-*/out")] == ["out"]  # a partial file
    verified = cog(root, env, "store", "verify")
    assert verified.returncode == 0, verified.stdout
    assert "0 corrupt" in verified.stdout
    assert not [p for p in tmp.iterdir()]  # what the killed import left, removed
    again = cog(root, env, "weights", "import")
    assert again.returncode == 0, again.stderr
    for rel in ("src-alpha/model.safetensors", "src-beta/model.bin"):
        assert cached(env, sha256(sources[rel])).read_bytes() == sources[rel]
    assert cog(root, env, "store", "verify").returncode == 0


def test_files_cached_before_the_store_are_taken_in(
    env: dict[str, str], oci_registry: Registry, tmp_path: Path
) -> None:
    """Weight files in the cache cog kept before its store held them are taken in (checked
    against their digests), not downloaded again; one that is not what it says is fetched."""
    root = weights_project(tmp_path, "legacy")
    sources = write_sources(root)
    assert cog(root, env, "weights", "import").returncode == 0
    forget(root, env)
    for rel, data in sources.items():
        hexdigest = sha256(data)[7:]
        old = Path(env["COG_CACHE_DIR"]) / "weights" / "files" / "sha256" / hexdigest[:2]
        old.mkdir(parents=True, exist_ok=True)
        (old / hexdigest).write_bytes(data if "beta" not in rel else b"X" * len(data))
    pulled = cog(root, env, "weights", "pull")
    assert pulled.returncode == 0, pulled.stderr
    assert "Pulling alpha... cached (3/3 files)" in pulled.stderr
    assert "Pulling beta... done (1.0KB, 1 file(s), 1 layer(s))" in pulled.stderr
    for rel in ("src-alpha/config.json", "src-beta/model.bin"):
        assert cached(env, sha256(sources[rel])).read_bytes() == sources[rel]

    # Taken in without the registry, and kept by the project like pulled files.
    forget(root, env)
    offline = env | {"COG_MODEL_REGISTRY": "127.0.0.1:1"}
    alpha = cog(root, offline, "weights", "pull", "alpha")
    assert alpha.returncode == 0, alpha.stderr
    assert "All 1 weight(s) already cached." in alpha.stderr
    assert cog(root, env, "store", "gc").returncode == 0
    assert cached(env, sha256(sources["src-alpha/config.json"])).is_file()

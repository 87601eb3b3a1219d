"""A build reads only the project and writes only the store; a run sees only its closure.

Each test drives the real component (bubblewrap, the image builder, the CLI, a registry) with
the attack or mistake that once got through: model code planting links in the builder's
output, links in the project, Docker's ignore rules, outputs that replaced what they should
not, a `.cog` link, corrupt blobs shipped, a gc that forced a rebuild, a run that saw the
whole store.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cog.project.plan import add_code
from derivations.config import CogConfig, ConfigError
from store.local import Store
from store.oci import Layout
from tests.conftest import TEST_CACHE, make_tree
from tests.projects import cog, project
from tests.services import Registry

PLANT = """
import os
from cog import BasePredictor

# Module level runs while cog build reads the signature, in the sandbox.
for name in ("external-blobs.json", "index.json", "oci-layout"):
    try:
        os.symlink({victim!r}, os.path.join(os.environ["out"], name))
    except OSError:
        pass


class Predictor(BasePredictor):
    def predict(self, text: str) -> str:
        return "hello " + text
"""


def test_model_code_cannot_write_host_files_through_the_image_output(
    offline: dict[str, str], tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"a host file the build must never touch\n")
    root = project("hello-world", tmp_path)
    (root / "predict.py").write_text(PLANT.format(victim=str(victim)))
    result = cog(root, offline, "build")
    assert result.returncode == 0, result.stderr[-3000:]
    assert victim.read_bytes() == b"a host file the build must never touch\n"
    layout = Layout.open((root / ".cog" / "image").resolve())
    assert not any(p.is_symlink() for p in layout.root.iterdir())


def test_unchanged_build_after_gc_needs_no_network(
    offline: dict[str, str], tmp_path: Path, debian_mirror: str
) -> None:
    """After a gc that keeps the image (rooted by the project), nothing is fetched again: the
    realiser needs no input of a valid output."""
    from tests.debian_mirror import serve

    channels = tmp_path / "channels"
    channels.mkdir()
    root = project("hello-world", tmp_path)
    original = Path(offline["COG_CHANNEL_PATH"]) / "debian-bookworm.json"
    env = offline | {"COG_CHANNEL_PATH": str(channels)}
    with serve(TEST_CACHE / "debian-mirror") as private_mirror:
        data = json.loads(original.read_text())
        for archive in data["archives"]:
            archive["mirror"] = f"{private_mirror}/{archive['name']}"
        (channels / "debian-bookworm.json").write_text(json.dumps(data))
        first = cog(root, env, "build")
        assert first.returncode == 0, first.stderr[-3000:]
    digest = Layout.open((root / ".cog" / "image").resolve()).manifest_digest
    gc = cog(root, env, "store", "gc")
    assert gc.returncode == 0, gc.stderr
    again = cog(root, env, "build")  # the mirror is gone now
    assert again.returncode == 0, again.stderr[-3000:]
    assert Layout.open((root / ".cog" / "image").resolve()).manifest_digest == digest
    built = [line for line in again.stderr.splitlines() if line.startswith("building ")]
    assert not [line for line in built if line.endswith((".deb", ".whl"))], built


def test_native_run_sees_only_its_closure(offline: dict[str, str], tmp_path: Path) -> None:
    secret = tmp_path / "other-project-secret.txt"
    secret.write_text("another project's weights")
    added = cog(tmp_path, offline, "store", "add", str(secret))
    assert added.returncode == 0, added.stderr
    other = added.stdout.strip().rpartition("/")[2]
    root = project("hello-world", tmp_path)
    (root / "predict.py").write_text(
        "import json, os\nfrom cog import BasePredictor\n\n"
        "class Predictor(BasePredictor):\n"
        "    def predict(self) -> str:\n"
        "        return json.dumps(sorted(os.listdir('/cog/store')))\n"
    )
    result = cog(root, offline, "predict")
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout)
    assert other and other not in seen
    assert ".cog" not in seen and "gcroots" not in seen  # no database, logs or roots
    assert any(name.endswith("-model-env") for name in seen)
    assert not any(name.endswith(".drv") for name in seen)


@pytest.fixture
def corrupt_code_layer(offline: dict[str, str], tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A built project whose code layer blob has one flipped byte in the store (put back
    afterwards: the module's store is shared)."""
    root = project("hello-world", tmp_path)
    built = cog(root, offline, "build")
    assert built.returncode == 0, built.stderr[-3000:]
    layout = Layout.open((root / ".cog" / "image").resolve())
    code_digest = layout.manifest["layers"][-1]["digest"]
    [(blob, size)] = layout.blob_parts(code_digest)  # type: ignore[misc]
    assert size > 100
    mode = blob.stat().st_mode
    os.chmod(blob, 0o644)
    original = blob.read_bytes()
    blob.write_bytes(original[:50] + bytes([original[50] ^ 1]) + original[51:])
    try:
        yield root, blob.parent.name
    finally:
        blob.write_bytes(original)
        os.chmod(blob, mode)


def test_writers_refuse_a_corrupt_blob(
    offline: dict[str, str],
    tmp_path: Path,
    corrupt_code_layer: tuple[Path, str],
    oci_registry: Registry,
) -> None:
    from tests.store.test_registry import login

    root, store_path = corrupt_code_layer
    env = offline | {"DOCKER_CONFIG": str(tmp_path / "docker-config")}
    outputs = {"oci": tmp_path / "layout", "docker-archive": tmp_path / "image.tar"}
    for kind, target in outputs.items():
        result = cog(root, env, "build", "--output", f"{kind}:{target}")
        assert result.returncode == 1, result.stderr[-2000:]
        assert "does not match its digest" in result.stderr and store_path in result.stderr
        assert "cog store verify --repair" in result.stderr
        assert not target.exists()  # nothing half-written left where the user looks
        assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]
    assert login(root, env, oci_registry.host, oci_registry.password).returncode == 0
    pushed = cog(root, env, "push", f"{oci_registry.host}/corrupt:v1")
    assert pushed.returncode == 1
    assert "does not match its digest" in pushed.stderr and store_path in pushed.stderr
    assert "answered 400" not in pushed.stderr


def test_oci_output_never_deletes_what_cog_did_not_write(
    offline: dict[str, str], tmp_path: Path
) -> None:
    root = project("hello-world", tmp_path)
    before = sorted(p.name for p in root.iterdir())
    refused = cog(root, offline, "build", "--output", "oci:.")
    assert refused.returncode == 1
    assert "is not empty and not an OCI layout" in refused.stderr
    assert "building " not in refused.stderr  # refused before anything was built
    assert sorted(p.name for p in root.iterdir()) == before
    a_file = tmp_path / "a-file"
    a_file.write_text("mine")
    for spec in (f"oci:{a_file}", f"docker-archive:{tmp_path}"):
        result = cog(root, offline, "build", "--output", spec)
        assert result.returncode == 1 and "error: " in result.stderr, result.stderr
        assert "internal error" not in result.stderr
    assert a_file.read_text() == "mine"
    # An existing layout is replaced whole, and its neighbours are untouched.
    target = tmp_path / "out"
    for _ in range(2):
        result = cog(root, offline, "build", "--output", f"oci:{target}")
        assert result.returncode == 0, result.stderr[-2000:]
        assert (target / "oci-layout").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == []
    subprocess.run(["skopeo", "inspect", f"oci:{target}:latest"], check=True, capture_output=True)


def test_a_cog_link_is_refused(offline: dict[str, str], tmp_path: Path) -> None:
    root = project("hello-world", tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "image").write_text("not cog's")
    os.symlink(elsewhere, root / ".cog")
    result = cog(root, offline, "build")
    assert result.returncode == 1
    assert ".cog is a link" in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in elsewhere.iterdir()) == ["image"]
    assert (elsewhere / "image").read_text() == "not cog's"


# --- the code layer: links and ignore rules (the real add_code over a real store) ------------


def code_of(store: Store, root: Path, config: CogConfig | None = None) -> Path:
    code, _ = add_code(store, root, config or CogConfig())
    return store.real_path(code)


def test_a_link_out_of_the_project_is_refused(store: Store, tmp_path: Path) -> None:
    secret = tmp_path / "id_rsa"
    secret.write_text("PRIVATE KEY")
    root = make_tree(tmp_path / "proj", {"predict.py": "x = 1\n", "key": f"->{secret}"})
    with pytest.raises(ConfigError, match="link key leads outside the project"):
        add_code(store, root, CogConfig())
    # Ignored, it is simply left out.
    (root / ".dockerignore").write_text("key\n")
    assert sorted(p.name for p in code_of(store, root).iterdir()) == [".dockerignore", "predict.py"]


def test_links_inside_the_project_stay_links(store: Store, tmp_path: Path) -> None:
    root = make_tree(
        tmp_path / "proj",
        {
            "data/real.txt": "real",
            "alias.txt": "->data/real.txt",
            "data/up": "->../alias.txt",
            "dir-link": "->data",
        },
    )
    os.symlink(root / "data" / "real.txt", root / "absolute.txt")  # absolute, but inside
    code = code_of(store, root)
    assert os.readlink(code / "alias.txt") == "data/real.txt"
    assert os.readlink(code / "data" / "up") == "../alias.txt"
    assert os.readlink(code / "dir-link") == "data"
    assert os.readlink(code / "absolute.txt") == "data/real.txt"  # made relative
    assert (code / "absolute.txt").read_text() == "real"
    assert not (code / "dir-link").is_dir() or (code / "dir-link").is_symlink()


def test_dockerignore_follows_dockers_rules(store: Store, tmp_path: Path) -> None:
    root = make_tree(
        tmp_path / "proj",
        {
            ".env": "SECRET=1",
            "sub/.env": "SECRET=2",
            "key.pem": "k",
            "sub/deep/cert.pem": "c",
            "keep.pem": "public",
            "logs/a.log": "a",
            "logs/important.log": "b",
            "predict.py": "x = 1\n",
            ".dockerignore": "**/.env\n**/*.pem\n!keep.pem\nlogs\n!logs/important.log\n# note\n",
        },
    )
    code = code_of(store, root)
    found = sorted(str(p.relative_to(code)) for p in code.rglob("*") if not p.is_dir())
    assert found == [".dockerignore", "keep.pem", "logs/important.log", "predict.py"]


def test_a_missing_declared_weight_is_named(store: Store, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "proj", {"predict.py": "x = 1\n"})
    config = CogConfig.model_validate({"weights": [{"source": "weights/model.bin"}]})
    with pytest.raises(ConfigError, match=r"declares the weight weights/model\.bin"):
        add_code(store, root, config)


# --- unpacking foreign images: whiteouts never reach through a link ---------------------------


def _layer(entries: list[tuple[str, bytes | str | None]]) -> bytes:
    """An uncompressed layer: name -> bytes (a file), '->target' (a link) or None (a dir)."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in entries:
            info = tarfile.TarInfo(name)
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content[2:]
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _image(store: Store, tmp_path: Path, layers: list[bytes]) -> str:
    import hashlib

    from builders.image import LAYER_TAR
    from store.oci import CONFIG, MANIFEST, write_index

    root = tmp_path / "image"
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return f"sha256:{digest}"

    digests = [put(layer) for layer in layers]
    config = {"architecture": "amd64", "os": "linux", "rootfs": {"diff_ids": digests}}
    config_data = json.dumps(config).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": put(config_data), "size": len(config_data)},
        "layers": [
            {"mediaType": LAYER_TAR, "digest": d, "size": len(layer)}
            for d, layer in zip(digests, layers, strict=True)
        ],
    }
    data = json.dumps(manifest).encode()
    write_index(root, MANIFEST, put(data), len(data))
    return str(store.add(root, "image"))


def test_whiteouts_never_remove_host_files(store: Store, tmp_path: Path) -> None:
    from builders.errors import BuildError
    from builders.image_rootfs import rootfs_derivation
    from builders.realise import realise
    from store.paths import StorePath

    victim_dir = tmp_path / "host"
    victim_dir.mkdir()
    (victim_dir / "precious").write_text("keep me")
    fine = _image(
        store,
        tmp_path / "fine",
        [_layer([("etc", None), ("etc/a", b"a"), ("etc/b", b"b")]), _layer([("etc/.wh.a", b"")])],
    )
    [out] = realise(store, [rootfs_derivation(StorePath.parse(fine))])
    etc = {p.name for p in (store.real_path(out["out"]) / "etc").iterdir()}
    assert "b" in etc and "a" not in etc
    for attack in ("x/.wh.precious", "x/.wh..wh..opq"):
        bad = _image(
            store,
            tmp_path / attack.replace("/", "_"),
            [_layer([("x", f"->{victim_dir}")]), _layer([(attack, b"")])],
        )
        with pytest.raises(BuildError, match="through a link that leads out of it"):
            realise(store, [rootfs_derivation(StorePath.parse(bad))])
        assert (victim_dir / "precious").read_text() == "keep me"

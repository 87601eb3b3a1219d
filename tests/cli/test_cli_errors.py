"""Failures a user can meet, each one clear sentence with a hint, never `internal error`.

Each test drives the real `cog` command as a subprocess against real files, sockets and
file systems: a cog.yaml that is not UTF-8, a corrupt Docker config.json, a port already in
use, a full disk (a tiny tmpfs), and a builder that fails.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from builders.command import command_derivation
from builders.fetch import fetch_derivation
from derivations import SrcInput, write_drv
from store.local import Store
from store.paths import StorePath
from tests.conftest import REPO, CogResult
from tests.projects import cog as cog_in
from tests.projects import project


def run_cog(cwd: Path, *args: str, env: dict[str, str], input: bytes | None = None) -> CogResult:
    proc = subprocess.run(
        [sys.executable, "-m", "cog.cli.main", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        input=input,
        timeout=120,
        check=False,
    )
    return CogResult(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def assert_clear(result: CogResult, *needles: str) -> None:
    """One `error:` sentence with the needles, a `hint:`, exit 1, no traceback."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr
    assert "\nhint: " in result.stderr, result.stderr


# --- cog.yaml -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        (
            b'build:\n  python_version: "3.11"\n\xff\xfe\n',
            ("cog.yaml is not UTF-8", "byte 0xff at offset 32 (line 3)"),
        ),
        (b"build: [python_version\n", ("cog.yaml is not valid YAML at line 2",)),
        (b"- build\n- predict\n", ("cog.yaml must be a mapping of keys",)),
    ],
    ids=["not-utf8", "invalid-yaml", "not-a-mapping"],
)
def test_unreadable_cog_yaml_is_one_clear_sentence(
    tmp_path: Path, content: bytes, needles: tuple[str, ...]
) -> None:
    (tmp_path / "cog.yaml").write_bytes(content)
    result = run_cog(tmp_path, "build", env={"COG_STORE_DIR": str(tmp_path / "store")})
    assert_clear(result, *needles)


# --- Docker's config.json -----------------------------------------------------------------------


@pytest.mark.parametrize("content", ["{not json", "[]"], ids=["not-json", "not-an-object"])
@pytest.mark.parametrize("command", ["push", "login"])
def test_corrupt_docker_config_is_named(tmp_path: Path, command: str, content: str) -> None:
    docker = tmp_path / "docker"
    docker.mkdir()
    (docker / "config.json").write_text(content)
    env = {"COG_STORE_DIR": str(tmp_path / "store"), "DOCKER_CONFIG": str(docker)}
    # Port 9 (discard) on loopback: nothing answers, and nothing must be asked.
    if command == "push":
        result = run_cog(tmp_path, "push", "127.0.0.1:9/model:v1", env=env)
    else:
        result = run_cog(
            tmp_path, "login", "127.0.0.1:9", "-u", "me", "--password-stdin", env=env, input=b"pw\n"
        )
    assert_clear(result, str(docker / "config.json"))
    assert result.stderr.startswith("error: ")


# --- cog serve on a port in use -----------------------------------------------------------------


@pytest.mark.parametrize("listening_on", ["127.0.0.1", "0.0.0.0"])
def test_serve_on_a_port_in_use_fails_before_anything_starts(
    tmp_path: Path, listening_on: str
) -> None:
    (tmp_path / "predict.py").write_text(
        "from cog import BasePredictor\n\n"
        "class Predictor(BasePredictor):\n"
        "    def predict(self, text: str) -> str:\n"
        "        return text\n"
    )
    with socket.socket() as taken:
        taken.bind((listening_on, 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cog(
            tmp_path,
            "serve",
            "-p",
            str(port),
            "--here",
            "--ref",
            "predict.py:Predictor",
            env={"COG_STORE_DIR": str(tmp_path / "store")},
        )
    assert_clear(result, f"port {port} is in use", "-p")


# --- a full disk ----------------------------------------------------------------------------------


@contextlib.contextmanager
def tiny_disk(where: Path, size: str) -> Iterator[Path]:
    """A real, small file system (tmpfs) mounted at `where`: writes past `size` get ENOSPC."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.fail(f"this test mounts a tmpfs and needs root: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def test_full_disk_while_adding_is_a_clear_error(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(4 << 20))
    with tiny_disk(tmp_path / "disk", "1m") as disk:
        store_dir = disk / "store"
        result = run_cog(tmp_path, "store", "add", str(big), env={"COG_STORE_DIR": str(store_dir)})
        assert_clear(result, "no space left on device while writing", str(store_dir))
        assert "COG_STORE_DIR" in result.stderr
        assert os.listdir(store_dir / ".cog" / "tmp") == []  # nothing partial was kept


def test_full_disk_while_the_child_places_a_tree_is_a_clear_error(tmp_path: Path) -> None:
    """A tree of many small files is placed by a child process (store/placing.py): its ENOSPC
    reaches the user as the same one sentence, and nothing partial is kept."""
    tree = tmp_path / "tree"
    for i in range(400):  # 3.2 MiB: past the first files, placed inline, and past the disk
        (tree / f"d{i % 4}").mkdir(parents=True, exist_ok=True)
        (tree / f"d{i % 4}" / f"f{i:03d}").write_bytes(os.urandom(8192))
    with tiny_disk(tmp_path / "disk", "2m") as disk:
        store_dir = disk / "store"
        result = run_cog(tmp_path, "store", "add", str(tree), env={"COG_STORE_DIR": str(store_dir)})
        assert_clear(result, "no space left on device while writing", str(store_dir))
        assert "/out/d0" not in result.stderr  # d0's 100 files include all those placed inline
        assert os.listdir(store_dir / ".cog" / "tmp") == []


def test_full_disk_in_a_builder_is_a_clear_error(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(4 << 20))
    with tiny_disk(tmp_path / "disk", "1m") as disk:
        store = Store(disk / "store")
        try:
            # The fetch builder writes its output in this process: the OSError reaches _build.
            drv = write_drv(store, fetch_derivation("big.bin", f"file://{big}", "0" * 64))
        finally:
            store.close()
        result = run_cog(
            tmp_path, "store", "realise", str(drv), env={"COG_STORE_DIR": str(store.root)}
        )
        assert_clear(result, "no space left on device while writing", str(store.root), "big.bin")
        assert "COG_STORE_DIR" in result.stderr


# --- failed builders -----------------------------------------------------------------------------


def test_failed_builder_shows_the_end_of_its_log(
    store: Store, busybox: StorePath, tmp_path: Path
) -> None:
    script = (
        "i=0; while [ $i -lt 40 ]; do echo line-$i; i=$((i+1)); done; "
        "echo 'fatal: the reason it failed'; exit 3"
    )
    drv = command_derivation(
        "failing",
        [f"{busybox}/bin/busybox", "sh", "-c", script],
        {"busybox": SrcInput(path=str(busybox))},
    )
    drv_file = write_drv(store, drv)
    result = run_cog(
        tmp_path, "store", "realise", str(drv_file), env={"COG_STORE_DIR": str(store.root)}
    )
    assert_clear(result, "exited with status 3", "fatal: the reason it failed", "see the full log:")
    error = result.stderr[result.stderr.index("error: ") :]
    assert "    line-39" in error and "line-20" not in error  # the end of the log, indented
    log = error.split("see the full log: ")[1].split()[0]
    assert Path(log).is_file() and "line-0\n" in Path(log).read_text()


def test_a_failed_prediction_is_said_in_cogs_words(offline: dict[str, str], tmp_path: Path) -> None:
    """Cog's CLI: `Prediction failed with status "failed": ERROR`, ERROR as the server gave it
    (coglet's, `Prediction failed: Prediction failed: …`); exit 1, no traceback."""
    root = project("hello-world", tmp_path)
    (root / "predict.py").write_text(
        "from cog import BasePredictor\n"
        "class Predictor(BasePredictor):\n"
        "    def predict(self, text: str) -> str:\n"
        "        raise ValueError('bad ' + text)\n"
    )
    ran = cog_in(root, offline, "predict", "-i", "text=things")
    assert ran.returncode == 1, ran.stderr[-3000:]
    assert ran.stderr.splitlines()[-1] == (
        'error: Prediction failed with status "failed": '
        "Prediction failed: Prediction failed: ValueError: bad things"
    )


def test_a_predictor_whose_import_fails_says_why(offline: dict[str, str], tmp_path: Path) -> None:
    """As with Cog's static schema generator, the build reads the signature from the source
    without importing what predict.py imports; the import fails at the model's setup, which
    must say why. A predictor the source cannot describe is imported by the build, and its
    failure says why there."""
    root = project("hello-world", tmp_path)
    predict = root / "predict.py"
    original = predict.read_text()
    predict.write_text("import no_such_module_for_cog_tests\n" + original)
    built = cog_in(root, offline, "build", "--no-docker-load")
    assert built.returncode == 0, built.stderr[-3000:]
    ran = cog_in(root, offline, "run", "-i", "text=x")
    assert ran.returncode == 1 and "Traceback" not in ran.stderr.splitlines()[-1]
    assert "No module named 'no_such_module_for_cog_tests'" in ran.stderr, ran.stderr[-3000:]

    # A default computed by the module: the build imports it, and says why it failed.
    predict.write_text(
        "import no_such_module_for_cog_tests\n"
        "from cog import BasePredictor, Input\n"
        "DEFAULT = no_such_module_for_cog_tests.default()\n"
        "class Predictor(BasePredictor):\n"
        "    def predict(self, text: str = Input(default=DEFAULT)) -> str:\n"
        "        return text\n"
    )
    result = cog_in(root, offline, "build", "--no-docker-load")
    assert result.returncode == 1, result.stderr[-3000:]
    error = result.stderr[result.stderr.index("\nerror: ") + 1 :]
    first, rest = error.split("\n", 1)
    assert "exited with status" in first and "internal error" not in first, error
    assert "No module named 'no_such_module_for_cog_tests'" in rest, result.stderr[-3000:]
    assert "Traceback" not in first
    log = rest.split("see the full log: ")[1].split()[0]
    assert "no_such_module_for_cog_tests" in Path(log).read_text()


def test_runtime_on_a_port_in_use_fails_before_the_models_setup(tmp_path: Path) -> None:
    """The server itself (as an image's command runs it) checks before it loads the model."""
    (tmp_path / "predict.py").write_text("raise SystemExit('setup must not run')\n")
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "cog.server.http", "--host", "127.0.0.1"],
            cwd=tmp_path,
            env={
                **os.environ,
                "PYTHONPATH": str(REPO),
                "PORT": str(port),
                "COG_PREDICT_TYPE_STUB": "predict.py:Predictor",
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert proc.returncode == 1, proc.stderr
    assert f"port {port}: the port is in use" in proc.stderr and "Traceback" not in proc.stderr
    assert "\nhint: " in proc.stderr

"""Hostile inputs to what cog parses and fetches: cog.yaml, cog.lock, and the servers a lock
names. Each is one clear sentence through the real `cog` command, and nothing is read or
written past what the lock pins.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from builders.fetch import fetch_derivation
from builders.rootfs import deb_derivation
from builders.wheel import wheel_file_derivation
from cuda_channels.channel import load
from derivations import write_drv
from derivations.apt import DebPin
from derivations.lock import LockError, read
from derivations.pylock import Wheel
from store.local import Store
from tests.conftest import REPO, CogResult

PREDICTOR = """from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self) -> str:
        return "x"
"""


def run_cog(cwd: Path, *args: str, env: dict[str, str] | None = None) -> CogResult:
    proc = subprocess.run(
        [sys.executable, "-m", "cog.cli.main", *args],
        cwd=cwd,
        env={
            **os.environ,
            "PYTHONPATH": str(REPO),
            "COG_STORE_DIR": str(cwd / "store"),
            **(env or {}),
        },
        capture_output=True,
        timeout=120,
        check=False,
    )
    return CogResult(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def assert_one_sentence(result: CogResult, *needles: str) -> None:
    """Exit 1, one `error:` line holding the needles, no traceback or internal error."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], result.stderr


def project(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cog.yaml").write_text('build:\n  python_version: "3.11"\nrun: predict.py:Predictor\n')
    (root / "predict.py").write_text(PREDICTOR)
    return root


def fresh_lock(root: Path, **sections: Any) -> None:
    """A cog.lock that is up to date for `project`'s cog.yaml, with `sections` in it."""
    lock = {
        "version": 1,
        "inputs": {
            "arch": "amd64",
            "channel": {"name": "debian-bookworm", "revision": load("debian-bookworm").revision},
            "python_version": "3.11",
            "requirements": [],
            "system_packages": [],
        },
        "platform": {"os": "linux", "arch": "amd64", "glibc": "2.36"},
        "python": {"source": "debian", "version": "3.11"},
        "system": {"base": [], "python": [], "packages": []},
        "python_packages": [],
        "runtime_packages": [],
    }
    (root / "cog.lock").write_text(json.dumps(lock | sections))


def wheel(url: str, sha256: str = "0" * 64, size: int = 5) -> dict[str, object]:
    return {"name": "pkg", "version": "1.0", "url": url, "sha256": sha256, "size": size}


# --- cog.lock URLs -------------------------------------------------------------------------------


def test_a_lock_that_fetches_a_host_file_is_refused_at_load(tmp_path: Path) -> None:
    """A lock naming a host file (its real sha256 and size, so it would pass the hash check)
    is refused before anything is fetched: the store never holds the file's bytes."""
    secret = tmp_path / "host" / "shadow"
    secret.parent.mkdir()
    secret.write_bytes(b"root:$6$secret-hash:19000:0:99999:7:::\n")
    digest = hashlib.sha256(secret.read_bytes()).hexdigest()
    root = project(tmp_path / "proj")
    size = secret.stat().st_size
    fresh_lock(root, python_packages=[wheel(secret.as_uri(), digest, size)])
    result = run_cog(root, "build", "--no-docker-load")
    assert_one_sentence(result, "python_packages.0", secret.as_uri(), "outside the project")
    stored = [p for p in (root / "store").glob("*") if p.is_file() and p.stat().st_size == size]
    assert not any(p.read_bytes() == secret.read_bytes() for p in stored)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://mirror.example/pkg-1.0-py3-none-any.whl", "is not an https, http or file URL"),
        ("data:application/zip;base64,UEsDBA==", "is not an https, http or file URL"),
        ("file://other-host/srv/pkg.whl", "names a host"),
        ("file:../outside/pkg-1.0-py3-none-any.whl", "leaves its folder"),
        ("file:/etc/passwd", "is not relative to the project"),
        ("https:///pkg.whl", "names no host"),
    ],
)
def test_a_lock_url_of_another_form_is_one_sentence(tmp_path: Path, url: str, problem: str) -> None:
    root = project(tmp_path / "proj")
    fresh_lock(root, runtime_packages=[wheel(url)])
    assert_one_sentence(run_cog(root, "lock", "--check"), "runtime_packages.0.url", problem)


def test_local_sources_the_project_names_are_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What docs/store.md names: a find-links folder of the requirements, COG_PYPI_MIRROR's folder
    and a project's own file; a file outside them is refused, naming the field."""
    links, mirror = tmp_path / "links", tmp_path / "mirror"
    root = project(tmp_path / "proj")
    fresh_lock(root)
    document = json.loads((root / "cog.lock").read_text())
    document["inputs"]["requirements"] = ["--no-index", f"--find-links {links}"]
    document["python_packages"] = [
        wheel((links / "a-1.0-py3-none-any.whl").as_uri()),
        wheel("file:wheels/b-1.0-py3-none-any.whl"),
    ]
    document["runtime_packages"] = [wheel((mirror / "c-1.0-py3-none-any.whl").as_uri())]
    (root / "cog.lock").write_text(json.dumps(document))
    monkeypatch.setenv("COG_PYPI_MIRROR", str(mirror))
    assert read(root) is not None
    monkeypatch.setenv("COG_PYPI_MIRROR", "https://pypi.corp/simple")
    with pytest.raises(LockError, match=r"runtime_packages\.0 fetches .*mirror/c-1\.0"):
        read(root)


# --- downloads stop at the pinned size -----------------------------------------------------------


@pytest.fixture
def endless() -> Iterator[tuple[str, list[int]]]:
    """A loopback server whose every answer is an endless body; the bytes it managed to send."""
    sent = [0]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            chunk = b"x" * 65536
            try:
                while sent[0] < 1 << 30:  # 1 GiB: where an unbounded client would stop it
                    self.wfile.write(chunk)
                    sent[0] += len(chunk)
            except OSError:
                pass  # the client hung up: what a bounded fetch does

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", sent
    server.shutdown()
    server.server_close()


def test_a_download_is_cut_off_at_its_pinned_size(
    tmp_path: Path, endless: tuple[str, list[int]]
) -> None:
    base, sent = endless
    store = Store(tmp_path / "store")
    try:
        drv = write_drv(store, fetch_derivation("big.whl", f"{base}/big.whl", "0" * 64, size=1000))
    finally:
        store.close()
    result = run_cog(tmp_path, "store", "realise", str(drv))
    assert_one_sentence(result, "big.whl", "sent more than the 1000 bytes pinned")
    assert sent[0] < 64 << 20, f"the server got {sent[0]} bytes out"  # socket buffers at most
    assert not any(p.name.endswith("-big.whl") for p in (tmp_path / "store").iterdir())


def test_lock_pins_carry_their_size_to_the_fetch() -> None:
    pin = Wheel("pkg", "1.0", "https://x.example/pkg-1.0-py3-none-any.whl", "0" * 64, 1234)
    deb = DebPin("libc6", "2.36", "amd64", "0" * 64, 99, ("https://deb.example/libc6.deb",))
    assert wheel_file_derivation(pin).args["size"] == 1234
    assert deb_derivation(deb).args["size"] == 99


# --- deep nesting and malformed fields -----------------------------------------------------------


@pytest.mark.parametrize("opening", ["[", "{a: "], ids=["lists", "mappings"])
def test_deeply_nested_cog_yaml_is_one_sentence(tmp_path: Path, opening: str) -> None:
    root = project(tmp_path / "proj")
    closing = "]" if opening == "[" else "}"
    text = f'build:\n  python_version: "3.11"\n  x: {opening * 100_000}{closing * 100_000}\n'
    (root / "cog.yaml").write_text(text)
    assert_one_sentence(run_cog(root, "build"), "cog.yaml is nested too deeply")


def test_deeply_nested_cog_lock_is_one_sentence(tmp_path: Path) -> None:
    root = project(tmp_path / "proj")
    (root / "cog.lock").write_text(
        '{"version": 1, "inputs": ' + "[" * 100_000 + "]" * 100_000 + "}"
    )
    assert_one_sentence(run_cog(root, "lock", "--check"), "cog.lock is nested too deeply")
    assert_one_sentence(run_cog(root, "build"), "cog.lock is nested too deeply")


@pytest.mark.parametrize(
    ("section", "field"),
    [
        (
            {"runtime_packages": [wheel("https://x.example/a.whl", sha256="zz")]},
            "runtime_packages.0.sha256",
        ),
        (
            {"python_packages": [wheel("https://x.example/a.whl", size=-5)]},
            "python_packages.0.size",
        ),
    ],
)
def test_a_malformed_lock_field_is_one_sentence_naming_it(
    tmp_path: Path, section: dict[str, object], field: str
) -> None:
    """A fresh lock whose pin has a hash that is no hash: before, the build failed inside
    with `internal error (ValidationError …)`."""
    root = project(tmp_path / "proj")
    fresh_lock(root, **section)
    assert_one_sentence(run_cog(root, "build", "--no-docker-load"), "cog.lock", field)


# --- invisible characters in cog.yaml keys -------------------------------------------------------


def test_invisible_characters_in_an_unknown_key_are_shown_escaped(tmp_path: Path) -> None:
    root = project(tmp_path / "proj")
    (root / "cog.yaml").write_text(
        'build:\n  python_version: "3.11"\n  "gpu\\u200b": true\n  "\\u202egpu": true\n'
        '  "a\\x1b[31mb": 1\nrun: predict.py:Predictor\n'
    )
    fresh_lock(root, runtime_packages=[wheel("https://x.example/a.whl", sha256="zz")])  # stops it
    result = run_cog(root, "build", "--no-docker-load")
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert "unknown key build.gpu\\u200b is ignored" in result.stderr, result.stderr
    assert "unknown key build.\\u202egpu is ignored" in result.stderr, result.stderr
    assert "unknown key build.a\\x1b[31mb is ignored" in result.stderr, result.stderr
    assert len(warnings) == 3 and all(line.isprintable() for line in warnings), warnings


# --- crash leftovers -----------------------------------------------------------------------------

HOLD = "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
HOLD += "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(600)"


def holder(path: Path) -> subprocess.Popen[str]:
    """A live process holding the lock on `path`, as a running cog holds its temp dir's."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def test_the_next_run_removes_what_a_killed_run_left_in_the_store_tmp(tmp_path: Path) -> None:
    Store(tmp_path / "store").close()
    tmp = tmp_path / "store" / ".cog" / "tmp"
    (tmp / "build-1-dead" / "scratch").mkdir(parents=True)
    (tmp / "build-1-dead" / "scratch" / "partial.bin").write_bytes(b"x" * 4096)
    (tmp / "build-1-dead.lock").touch()  # its owner was killed: nobody holds it
    (tmp / "add-1-gone.lock").touch()
    (tmp / "build-2-live").mkdir()
    live = holder(tmp / "build-2-live.lock")
    try:
        result = run_cog(tmp_path, "channel", "list")
        assert result.returncode == 0, result.stderr
        assert sorted(os.listdir(tmp)) == ["build-2-live", "build-2-live.lock"]
    finally:
        live.kill()
        live.wait()

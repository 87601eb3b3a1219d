"""Several processes on one store, and processes killed at every point that matters."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from store.gc import collect_garbage
from store.local import Store
from store.verify import verify_store
from tests.conftest import REPO, LoopbackServer

SEED = b"seed bytes" * 1000


def worker(
    store: Store,
    counter: Path,
    server: LoopbackServer,
    sleep: float = 0.2,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.graph_worker",
            str(store.root),
            str(counter),
            server.url("seed"),
            hashlib.sha256(SEED).hexdigest(),
            str(sleep),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


def test_four_processes_build_each_derivation_exactly_once(
    store: Store, tmp_path: Path, http_server: LoopbackServer
) -> None:
    http_server.files["seed"] = SEED
    counter = tmp_path / "runs"
    procs = [worker(store, counter, http_server) for _ in range(4)]
    outputs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
        outputs.append(out.decode().strip())
    assert len(set(outputs)) == 1 and outputs[0].startswith("/cog/store/")
    assert Counter(counter.read_text().split()) == {"a": 1, "b": 1, "c": 1, "d": 1}
    assert http_server.hits["seed"] == 1
    assert verify_store(store).clean


def tree(root: Path, files: int = 400, size: int = 64_000) -> Path:
    for i in range(files):
        d = root / f"d{i % 20}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}").write_bytes(os.urandom(size))
    return root


def cog_add(store: Store, src: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "cog.cli.main", "store", "add", str(src)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "COG_STORE_DIR": str(store.root), **(env or {})},
    )


def assert_store_clean_then_readd(store: Store, src: Path, expected: str | None) -> str:
    report = verify_store(store)
    assert report.clean, report.corrupt
    again = cog_add(store, src)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err.decode()
    path = out.decode().strip()
    if expected is not None:
        assert path == expected
    assert verify_store(store).clean
    return path


@pytest.mark.parametrize(
    "point",
    ["add:copied", "install:before-rename", "install:before-register", "install:after-register"],
)
def test_add_killed_at_each_commit_point(store: Store, tmp_path: Path, point: str) -> None:
    src = tree(tmp_path / "model", files=50)
    proc = cog_add(store, src, env={"COG_FAILPOINT": point})
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    # Registration is the commit point: before it nothing is valid, after it the path is whole.
    assert len(store.db.all_paths()) == (1 if point == "install:after-register" else 0)
    path = assert_store_clean_then_readd(store, src, None)
    assert [str(p) for p in store.db.all_paths()] == [path]
    collect_garbage(store)  # leftovers of the killed process go, nothing else is left
    assert sorted(os.listdir(store.tmp)) == []
    assert sorted(os.listdir(store.root)) == [".cog", "gcroots"]


def test_add_killed_at_many_moments(store: Store, tmp_path: Path) -> None:
    src = tree(tmp_path / "model")
    reference = Store(tmp_path / "reference").add(src)
    for delay in [0.05, 0.15, 0.25, 0.35, 0.45, 0.6, 0.8, 1.0]:
        proc = cog_add(store, src)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        report = verify_store(store)
        assert report.clean, (delay, report.corrupt)
        assert all(str(p) == str(reference) for p in store.db.all_paths())
    assert_store_clean_then_readd(store, src, str(reference))


@pytest.mark.parametrize(
    "point", ["install:before-rename", "install:before-register", "install:after-register"]
)
def test_build_killed_at_each_commit_point(
    store: Store, tmp_path: Path, http_server: LoopbackServer, point: str
) -> None:
    http_server.files["seed"] = SEED
    counter = tmp_path / "runs"
    killed = worker(store, counter, http_server, sleep=0.0, env={"COG_FAILPOINT": point})
    killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGKILL
    assert verify_store(store).clean
    ok = worker(store, counter, http_server, sleep=0.0)
    out, err = ok.communicate(timeout=120)
    assert ok.returncode == 0, err.decode()
    assert verify_store(store).clean
    assert store.is_valid(store.parse(out.decode().strip()))


def test_build_killed_at_many_moments(
    store: Store, tmp_path: Path, http_server: LoopbackServer
) -> None:
    http_server.files["seed"] = SEED
    counter = tmp_path / "runs"
    for delay in [0.3, 0.5, 0.7, 0.9, 1.1, 1.3]:
        proc = worker(store, counter, http_server, sleep=0.15)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        assert verify_store(store).clean, delay
    ok = worker(store, counter, http_server, sleep=0.0)
    _out, err = ok.communicate(timeout=120)
    assert ok.returncode == 0, err.decode()
    assert verify_store(store).clean
    runs = Counter(counter.read_text().split())
    assert set(runs) == {"a", "b", "c", "d"}  # whatever was valid before a kill was never rebuilt
    collect_garbage(store)
    assert os.listdir(store.tmp) == []

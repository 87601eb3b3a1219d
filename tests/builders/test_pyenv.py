"""Wheels installed into their own store paths, and environments merged from them."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from builders.pyenv import env_derivation
from builders.realise import realise
from builders.userland import Userland, userland
from builders.wheel import Interpreter, wheel_derivation
from cuda_channels.channel import load
from derivations.apt import resolve_root
from derivations.hashing import output_path
from derivations.model import Derivation
from derivations.pylock import Wheel
from store.local import Store
from tests.debian_mirror import ARCH, PYTHON, mirrored
from tests.wheels import make_wheel

PY = PYTHON  # Debian's 3.11, from the frozen mirror


def pin(path: Path) -> Wheel:
    name, version = path.name.split("-")[:2]
    data = path.read_bytes()
    return Wheel(name, version, f"file://{path}", hashlib.sha256(data).hexdigest(), len(data))


@dataclass
class Python:
    store: Store
    land: Userland

    @property
    def interp(self) -> Interpreter:
        return Interpreter(self.land.python_root, self.land.interpreter)


def python_in(store_dir: Path, mirror: str) -> Python:
    channel = mirrored(load(), mirror)
    land = userland(channel, ARCH, PY, resolve_root(channel, ARCH, PY, []))
    store = Store(store_dir)
    realise(store, [land.python_root, land.python_layer])
    return Python(store, land)


@pytest.fixture(scope="module")
def python(debian_mirror: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Python]:
    """A store holding Debian's Python 3.11 layers: the target interpreter of these tests."""
    found = python_in(tmp_path_factory.mktemp("store"), debian_mirror)
    yield found
    found.store.close()


def wheels(tmp_path: Path) -> list[Path]:
    d = tmp_path / "wheels"
    d.mkdir(parents=True, exist_ok=True)
    return [
        make_wheel(
            d,
            "alpha",
            "1.0",
            files={"alpha/__init__.py": b"def main():\n    print('alpha ran')\n"},
            scripts={"alpha-run": "alpha:main"},
        ),
        make_wheel(d, "beta", "2.0"),
        make_wheel(d, "nsone", "1.0", files={"nsp/one.py": b"ONE = 1\n", "shared.txt": b"same\n"}),
        make_wheel(d, "nstwo", "1.0", files={"nsp/two.py": b"TWO = 2\n", "shared.txt": b"same\n"}),
    ]


def build_env(
    python: Python, tmp_path: Path, extra: list[Path] | None = None, made: list[Path] | None = None
) -> tuple[Derivation, list[Derivation]]:
    found = (made or wheels(tmp_path)) + (extra or [])
    installs = [wheel_derivation(pin(w), PY, python.interp) for w in found]
    land = python.land
    env = env_derivation("model-env", PY, land.interpreter, installs, land.python_layer.dep())
    realise(python.store, [env])
    return env, installs


def test_wheels_install_into_their_own_paths_with_unchecked_hash_bytecode(
    python: Python, tmp_path: Path
) -> None:
    _, installs = build_env(python, tmp_path)
    alpha = python.store.real_path(output_path(installs[0]))
    site = alpha / f"lib/python{PY}/site-packages"
    assert (site / "alpha/__init__.py").is_file()
    assert (site / "alpha-1.0.dist-info/INSTALLER").read_text() == "cog\n"
    script = (alpha / "bin/alpha-run").read_text()
    assert script.startswith("#!/cog/env/bin/python")  # placeholder until an env runs it
    pyc = next((site / "alpha/__pycache__").glob("__init__.cpython-311.pyc")).read_bytes()
    assert int.from_bytes(pyc[4:8], "little") == 0b01  # hash-based, never checked at import
    assert f"{output_path(installs[0])}/lib".encode() in pyc  # tracebacks name the store path


def test_environment_merges_links_rewrites_scripts_and_runs(python: Python, tmp_path: Path) -> None:
    env, installs = build_env(python, tmp_path)
    store = python.store
    path = output_path(env)
    root = store.real_path(path)
    site = root / f"lib/python{PY}/site-packages"
    alpha = output_path(installs[0])
    assert os.readlink(site / "alpha") == f"{alpha}/lib/python{PY}/site-packages/alpha"
    assert (site / "nsp").is_dir() and not (site / "nsp").is_symlink()  # merged namespace
    assert sorted(n for n in os.listdir(site / "nsp") if n.endswith(".py")) == ["one.py", "two.py"]
    assert (site / "shared.txt").is_symlink()  # identical in two distributions: shared
    assert (root / "pyvenv.cfg").read_text().startswith("home = /usr/bin\n")
    # Debian's binary, linked (as venv does) to a store path of its own that every
    # environment shares, rather than copied into each one.
    binary = store.parse(os.readlink(root / "bin/python"))
    assert binary.name == f"python{PY}-binary" and binary in store.info(path).references
    assert os.readlink(root / "bin/python3") == "python"
    assert (root / "bin/alpha-run").read_text().startswith(f"#!{path}/bin/python\n")
    assert {output_path(i) for i in installs} <= set(store.info(path).references)
    # The environment runs in the root layers: its script, its imports, no bytecode writes.
    view = store.real_path(output_path(python.land.python_root))
    argv = ["bwrap", "--unshare-all", "--ro-bind", str(view), "/", "--proc", "/proc"]
    argv += ["--dev", "/dev", "--tmpfs", "/tmp", "--ro-bind", str(store.root), "/cog/store"]
    code = "import alpha, nsp.one, nsp.two, beta, sys; print(sys.prefix, nsp.two.TWO)"
    run = subprocess.run(
        [*argv, f"{path}/bin/alpha-run"], capture_output=True, text=True, check=False
    )
    assert run.stdout == "alpha ran\n", run.stderr
    run = subprocess.run(
        [*argv, f"{path}/bin/python", "-c", code], capture_output=True, text=True, check=False
    )
    assert run.stdout == f"{path} 2\n", run.stderr


def test_installs_are_reproducible(python: Python, debian_mirror: str, tmp_path: Path) -> None:
    other = python_in(tmp_path / "other-store", debian_mirror)
    try:
        hashes = []
        made = wheels(tmp_path / "w")  # the same wheel files: zip entries carry their time
        for found in (python, other):
            _, installs = build_env(found, tmp_path, made=made)
            hashes.append([found.store.info(output_path(d)).nar_hash for d in installs])
        assert hashes[0] == hashes[1]
    finally:
        other.store.close()

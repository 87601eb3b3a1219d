"""Wheels installed into their own store paths, and environments merged from them."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest

from builders.errors import BuildError
from builders.pyenv import env_derivation
from builders.realise import Realiser
from builders.wheel import wheel_derivation
from derivations.hashing import output_path
from derivations.model import Derivation, SrcInput
from derivations.pylock import Wheel
from store.local import Store
from tests.wheels import make_wheel

PY = f"{sys.version_info[0]}.{sys.version_info[1]}"


def pin(path: Path) -> Wheel:
    name, version = path.name.split("-")[:2]
    data = path.read_bytes()
    return Wheel(name, version, f"file://{path}", hashlib.sha256(data).hexdigest(), len(data))


def interpreter(store: Store, tmp_path: Path) -> SrcInput:
    tree = tmp_path / "interp"
    (tree / "usr/bin").mkdir(parents=True)
    (tree / "usr/bin" / f"python{PY}").write_bytes(b"\x7fELF stand-in")
    return SrcInput(path=str(store.add(tree, "interpreter")))


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


async def build_env(
    store: Store, tmp_path: Path, extra: list[Path] | None = None
) -> tuple[Derivation, list[Derivation]]:
    installs = [wheel_derivation(pin(w), PY) for w in wheels(tmp_path) + (extra or [])]
    env = env_derivation(
        "model-env", PY, f"/usr/bin/python{PY}", installs, interpreter(store, tmp_path)
    )
    await Realiser(store).realise([env])
    return env, installs


async def test_wheels_install_into_their_own_paths_with_unchecked_hash_bytecode(
    store: Store, tmp_path: Path
) -> None:
    _, installs = await build_env(store, tmp_path)
    alpha = store.real_path(output_path(installs[0]))
    site = alpha / f"lib/python{PY}/site-packages"
    assert (site / "alpha/__init__.py").is_file()
    assert (site / "alpha-1.0.dist-info/INSTALLER").read_text() == "cog\n"
    script = (alpha / "bin/alpha-run").read_text()
    assert script.startswith("#!/cog/env/bin/python")  # placeholder until an env runs it
    pyc = next((site / "alpha/__pycache__").glob("__init__.*.pyc")).read_bytes()
    assert int.from_bytes(pyc[4:8], "little") == 0b01  # hash-based, never checked at import
    assert f"{output_path(installs[0])}/lib".encode() in pyc  # tracebacks name the store path


async def test_environment_merges_links_and_rewrites_scripts(store: Store, tmp_path: Path) -> None:
    env, installs = await build_env(store, tmp_path)
    path = output_path(env)
    root = store.real_path(path)
    site = root / f"lib/python{PY}/site-packages"
    alpha = output_path(installs[0])
    assert os.readlink(site / "alpha") == f"{alpha}/lib/python{PY}/site-packages/alpha"
    assert (site / "nsp").is_dir() and not (site / "nsp").is_symlink()  # merged namespace
    assert sorted(n for n in os.listdir(site / "nsp") if n.endswith(".py")) == ["one.py", "two.py"]
    assert (site / "shared.txt").is_symlink()  # identical in two distributions: shared
    assert (root / "pyvenv.cfg").read_text().startswith("home = /usr/bin\n")
    assert (root / "bin/python").read_bytes() == b"\x7fELF stand-in"  # copied, not linked
    assert os.readlink(root / "bin/python3") == "python"
    assert (root / "bin/alpha-run").read_text().startswith(f"#!{path}/bin/python\n")
    references = set(store.info(path).references)
    assert {output_path(i) for i in installs} <= references


async def test_conflicting_files_name_both_distributions(store: Store, tmp_path: Path) -> None:
    clash = make_wheel(tmp_path, "clash", "1.0", files={"shared.txt": b"different\n"})
    with pytest.raises(BuildError, match=r"both install shared\.txt, differently") as e:
        await build_env(store, tmp_path, [clash])
    assert "clash" in str(e.value) and ("nsone" in str(e.value) or "nstwo" in str(e.value))


async def test_installs_are_reproducible(tmp_path: Path) -> None:
    hashes = []
    for i in range(2):
        store = Store(tmp_path / f"store{i}")
        try:
            _, installs = await build_env(store, tmp_path / f"w{i}")
            hashes.append([store.info(output_path(d)).nar_hash for d in installs])
        finally:
            store.close()
    assert hashes[0] == hashes[1]

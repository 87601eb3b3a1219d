"""Two distributions that install one path, settled as pip settles them: the later install
wins (the environment's input order: derivation names, sorted), with a warning only when the
bytes differ. Real wheels, installed and merged into a real environment that runs."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from builders.errors import BuildError
from builders.pyenv import env_derivation
from builders.realise import realise
from builders.wheel import wheel_derivation
from derivations.hashing import drv_path, output_path
from derivations.model import Derivation
from tests.builders.test_pyenv import PY, Python, pin, python_in
from tests.wheels import make_wheel

SITE = f"lib/python{PY}/site-packages"


@pytest.fixture(scope="module")
def python(debian_mirror: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Python]:
    found = python_in(tmp_path_factory.mktemp("store"), debian_mirror)
    yield found
    found.store.close()


def environment(python: Python, wheels: list[Path]) -> Derivation:
    installs = [wheel_derivation(pin(w), PY, python.interp) for w in wheels]
    land = python.land
    return env_derivation("model-env", PY, land.interpreter, installs, land.python_layer.dep())


def build(python: Python, wheels: list[Path]) -> tuple[Path, str]:
    """The environment's tree, and its build log."""
    env = environment(python, wheels)
    realise(python.store, [env])
    log = (python.store.logs / f"{drv_path(env).base}.log").read_text()
    return python.store.real_path(output_path(env)), log


def run_in(python: Python, env: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """`argv` in the root layers, with the store at /cog/store, as the image runs it."""
    store = python.store
    view = store.real_path(output_path(python.land.python_root))
    jail = ["bwrap", "--unshare-all", "--ro-bind", str(view), "/", "--proc", "/proc"]
    jail += ["--dev", "/dev", "--tmpfs", "/tmp", "--ro-bind", str(store.root), "/cog/store"]
    logical = f"/cog/store/{env.name}"
    return subprocess.run(
        [*jail, f"{logical}/{argv[0]}", *argv[1:]], capture_output=True, text=True, check=False
    )


def tool_wheels(directory: Path, entry: str) -> list[Path]:
    """`tensorboard` and `tensorflow` in small: both install bin/tool; the later one (by name,
    `zflow` after `aboard`) points it at `entry`."""
    directory.mkdir()
    return [
        make_wheel(
            directory,
            "aboard",
            "1.0",
            files={"aboard/__init__.py": b"def main():\n    print('aboard ran')\n"},
            scripts={"tool": "aboard:main"},
        ),
        make_wheel(
            directory,
            "zflow",
            "1.0",
            files={"zflow/__init__.py": b"def main():\n    print('zflow ran')\n"},
            scripts={"tool": entry},
        ),
    ]


def test_an_identical_console_script_from_two_distributions_is_installed_once_quietly(
    python: Python, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    env, log = build(python, tool_wheels(tmp_path / "w", "aboard:main"))
    assert "warning" not in log and "warning" not in capfd.readouterr().err
    script = (env / "bin/tool").read_text()
    assert script.startswith(f"#!/cog/store/{env.name}/bin/python\n") and "aboard" in script
    ran = run_in(python, env, "bin/tool")
    assert ran.stdout == "aboard ran\n", ran.stderr


def test_a_differing_console_script_is_the_later_installs_with_a_warning(
    python: Python, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    wheels = tool_wheels(tmp_path / "w", "zflow:main")
    env, log = build(python, wheels)
    warning = (
        f"warning: python{PY}-aboard-1.0 and python{PY}-zflow-1.0 both install bin/tool, "
        f"differently: python{PY}-zflow-1.0's is kept (the later install wins, as with pip)"
    )
    assert log.count("warning") == 1 and warning in log
    assert warning in capfd.readouterr().err
    assert "zflow" in (env / "bin/tool").read_text()
    ran = run_in(python, env, "bin/tool")
    assert ran.stdout == "zflow ran\n", ran.stderr
    # The order is the inputs' names, not the order they were given in: the same environment.
    assert output_path(environment(python, wheels[::-1])) == output_path(
        environment(python, wheels)
    )


def test_a_differing_module_is_the_later_installs_and_its_bytecode_follows_it(
    python: Python, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """pip overwrites another distribution's file; the replaced module's bytecode goes with
    it, even where the winner's source does not compile (a file for Python 2, say): the
    loser's unchecked bytecode must not run in its place."""
    d = tmp_path / "w"
    d.mkdir()
    wheels = [
        make_wheel(
            d,
            "aone",
            "1.0",
            files={"common.py": b"WHO = 'aone'\n", "legacy.py": b"WHO = 'aone'\n"},
        ),
        make_wheel(
            d,
            "ztwo",
            "1.0",
            files={"common.py": b"WHO = 'ztwo'\n", "legacy.py": b"print 'ztwo'\n"},
        ),
    ]
    env, log = build(python, wheels)
    site = env / SITE
    assert os.readlink(site / "common.py").endswith(f"-python{PY}-ztwo-1.0/{SITE}/common.py")
    assert not [p for p in os.listdir(site / "__pycache__") if p.startswith("legacy.")]
    assert log.count("warning") == 2  # one per module, none for its bytecode
    assert "both install common.py, differently" in capfd.readouterr().err
    ran = run_in(python, env, "bin/python", "-c", "import common; print(common.WHO)")
    assert ran.stdout == "ztwo\n", ran.stderr
    ran = run_in(python, env, "bin/python", "-c", "import legacy")
    assert "SyntaxError" in ran.stderr and "aone" not in ran.stdout


def test_a_file_against_a_directory_names_both_distributions(
    python: Python, tmp_path: Path
) -> None:
    d = tmp_path / "w"
    d.mkdir()
    wheels = [
        make_wheel(d, "afile", "1.0", files={"thing": b"a file\n"}),
        make_wheel(d, "zdir", "1.0", files={"thing/__init__.py": b""}),
    ]
    with pytest.raises(BuildError) as e:
        build(python, wheels)
    assert str(e.value).endswith(
        f"python{PY}-zdir-1.0 and python{PY}-afile-1.0 both install thing, "
        "one as a file and one as a directory"
    )

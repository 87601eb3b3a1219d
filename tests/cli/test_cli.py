"""The `cog store` command as a user runs it: output, exit codes, one-sentence errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from builders.command import command_derivation
from cog.cli.main import persistent_flags
from derivations import SrcInput, output_path, write_drv
from store.local import Store
from store.paths import StorePath
from tests.conftest import REPO, CogResult, make_tree

Cog = Callable[..., CogResult]


def test_version(cog: Cog) -> None:
    result = cog("--version")
    version = (Path(__file__).parents[2] / "VERSION.txt").read_text().strip()
    assert result.returncode == 0 and result.stdout.strip() == f"cog-hermetic {version}"


def test_add_path_info_roots_gc(cog: Cog, store: Store, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "model", {"predict.py": "x", "w/a.bin": os.urandom(1000)})
    added = cog("store", "add", str(src), "--root", "model")
    assert added.returncode == 0, added.stderr
    path = added.stdout.strip()
    assert path.startswith("/cog/store/") and path.endswith("-model")
    info = cog("store", "path-info", path, "--json", "--closure")
    [doc] = json.loads(info.stdout)
    assert doc["path"] == path and doc["tar_size"] > 1000 and len(doc["tar_sha256"]) == 64
    physical = cog("store", "path-info", str(store.root / Path(path).name))
    assert physical.returncode == 0 and path in physical.stdout
    assert f"-> {path}" in cog("store", "roots").stdout
    other = cog("store", "add", str(src / "predict.py")).stdout.strip()
    dry = cog("store", "gc", "--dry-run")
    assert f"would delete {other}" in dry.stdout and store.is_valid(store.parse(other))
    gc = cog("store", "gc")
    assert f"deleted {other}" in gc.stdout and not store.is_valid(store.parse(other))
    assert store.is_valid(store.parse(path))
    verify = cog("store", "verify")
    assert verify.returncode == 0 and "1 paths, 0 corrupt" in verify.stdout


def test_verify_exits_non_zero_on_corruption_and_repair_fixes(
    cog: Cog, store: Store, tmp_path: Path
) -> None:
    path = cog("store", "add", str(make_tree(tmp_path / "m", {"a": "a"}))).stdout.strip()
    victim = store.real_path(store.parse(path)) / "a"
    os.chmod(victim, 0o644)
    victim.write_text("b")
    bad = cog("store", "verify")
    assert bad.returncode == 1 and f"corrupt: {path}" in bad.stdout
    fixed = cog("store", "verify", "--repair")
    assert fixed.returncode == 0 and f"removed: {path}" in fixed.stdout
    assert cog("store", "verify").returncode == 0


def test_export_then_import_through_a_pipe(cog: Cog, store: Store, tmp_path: Path) -> None:
    path = cog("store", "add", str(make_tree(tmp_path / "m", {"a": "a"}))).stdout.strip()
    other = tmp_path / "other"
    cli = f"{sys.executable} -m cog.cli.main"
    piped = subprocess.run(
        f"{cli} store export {path} | COG_STORE_DIR={other} {cli} store import",
        shell=True,
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "COG_STORE_DIR": str(store.root)},
        check=False,
    )
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.strip() == path
    assert Store(other).info(store.parse(path)).nar_hash == store.info(store.parse(path)).nar_hash
    garbage = cog("store", "import", input=b"not an export")
    assert garbage.returncode == 1 and "not a cog store export stream" in garbage.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("store", "add", "/does/not/exist"), "does not exist"),
        (("store", "path-info", "/cog/store/nonsense"), "is not a store path"),
        (("store", "path-info", "/cog/store/" + "0" * 32 + "-missing"), "is not a valid path"),
        (("store", "realise", "/cog/store/" + "0" * 32 + "-x.drv"), "cannot read the derivation"),
        (("store", "frobnicate"), "invalid choice"),
    ],
)
def test_bad_input_is_one_clear_sentence(cog: Cog, args: tuple[str, ...], needle: str) -> None:
    result = cog(*args)
    assert result.returncode != 0
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(("error:", "usage:"))


def test_unwritable_store_dir_is_a_clear_error(cog: Cog, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    result = cog("store", "roots", env={"COG_STORE_DIR": str(blocker / "store")})
    assert result.returncode == 1 and "cannot create the store" in result.stderr
    assert "COG_STORE_DIR" in result.stderr and "Traceback" not in result.stderr


def test_ctrl_c_stops_a_build_cleanly(store: Store, busybox: StorePath) -> None:
    marker = f"sleep-marker-{os.getpid()}"
    drv = command_derivation(
        "slow",
        [f"{busybox}/bin/busybox", "sh", "-c", f"$busybox/bin/busybox sleep 60; : {marker}"],
        {"busybox": SrcInput(path=str(busybox))},
    )
    drv_file = write_drv(store, drv)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cog.cli.main", "store", "realise", str(drv_file)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COG_STORE_DIR": str(store.root)},
    )
    try:
        assert proc.stderr is not None
        assert "building slow" in proc.stderr.readline() + proc.stderr.readline()
        deadline = time.monotonic() + 10
        while (
            marker
            not in subprocess.run(["ps", "-ewwo", "args"], capture_output=True, text=True).stdout
        ):
            assert time.monotonic() < deadline, "the builder never started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    assert not store.is_valid(output_path(drv))
    assert os.listdir(store.tmp) == []
    assert (
        marker not in subprocess.run(["ps", "-ewwo", "args"], capture_output=True, text=True).stdout
    )


def test_cogs_dockerfile_flags_are_accepted_and_explained(
    cog: Callable[..., CogResult], tmp_path: Path
) -> None:
    """Scripts written for Cog pass its Dockerfile-generator flags; each is accepted (never a
    usage error) and answered with one line saying what it means here."""
    (tmp_path / "mine").write_text("not a layout")
    flags = ["--use-cog-base-image", "--use-cuda-base-image=false", "--separate-weights"]
    flags += ["--dockerfile", "Dockerfile", "--no-cache", "--progress", "plain"]
    for command in (["build", "--output", f"oci:{tmp_path}"], ["run", "--json", "[1]"], ["exec"]):
        result = cog(*command, *flags)
        assert result.returncode == 1, result.stderr  # the command's own refusal, not argparse
        assert "usage:" not in result.stderr
        notes = [line for line in result.stderr.splitlines() if line.startswith("note: --")]
        assert len(notes) == 6, result.stderr
        assert "note: --separate-weights: weights are always layers of their own" in notes


def test_cogs_persistent_flags_are_accepted_anywhere(
    cog: Callable[..., CogResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--debug` and `--no-color` stand anywhere on the line, as Cog's persistent flags do,
    but not inside the command `cog exec` runs."""
    for argv in (["--debug", "build", "-t", "x"], ["build", "--debug", "-t", "x", "--no-color"]):
        result = cog(*argv)
        assert result.returncode == 1 and "there is no cog.yaml" in result.stderr, result.stderr
        assert "usage:" not in result.stderr
    monkeypatch.delenv("COG_DEBUG", raising=False)  # set below, in this process: undone after
    assert persistent_flags(["exec", "--debug", "python", "x.py", "--debug"]) == [
        "exec",
        "python",
        "x.py",
        "--debug",
    ]
    assert persistent_flags(["run", "--", "--debug"]) == ["run", "--", "--debug"]


def test_a_command_runs_with_the_collector_on_and_its_imports_out_of_its_sight() -> None:
    """The command's modules are imported with the cyclic collector off and then frozen, but
    what the command itself makes (a build's cycles) is collected as usual, even when an
    import fails."""
    probe = (
        "import gc, sys\n"
        "from cog.cli.main import parser, uncollected\n"
        "with uncollected():\n"
        "    assert not gc.isenabled()\n"
        "    parser('push')\n"
        "assert gc.isenabled() and 'builders.image' in sys.modules\n"
        "frozen = gc.get_freeze_count()\n"
        "class Cycle:\n"
        "    pass\n"
        "a, b = Cycle(), Cycle()\n"
        "a.b, b.a = b, a\n"
        "del a, b\n"
        "assert gc.collect() >= 2\n"
        "try:\n"
        "    with uncollected():\n"
        "        import no_such_module_here  # noqa\n"
        "except ImportError:\n"
        "    pass\n"
        "assert gc.isenabled()\n"
        "print(frozen)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 50_000  # what `cog push` imports

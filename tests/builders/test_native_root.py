"""A native run's root is writable, as a container's is, and thrown away after the run: the
model writes anywhere under `/` (an overlay over the read-only view of its layers), never into
the store, and the next run starts from the layers again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from builders.sandbox.overlay import overlay_works
from store.local import Store
from tests.conftest import BUSYBOX, make_tree, require_tool
from tests.projects import cog, project

PREDICTOR = """
import errno
import json
import os
from pathlib import Path

import cog
from cog import BasePredictor

PLACES = ("/opt/state/x", "/usr/local/share/y", "/etc/written-at-setup")
LOWER = "/etc/debian_version"  # a file of the root layers, changed in the run


def attempt(write) -> str:
    try:
        write()
        return "written"
    except OSError as e:
        return errno.errorcode[e.errno]


class Predictor(BasePredictor):
    def setup(self) -> None:
        self.before = [p for p in PLACES if os.path.exists(p)]
        for place in PLACES:  # as a model unpacks its weights where it likes
            Path(place).parent.mkdir(parents=True, exist_ok=True)
            Path(place).write_text(place)
        self.lower = Path(LOWER).read_text()
        with open(LOWER, "a") as f:
            f.write("changed\\n")
        closure = next(Path("/cog/store").iterdir())
        sdk = Path(os.path.realpath(cog.__file__))  # a file of the model's environment
        self.store = [
            attempt(lambda: Path("/cog/store/new-file").write_text("x")),
            attempt(lambda: (closure / "new-file").write_text("x")),
            attempt(lambda: open(sdk, "a").close()),
            str(sdk).startswith("/cog/store/"),
        ]
        os_py = Path(os.path.realpath(os.__file__))  # the interpreter's, in the root layers
        self.root = attempt(lambda: open(os_py, "a").close())

    def predict(self) -> str:
        return json.dumps({
            "before": self.before,
            "read": [Path(p).read_text() for p in PLACES],
            "lower": Path(LOWER).read_text().endswith("changed\\n"),
            "lower_was_changed": self.lower.endswith("changed\\n"),
            "store": self.store,
            "root": self.root,
            "home": sorted(os.listdir(os.environ["HOME"])),
        })
"""

EXPECTED = {
    "before": [],  # nothing of an earlier run's writes is left
    "read": ["/opt/state/x", "/usr/local/share/y", "/etc/written-at-setup"],
    "lower": True,  # a file of the layers, changed in the run
    "lower_was_changed": False,  # but not in the layers
    "store": ["EROFS", "EROFS", "EROFS", True],
    "root": "written",  # the interpreter's os.py, a hard link of the store in the view
    "home": [],  # $HOME is still a fresh, empty tmpfs
}


@pytest.fixture(scope="module")
def writer(offline: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = project("hello-world", tmp_path_factory.mktemp("native-root"))
    (root / "predict.py").write_text(PREDICTOR)
    if not overlay_works(Path(offline["COG_STORE_DIR"])):
        pytest.fail("overlay mounts do not work here: a native run's root would be read-only")
    return root


def _store_files(store_dir: Path) -> Iterator[tuple[str, int, int, int]]:
    """Every file of the store's paths, as (path, mtime, size, mode): a write through a view's
    hard link, or a new file, would change them."""
    for top in sorted(store_dir.iterdir()):
        if top.name.startswith(".") or top.name == "gcroots":
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for name in [*sorted(filenames), *dirnames]:
                st = os.lstat(os.path.join(dirpath, name))
                yield os.path.join(dirpath, name), st.st_mtime_ns, st.st_size, st.st_mode


def _prediction(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert result.returncode == 0, result.stderr[-3000:]
    found: dict[str, object] = json.loads(result.stdout)
    return found


def test_a_native_run_writes_anywhere_and_forgets_it(offline: dict[str, str], writer: Path) -> None:
    """Files written at setup under /opt, /usr/local and /etc, and a changed file of the
    layers, are there for predict; the next run sees none of them; /cog/store is read-only and
    the store's files are untouched; the run's scratch directory is gone afterwards."""
    store_dir = Path(offline["COG_STORE_DIR"])
    first = _prediction(cog(writer, offline, "run"))
    before = list(_store_files(store_dir))
    second = _prediction(cog(writer, offline, "predict"))
    assert first == second == EXPECTED
    assert list(_store_files(store_dir)) == before  # nor written into the store
    store = Store(store_dir)
    try:  # the runs' scratch directories, overlays included, went with them
        assert not any(store.tmp.iterdir())
    finally:
        store.close()
    verified = cog(writer, offline, "store", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_exec_gets_a_writable_root_and_its_exit_code(offline: dict[str, str], writer: Path) -> None:
    script = (
        "test ! -e /opt/state/x || exit 9; mkdir -p /opt/state && echo made > /opt/state/x; "
        "cat /opt/state/x; touch /cog/store/nope 2>/dev/null && exit 8; exit 5"
    )
    argv = [sys.executable, "-m", "cog.cli.main", "exec", "sh", "-c", script]
    for _ in range(2):  # the second run does not see the first one's file
        run = subprocess.run(argv, cwd=writer, env=offline, capture_output=True, text=True)
        assert run.returncode == 5, run.stdout + run.stderr[-3000:]
        assert run.stdout == "made\n"


def test_with_a_gpu_only_the_drivers_folder_is_read_only(
    offline: dict[str, str], writer: Path, tmp_path: Path
) -> None:
    """`--gpus` over a writable root (discovery pointed at a fake host's tree, as in
    test_gpu): the driver is in /usr/local/nvidia, read-only, and /usr/local stays writable."""
    from tests.builders.test_gpu import fake_host

    fake = fake_host(tmp_path / "host")
    patched = (
        "import functools, pathlib, sys, builders.sandbox.gpu as n; "
        f"n.discover = functools.partial(n.discover, root=pathlib.Path({str(fake)!r}), cache=''); "
        "from cog.cli.main import main; sys.exit(main())"
    )
    script = (
        "ls /usr/local/nvidia/lib64 | grep -x libcuda.so.1 && nvidia-smi && "
        "mkdir -p /usr/local/share/z && echo written > /usr/local/share/z/f && "
        "cat /usr/local/share/z/f && ! touch /usr/local/nvidia/nope 2>/dev/null"
    )
    argv = [sys.executable, "-c", patched, "exec", "--gpus", "all", "sh", "-c", script]
    run = subprocess.run(argv, cwd=writer, env=offline, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    assert run.stdout == "libcuda.so.1\nGPU 0: fake\nwritten\n"


def test_an_image_run_writes_anywhere_and_keeps_its_store(
    offline: dict[str, str], writer: Path, tmp_path: Path
) -> None:
    built = cog(writer, offline, "build", "-t", "root-writer", "--no-docker-load")
    assert built.returncode == 0, built.stderr[-3000:]
    store_dir = Path(offline["COG_STORE_DIR"])
    assert _prediction(cog(tmp_path, offline, "run", "root-writer")) == EXPECTED
    before = list(_store_files(store_dir))  # the image unpacked into the store, by that run
    assert _prediction(cog(tmp_path, offline, "run", "root-writer")) == EXPECTED
    assert list(_store_files(store_dir)) == before


def _busybox_root(at: Path) -> Path:
    """A root of one static busybox, with the mount points a run needs."""
    if not BUSYBOX.exists():
        pytest.fail("/bin/busybox (Debian busybox-static) is required; `make test` installs it")
    make_tree(at, {"bin/busybox": BUSYBOX.read_bytes()}, {"bin/busybox": 0o755})
    for folder in ("proc", "dev", "tmp", "opt", "root"):
        (at / folder).mkdir()
    return at


def _sandbox(root: Path, scratch: Path, script: str) -> tuple[list[str], Path | None]:
    from builders.sandbox.model import _root, writable_places

    prefix, binds, upper = _root(root, scratch)
    argv = [*prefix, require_tool("bwrap"), "--unshare-all", "--die-with-parent"]
    argv += [*binds, "--proc", "/proc", "--dev", "/dev", *writable_places(root)]
    return [*argv, "--", "/bin/busybox", "sh", "-c", script], upper


def test_without_an_overlay_the_root_is_read_only_as_before(tmp_path: Path) -> None:
    """A root whose path an overlay's options cannot name (a comma) is bound read-only, with
    the fresh writable places; one that can is writable, its writes in the upper directory."""
    script = "echo a > /tmp/a && echo b > /root/b && cat /tmp/a /root/b; echo c > /opt/c; exit 7"
    for name, writable in (("plain", True), ("with,comma", False)):
        root = _busybox_root(tmp_path / name / "root")
        argv, upper = _sandbox(root, tmp_path / name / "scratch", script)
        run = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert run.returncode == 7, run.stderr  # the command's own exit status
        assert run.stdout == "a\nb\n"
        assert ("Read-only file system" in run.stderr) is not writable, run.stderr
        assert (upper is not None) is writable
        if upper is not None:
            assert (upper / "opt" / "c").read_text() == "c\n"
        assert not any((root / "opt").iterdir()) and not any((root / "tmp").iterdir())


def test_the_overlay_keeps_the_pid_and_signals_reach_the_sandbox(tmp_path: Path) -> None:
    """unshare and sh exec what follows them: the process started is bwrap itself, and the
    SIGTERM that stops a server's process group ends everything in its sandbox."""
    root = _busybox_root(tmp_path / "root")
    marker = "4711"
    argv, upper = _sandbox(root, tmp_path / "scratch", f"echo up; exec /bin/busybox sleep {marker}")
    assert upper is not None
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert process.stdout is not None and process.stdout.readline() == b"up\n"
        assert os.path.basename(os.readlink(f"/proc/{process.pid}/exe")) == "bwrap"
        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(timeout=10) != 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    time.sleep(0.2)  # the sandbox's pid 1 dies with its parent (--die-with-parent)
    sleeping = [
        pid
        for pid in os.listdir("/proc")
        if pid.isdigit() and _cmdline(pid) == ["/bin/busybox", "sleep", marker]
    ]
    assert sleeping == []


def _cmdline(pid: str) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    except OSError:
        return []

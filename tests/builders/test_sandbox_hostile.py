"""Hostile code in the sandbox: a `build.run` step and a predictor that try to change the store,
gain the power to, leave their namespaces, and read cog's environment and command line.

Everything is real: cog builds and runs the project under bubblewrap, the probe
(tests/fixtures/hostile_probe.py) makes the system calls, and the store is checked after.
These tests run as root and, in CI, again as an unprivileged user (.ci/run)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builders.errors import BuildError, SandboxUnavailable
from builders.image import layer_derivation
from builders.realise import Realiser
from builders.sandbox import seccomp
from builders.sandbox.jail import Jail, ProjectRootTool, host_tool
from derivations import SrcInput
from store.local import Store
from tests.builders.test_lock_hook_hostile import lingering
from tests.conftest import REPO, LoopbackServer
from tests.projects import cog, project
from tests.services import free_port

PROBE = (REPO / "tests" / "fixtures" / "hostile_probe.py").read_text()
SECRET = "r8_canary_" + "f00d" * 8  # in cog's environment only
BWRAP_OPTION = "--ro-bind"  # on bubblewrap's command line, if its options were there


def _encoded(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def probe_step(canaries: list[str]) -> str:
    """A build.run command that runs the probe and keeps its findings in the step's layer."""
    args = " ".join(map(_encoded, canaries))
    run = f"import base64; exec(base64.b64decode('{_encoded(PROBE)}'))"
    return f'mkdir -p /opt && python3 -c "{run}" {args} > /opt/probe.json'


PREDICTOR = """\
import base64, json
from cog import BasePredictor

PROBE = base64.b64decode("{probe}").decode()
CANARIES = json.loads(base64.b64decode("{canaries}"))


class Predictor(BasePredictor):
    def setup(self) -> None:
        scope = {{"__name__": "probe"}}
        exec(PROBE, scope)
        self.found = scope["probe"](CANARIES, {port})

    def predict(self, text: str) -> str:
        return json.dumps(self.found, sort_keys=True)
"""


# The host's programs over bubblewrap's own (empty, in-memory) root.
HOST_USR = ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
HOST_USR += [a for d in ("bin", "lib", "lib64", "sbin") for a in ("--symlink", f"usr/{d}", f"/{d}")]


def stopped(found: dict[str, str]) -> dict[str, str]:
    """The attacks that got somewhere: none, when the sandbox holds."""
    return {attack: what for attack, what in found.items() if what}


def planted(store: Path) -> list[Path]:
    return [p for p in store.rglob("PLANTED") if not p.is_symlink()]


def test_a_hostile_step_and_predictor_change_nothing_and_see_nothing(
    offline: dict[str, str], tmp_path: Path, http_server: LoopbackServer
) -> None:
    store = Path(offline["COG_STORE_DIR"]).resolve()
    canaries = [SECRET, str(store), str(tmp_path), BWRAP_OPTION]
    root = project("hello-world", tmp_path)
    config = root / "cog.yaml"
    step = json.dumps([probe_step(canaries)])
    config.write_text(config.read_text().replace("build:\n", f"build:\n  run: {step}\n", 1))
    port = int(http_server.url("x").split(":")[2].split("/")[0])
    (root / "predict.py").write_text(
        PREDICTOR.format(probe=_encoded(PROBE), canaries=_encoded(json.dumps(canaries)), port=port)
    )
    env = offline | {"REPLICATE_API_TOKEN": SECRET, "AWS_SECRET_ACCESS_KEY": SECRET}

    result = cog(root, env, "predict", "-i", "text=x")
    assert result.returncode == 0, result.stderr[-3000:]
    from_predictor = json.loads(result.stdout)
    step_output = (root / ".cog" / "roots" / "run-1").resolve() / "opt" / "probe.json"
    from_step = json.loads(step_output.read_text())

    # Both ran (the probe answered every question), and got nowhere. The step's one writable
    # store path is its own throwaway copy of the model's environment (so that `pip install
    # --upgrade` may remove what requirements installed): nothing written there is kept.
    assert {"remount", "mount", "userns", "caps", "leaks"} <= from_step.keys()
    got_somewhere = stopped(from_step)
    written = got_somewhere.pop("write_store", "").removeprefix("wrote into ")
    assert written == "" or ("," not in written and written.endswith("-model-env"))
    assert got_somewhere == {}
    assert list(step_output.parent.parent.rglob("PLANTED")) == []
    # The model's network is its own: the host's loopback service is out of its reach, while
    # its own server's port is published (the prediction above came through it).
    assert "loopback" in from_predictor
    assert stopped(from_predictor) == {}
    assert planted(store) == []
    verified = cog(root, env, "store", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_the_policy_holds_for_any_jail(tmp_path: Path) -> None:
    """A Jail over the host's root, with a writable folder and a read-only one: the probe sees
    no capability that mounts, cannot remount the read-only one, and finds none of the
    canaries that cog's own environment and the jail's host paths hold."""
    readonly, writable = tmp_path / "ro", tmp_path / "rw"
    readonly.mkdir()
    writable.mkdir()
    (readonly / "file").write_text("kept")
    mounts = [*HOST_USR, "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    mounts += ["--ro-bind", str(readonly), "/cog/store/x-ro"]
    mounts += ["--bind", str(writable), "/work-out"]
    jail = Jail(mounts, {"PATH": "/usr/bin:/bin"}, chdir="/work-out")
    canaries = [SECRET, str(readonly), str(writable), BWRAP_OPTION]
    argv = jail.argv(["python3", "-c", PROBE, *map(_encoded, canaries)])
    run = subprocess.run(
        argv,
        env=os.environ | {"REPLICATE_API_TOKEN": SECRET},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    found = json.loads(run.stdout)
    assert {"remount", "mount", "userns", "caps", "leaks"} <= found.keys()
    assert stopped(found) == {}
    assert (readonly / "file").read_text() == "kept"
    assert not (readonly / "PLANTED").exists()


def test_a_lock_time_tool_has_a_network_of_its_own_and_a_time_limit(
    tmp_path: Path, http_server: LoopbackServer
) -> None:
    """What uv runs a package's metadata build in: /etc names hosts as in a network of its own,
    the host's loopback service is out of reach, and past its time the whole session is
    killed (the host sees no process of it after)."""
    port = http_server.port
    reach = (
        "import socket, sys\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=2).close()\n"
        "    print('reached')\n"
        "except OSError:\n"
        "    print('refused')\n"
        "print(open('/etc/resolv.conf').read().strip())\n"
        "try:\n"
        "    open('/etc/resolv.conf', 'a')\n"
        "except OSError:\n"
        "    print('read-only')\n"
    )
    env = {"PATH": "/usr/bin:/bin"}
    ran = host_tool([sys.executable, "-c", reach], env, [tmp_path], True).run(env, 60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split("\n")[:3] == ["refused", "nameserver 10.0.2.3", "read-only"]
    assert http_server.hits == {}

    marker = tmp_path / "started"
    sleep = f"import time; open('{marker}', 'w').close(); time.sleep(300)"
    launch = host_tool([sys.executable, "-c", sleep, "cog-timeout-probe"], env, [tmp_path], False)
    with pytest.raises(subprocess.TimeoutExpired):
        launch.run(env, 3)
    assert marker.exists()
    deadline = time.monotonic() + 5  # a killed namespace's processes go as the kernel reaps them
    while lingering("cog-timeout-probe") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lingering("cog-timeout-probe") == []


def test_a_lock_time_tool_never_sees_the_hosts_whole_tmp_or_root(tmp_path: Path) -> None:
    """A project kept at /tmp itself (or a --find-links /tmp) would be shown over the tool's
    private /tmp, and with it every other project's and user's files there: refused."""
    env = {"PATH": "/usr/bin:/bin"}
    view = tmp_path / "view"
    view.mkdir()
    for tool in (host_tool, ProjectRootTool(view)):
        with pytest.raises(SandboxUnavailable, match="all of the host's /tmp"):
            tool(["/bin/true"], env, [], False, cwd=Path("/tmp"))
        with pytest.raises(SandboxUnavailable, match="all of the host's files"):
            tool(["/bin/true"], env, [], False, cwd=tmp_path, readable=[Path("/")])
        with pytest.raises(SandboxUnavailable):
            tool(["/bin/true"], env, [Path("/tmp/")], False, cwd=tmp_path)
    ran = host_tool(["/bin/true"], env, [], False, cwd=tmp_path).run(env, 60)
    assert ran.returncode == 0, ran.stderr


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_every_architecture_refuses_the_same_calls(machine: str) -> None:
    tables = {name: arch.numbers.keys() for name, arch in seccomp._ARCHES.items()}
    assert set(tables[machine]) == set(tables["x86_64"])
    assert len(seccomp.program(machine)) % 8 == 0


FILTERED = """\
import ctypes, fcntl, os, termios
libc = ctypes.CDLL(None, use_errno=True)
found = []
if libc.syscall(250, 0, -3, 0) == -1:  # keyctl(KEYCTL_GET_KEYRING_ID, the session keyring)
    found.append(f"keyctl:{ctypes.get_errno()}")
pid = os.fork()
if pid == 0:  # a terminal of its own, then type into it
    os.setsid()
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    try:
        fcntl.ioctl(slave, termios.TIOCSTI, b"x")
        os._exit(0)
    except OSError as e:
        os._exit(e.errno)
found.append(f"tiocsti:{os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])}")
print(" ".join(found))
"""


def test_the_filter_refuses_the_keyring_and_typing_into_a_terminal(tmp_path: Path) -> None:
    """keyctl and TIOCSTI answer EPERM inside, though the kernel alone would allow both (the
    same script, unsandboxed, is the control)."""
    outside = subprocess.run(
        ["python3", "-c", FILTERED], capture_output=True, text=True, timeout=60, check=True
    )
    mounts = ["--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    jail = Jail(mounts, {"PATH": "/usr/bin:/bin"})
    inside = subprocess.run(
        jail.argv(["python3", "-c", FILTERED]),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert inside.returncode == 0, inside.stderr
    assert inside.stdout.split() == ["keyctl:1", "tiocsti:1"]
    if Path("/proc/sys/dev/tty/legacy_tiocsti").read_text().strip() == "1":
        assert outside.stdout.split() == ["tiocsti:0"]


HOSTILE_BACKEND = """\
import base64, json, os

def get_requires_for_build_wheel(config_settings=None):
    scope = {{"__name__": "probe"}}
    exec(base64.b64decode("{probe}").decode(), scope)
    found = scope["probe"](json.loads(base64.b64decode("{canaries}")))
    for target in ("/etc/shadow", os.path.expanduser("~/.ssh/id_rsa"), "{host_file}"):
        try:
            with open(target) as f:
                found["read " + target] = f.read(20)
        except OSError:
            pass
    try:  # where /tmp is the sandbox's own, this makes a file there, never the host's
        with open("{host_file}", "a") as f:
            f.write("planted")
    except OSError:
        pass
    given = ("PATH", "HOME", "LC_ALL", "PYTHONHASHSEED", "PWD")
    found["env"] = " ".join(k for k in os.environ if k not in given)
    return [json.dumps(found)]
"""


def test_a_hostile_sdist_hook_at_lock_time_sees_none_of_the_host(tmp_path: Path) -> None:
    """An sdist's backend hook (its own code, run by `cog lock`) tries the same attacks, and to
    read and write host files: the lock-time sandbox shows it the host's programs only."""
    from derivations.buildreqs import HookRoot, backend_requires, build_system

    host_file = tmp_path / "host-file"
    host_file.write_text("host secret")
    src = tmp_path / "work" / "src"
    src.mkdir(parents=True)
    # The hook's own command line names its work folder (bound where it is on the host), so
    # the canaries here are the secret and bubblewrap's options.
    canaries = [SECRET, BWRAP_OPTION]
    (src / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "hostile"\nbackend-path = ["."]\n'
    )
    (src / "hostile.py").write_text(
        HOSTILE_BACKEND.format(
            probe=_encoded(PROBE), canaries=_encoded(json.dumps(canaries)), host_file=host_file
        )
    )
    os.environ["REPLICATE_API_TOKEN"] = SECRET
    try:
        [answer] = backend_requires("hostile", src, build_system(src), [], HookRoot(host_tool))
    finally:
        del os.environ["REPLICATE_API_TOKEN"]
    found = json.loads(answer)
    assert {"remount", "mount", "userns", "caps", "leaks", "env"} <= found.keys()
    assert stopped(found) == {}
    assert host_file.read_text() == "host secret"


@pytest.mark.parametrize("store_form", [True, False])
async def test_a_path_changed_after_registration_is_never_layered(
    store: Store, tmp_path: Path, store_form: bool
) -> None:
    """Defence in depth behind the sandbox: a registered path whose bytes changed on disk (by
    whatever means) is refused when a layer would ship it, in its store form (at its own
    /cog/store prefix, checked by its diff_id) or at another prefix (re-hashed)."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "model.py").write_text("print('registered')\n")
    path = store.add(tree, "planted-target")
    real = store.real_path(path)
    os.chmod(real, 0o755)
    os.chmod(real / "model.py", 0o644)
    (real / "model.py").write_text("print('planted')\n")
    prefix = path.layer_prefix if store_form else "src"
    drv = layer_derivation([(SrcInput(path=str(path)), prefix)], "gzip", store_form)
    with pytest.raises(BuildError, match="changed after it was registered"):
        await Realiser(store).realise([drv])


PUBLISH_UNDER_DEEP_TMPDIR = """\
from builders.sandbox.jail import Jail
from builders.sandbox.network import OwnNetwork
from tests.builders.test_sandbox_hostile import HOST_USR
launch = Jail([*HOST_USR, "--proc", "/proc", "--dev", "/dev"], {{}}, network=OwnNetwork(
    [("127.0.0.1", {port})])).launch(["true"])
try:
    print(launch.start().wait())
finally:
    launch.stop()
"""


def test_a_published_port_works_under_a_deep_tmpdir(tmp_path: Path) -> None:
    """slirp4netns's API socket (how a port is published) must not live under $TMPDIR, which a
    harness may make deeper than a socket's path can be (Cog's suite runs cog so)."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    port = free_port()
    run = subprocess.run(
        [sys.executable, "-c", PUBLISH_UNDER_DEEP_TMPDIR.format(port=port)],
        env=os.environ | {"TMPDIR": str(deep), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0 and run.stdout.strip() == "0", run.stderr

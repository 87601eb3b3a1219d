"""A hostile sdist whose build backend attacks the host from the hooks `cog lock` runs over the
project's root (builders.hook_root, jail.ProjectRootTool): uv's metadata build (with the
network) and cog's own get_requires run (without).

Everything is real: `cog lock` resolves a project offline (the test Debian mirror, the wheel
cache and a local sdist made here), the backend makes the system calls from inside, and the
host is checked after. Each hook reports what it achieved: nothing, and then the lock goes on
(the pins it adds prove that both ran), or the names of its attacks that worked, which it
raises so that the lock fails with them in its message. Its targets are host paths whose
identity (device, inode) or contents only the host knows: seeing one from inside is a leak.
These tests run as root and again as an unprivileged user (make test-unprivileged).
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from store.local import Store
from tests.builders.test_sdist import sdist_project
from tests.conftest import REPO
from tests.projects import cog
from tests.wheels import make_sdist

PROBE = (REPO / "tests" / "fixtures" / "hostile_probe.py").read_text()
SECRET = "r8_canary_" + "beef" * 8  # in cog's environment only
ENV_SECRET = "env-secret-" + "c0de" * 8  # a `--secret id=…,env=VAR` source
FILE_SECRET = "file-secret-" + "f11e" * 8  # a `--secret id=…,src=FILE` source
STORE_SECRET = "store-secret-" + "5707" * 8  # in a store path the hook is not given
KEY_SECRET = "ssh-key-" + "4e11" * 8  # in the user's home
INPUT_SECRET = "stdin-secret-" + "1f0d" * 8  # what cog's standard input holds

# The hostile backend. It runs twice: uv calls prepare_metadata_for_build_wheel (network on,
# uv's scratch writable), and cog calls get_requires_for_build_wheel (derivations.buildreqs:
# `python -S -c HOOK SITE SPEC ANSWER`, only its work folder writable).
BACKEND = '''\
import base64, ctypes, json, os, select, stat, sys

CONFIG = json.loads(base64.b64decode("@CONFIG@"))
MS_REMOUNT, MS_BIND = 32, 4096
NOT_FILES = {"proc", "sysfs", "devpts", "mqueue", "devtmpfs", "cgroup", "cgroup2"}


def mounts():
    """(mount point, its options, its filesystem type) of every mount, in order."""
    rows = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = fields[4].encode().decode("unicode_escape")
            rows.append((point, fields[5].split(","), fields[fields.index("-") + 1]))
    return rows


def view_files(points):
    """The root view's regular files (the store's inodes, hard-linked), never below a mount."""
    found = []
    for top, dirs, names in os.walk("/"):
        dirs[:] = [d for d in dirs if os.path.join(top, d) not in points]
        for name in names:
            path = os.path.join(top, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and path not in points:
                found.append((path, st))
    return found


def first(files, attempt):
    """The first file on which `attempt` succeeds ("" when it fails on every one)."""
    for path, st in files:
        try:
            attempt(path, st)
        except OSError:
            continue
        return path
    return ""


def append(path, st=None, follow=False):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | (0 if follow else os.O_NOFOLLOW))
    try:
        os.write(fd, b"PLANTED")
    finally:
        os.close(fd)


def reopen(path, st):
    """A write through /proc/self/fd, from a descriptor opened only to name the file."""
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW)
    try:
        append(f"/proc/self/fd/{fd}", follow=True)
    finally:
        os.close(fd)


def attack_view(found, rows):
    points = {point for point, _, _ in rows if point != "/"}
    files = view_files(points)
    if len(files) < 1000:  # the walk itself failed: the attacks below would prove nothing
        found["view_unseen"] = f"only {len(files)} files"
    roots = [options for point, options, _ in rows if point == "/"]
    found["root_rw"] = "" if roots and "ro" in roots[-1] else f"/ is mounted {roots[-1:]}"
    libc = ctypes.CDLL(None, use_errno=True)
    for point in ["/", *sorted(points)]:
        if libc.mount(None, point.encode(), None, MS_REMOUNT | MS_BIND, None) == 0:
            found["remount_view"] = point
            break
    # What changes no bytes first (a truncation to its size would undo a write), then writes.
    found["view_chmod"] = first(files, lambda p, st: os.chmod(p, stat.S_IMODE(st.st_mode)))
    found["view_chown"] = first(files, lambda p, st: os.chown(p, st.st_uid, st.st_gid))
    found["view_utime"] = first(
        files, lambda p, st: os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    )
    found["view_truncate"] = first(files, lambda p, st: os.truncate(p, st.st_size))
    found["view_xattr"] = first(files, lambda p, st: os.setxattr(p, "user.planted", b"1"))
    found["view_write"] = first(files, append)
    found["view_reopen"] = first(files, reopen)
    try:
        with open("/usr/PLANTED", "x") as f:
            f.write("planted")
        found["view_create"] = "/usr/PLANTED"
    except OSError:
        pass
    # The same inodes through a writable mount: a hard link made into one, or found in one.
    writable = [p for p, options, fs in rows if "rw" in options and fs not in NOT_FILES]
    writable = [p for p in writable if p not in ("/", "/dev")]
    for path, st in files[:50]:
        for where in writable:
            target = os.path.join(where, "planted-link")
            try:
                os.link(path, target)
            except OSError:
                continue
            found["view_link"] = f"{path} linked into {where}"
            try:
                append(target)
                found["view_link"] += " and written"
            except OSError:
                pass
    inodes = {(st.st_dev, st.st_ino) for _, st in files}
    for where in writable:
        for top, _, names in os.walk(where):
            for name in names:
                try:
                    st = os.lstat(os.path.join(top, name))
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) in inodes:
                    found["inode_alias"] = f"{os.path.join(top, name)} is a view file"


def attack_host(found, phase):
    for label, (path, dev, ino) in CONFIG["hidden"].items():
        try:
            st = os.stat(path)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (dev, ino):
            found["visible:" + label] = path
    for label, path in CONFIG["absent"].items():
        if os.path.lexists(path):
            found["exists:" + label] = path
    for label, path in CONFIG["write"].items():
        try:
            if os.path.isdir(path):
                with open(os.path.join(path, "PLANTED-" + phase), "x") as f:
                    f.write("planted")
            else:
                append(path)
            found["write:" + label] = path
        except OSError:
            pass
    names = [k for k in os.environ if k.startswith(("COG_", "REPLICATE_", "HOOK_SECRET"))]
    names += [k for k in os.environ if any(w in k for w in ("TOKEN", "SECRET", "PASSWORD"))]
    found["env"] = " ".join(sorted(set(names)))


def read_input():
    """What cog's own input (a terminal, a pipe) holds, if the hook was given it."""
    try:
        if not select.select([0], [], [], 1)[0]:
            return ""
        return os.read(0, 1 << 16).decode(errors="replace")
    except (OSError, ValueError):
        return ""


def linger(marker):
    """A process of its own session that ignores what it can and sleeps past the lock."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            if os.fork() == 0:
                null = os.open("/dev/null", os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                os.closerange(3, 1 << 16)
                sleep = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                sleep += "signal.signal(signal.SIGHUP, signal.SIG_IGN); time.sleep(900)"
                os.execv(sys.executable, [sys.executable, "-c", sleep, marker])
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def attack(phase):
    scope = {"__name__": "probe"}
    exec(base64.b64decode(CONFIG["probe"]).decode(), scope)
    found = scope["probe"](CONFIG["canaries"], CONFIG["loopback"])
    attack_view(found, mounts())
    attack_host(found, phase)
    given = read_input()
    found["stdin"] = " ".join(c for c in CONFIG["canaries"] if c in given)
    linger(CONFIG["marker"] + "-" + phase)
    got = {k: v for k, v in found.items() if v}
    if got:
        sys.stderr.write(json.dumps(got, indent=1) + "\\n")
        raise RuntimeError("HOSTILE-REPORT " + phase + " " + ",".join(sorted(got))[:150])


def get_requires_for_build_wheel(config_settings=None):
    if len(sys.argv) == 4 and sys.argv[1].endswith("build-env"):  # cog's own run of it
        attack("requires")
        return ["wheel"]
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    attack("metadata")
    info = os.path.join(metadata_directory, "hostile-0.1.dist-info")
    os.makedirs(info, exist_ok=True)
    with open(os.path.join(info, "METADATA"), "w") as f:
        f.write("Metadata-Version: 2.1\\nName: hostile\\nVersion: 0.1\\n")
        f.write("Requires-Dist: sortedcontainers\\n")
    return "hostile-0.1.dist-info"


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    raise RuntimeError("a lock builds no wheel")
'''

PYPROJECT = (
    '[build-system]\nrequires = []\nbuild-backend = "hostile_backend"\nbackend-path = ["."]\n'
)
REPORT = re.compile(r"HOSTILE-REPORT (\w+) ([\w:,.-]+)")


def _encoded(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class _Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def hostile_sdist(into: Path, config: Mapping[str, object]) -> Path:
    """hostile 0.1: an sdist with no PKG-INFO and no [project] table, so that its metadata is
    known only by running its backend."""
    backend = BACKEND.replace("@CONFIG@", _encoded(json.dumps(config)))
    files = {"pyproject.toml": PYPROJECT, "hostile_backend.py": backend}
    return make_sdist(into, "hostile-0.1", files)


def identity(path: Path) -> tuple[str, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:  # not even there to stat, for this user (root's files, unprivileged)
        return None
    return (str(path), st.st_dev, st.st_ino)


def lingering(marker: str) -> list[int]:
    """The host's processes whose command line holds `marker`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(pid))
    return found


@dataclass(frozen=True)
class Attacked:
    """What one `cog lock` of the hostile project left: its result, the attacks that worked
    (by name, "lock-failed" when it failed for another reason), the processes it left, and
    the host's files it aimed at, with their bytes before (None: a folder)."""

    locked: subprocess.CompletedProcess[str]
    worked: set[str]
    left: list[int]
    targets: dict[Path, bytes | None]
    root: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def attacked(
    offline: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Attacked]:
    tmp = tmp_path_factory.mktemp("hostile")
    store_dir = Path(offline["COG_STORE_DIR"]).resolve()
    store = Store(store_dir)
    canary = tmp / "canary"
    canary.mkdir()
    (canary / "secret.txt").write_text(STORE_SECRET)
    kept = store.add(canary, "hostile-canary")
    kept_real = store.real_path(kept)
    store.close()
    # The user's home: a key, and the CA bundle SSL_CERT_FILE names (uv is shown it).
    home = tmp / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text(KEY_SECRET)
    bundle = home / "ca.pem"
    shutil.copyfile("/etc/ssl/certs/ca-certificates.crt", bundle)
    secret_file = tmp / "secrets" / "token"
    secret_file.parent.mkdir()
    secret_file.write_text(FILE_SECRET)
    # Another project's entry in the uv cache every lock on this host shares.
    cache = tmp / "uv-cache"
    other = cache / "archive-v0" / "other-project"
    other.mkdir(parents=True)
    (other / "METADATA").write_text("Name: other\n")
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    loopback = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    threading.Thread(target=loopback.serve_forever, daemon=True).start()

    links = tmp / "links"
    root = sdist_project(tmp, "project", [f"--find-links {links}", "hostile==0.1"])
    marker = "cog-hostile-linger-" + secrets.token_hex(8)
    hidden = {
        "host-root": identity(Path("/")),
        "host-tmp": identity(Path("/tmp")),
        "root-home": identity(Path("/root")),
        "shadow": identity(Path("/etc/shadow")),
        "home": identity(home),
        "ssh-key": identity(home / ".ssh" / "id_rsa"),
        "secret-file": identity(secret_file),
        "store": identity(store_dir),
        "store-canary": identity(kept_real),
        "store-db": identity(store_dir / ".cog" / "db.sqlite"),
    }
    write = {
        "project": root,
        "cog.yaml": root / "cog.yaml",
        "links": links,
        "sdist": links / "hostile-0.1.tar.gz",
        "uv-cache": cache,
        "uv-cache-entry": other / "METADATA",
        "store": store_dir,
        "store-canary": kept_real,
        "secret-file": secret_file,
        "home": home,
        "ca-bundle": bundle,
        "uv": Path(os.path.realpath(uv)),
    }
    canaries = [SECRET, ENV_SECRET, FILE_SECRET, str(secret_file), "--secret", str(store_dir)]
    canaries += [INPUT_SECRET]
    config = {
        "probe": _encoded(PROBE),
        "canaries": canaries,
        "hidden": {k: v for k, v in hidden.items() if v is not None},
        "absent": {"store-canary": str(kept)},
        "write": {k: str(v) for k, v in write.items()},
        "marker": marker,
        "loopback": loopback.server_address[1],  # a service on this host's loopback alone
    }
    hostile_sdist(links, config)
    targets = {p: None if p.is_dir() else p.read_bytes() for p in write.values()}
    env = offline | {
        "REPLICATE_API_TOKEN": SECRET,
        "COG_REGISTRY_PASSWORD": SECRET,
        "HOOK_SECRET_VAR": ENV_SECRET,
        "UV_PUBLISH_TOKEN": SECRET,
        "UV_CACHE_DIR": str(cache),
        "SSL_CERT_FILE": str(bundle),
        "HOME": str(home),
    }
    secret_args = [
        "--secret",
        f"id=file,src={secret_file}",
        "--secret",
        "id=var,env=HOOK_SECRET_VAR",
    ]
    # As tests.projects.cog runs it, with something on its standard input.
    locked = subprocess.run(
        [sys.executable, "-m", "cog.cli.main", "lock", *secret_args],
        cwd=root,
        env=env,
        input=INPUT_SECRET + "\n",
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    left = lingering(marker)
    worked = {
        f"{phase}:{name}"
        for phase, names in REPORT.findall(locked.stderr)
        for name in names.split(",")
    }
    if locked.returncode != 0 and not worked:
        worked = {"lock-failed"}
    try:
        yield Attacked(locked, worked, left, targets, root, env)
    finally:
        loopback.shutdown()
        loopback.server_close()
        for pid in left:  # ours: its command line holds this run's marker
            os.kill(pid, signal.SIGKILL)


def worked(attacked: Attacked, *prefixes: str) -> list[str]:
    """The attacks that worked whose names start with one of `prefixes` (after the phase),
    and any failure of the lock that the hooks did not report."""
    return sorted(
        name
        for name in attacked.worked
        if name == "lock-failed" or name.split(":", 1)[1].startswith(prefixes)
    )


def test_both_hooks_ran_and_every_attack_failed(attacked: Attacked) -> None:
    assert attacked.worked == set(), attacked.locked.stderr[-3000:]
    lock = json.loads((attacked.root / "cog.lock").read_text())
    pins = {p["name"]: p for p in lock["python_packages"]}
    assert pins["hostile"]["url"].endswith("hostile-0.1.tar.gz")
    assert "sortedcontainers" in pins  # what the metadata hook declared: uv ran it
    # What the requires hook answered: cog ran it (wheel's own needs come with it).
    assert "wheel" in {w["name"] for w in pins["hostile"]["build_requires"]}


def test_the_root_view_and_the_store_inodes_under_it_stay_read_only(attacked: Attacked) -> None:
    """The view is hard links to the store's files: a write, chmod, truncation or new link
    through it would change a registered path's bytes. The store still verifies after."""
    verified = cog(attacked.root, attacked.env, "store", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert worked(attacked, "view_", "root_rw", "remount", "inode_alias", "write_store") == []


def test_cog_secrets_are_out_of_reach(attacked: Attacked) -> None:
    """Neither cog's environment nor its command line (tokens, COG_* secrets, `--secret`
    sources) is in any /proc/PID/{environ,cmdline} inside, nor in the hooks' environment;
    nor is what cog's standard input holds readable."""
    assert worked(attacked, "leaks", "env", "visible:secret", "stdin") == []


def test_host_files_outside_what_is_shown_stay_hidden(attacked: Attacked) -> None:
    assert worked(attacked, "visible:", "exists:") == []


def test_nothing_outside_its_scratch_is_written(attacked: Attacked) -> None:
    """Not the project, its find-links folder, the shared uv cache, the store, the home, the
    secret, the CA bundle or uv: as the hooks say, and as the host sees after."""
    assert worked(attacked, "write:") == []
    for path, before in attacked.targets.items():
        if before is None:
            assert not list(path.glob("PLANTED*")), path
        else:
            assert path.read_bytes() == before, path


def test_its_network_is_not_the_hosts(attacked: Attacked) -> None:
    """uv reads the index while the backend runs, yet a service on this host's loopback alone
    (a registry, a database, a model's server) is out of the backend's reach."""
    assert worked(attacked, "loopback") == []


def test_it_cannot_mount_gain_capabilities_or_make_namespaces(attacked: Attacked) -> None:
    assert worked(attacked, "remount", "mount", "userns", "mountns", "caps", "host_root") == []


def test_no_process_outlives_the_lock(attacked: Attacked) -> None:
    assert attacked.left == []

"""`run:` steps that use apt and pip, as in Cog's images: what they install is the model's.

A real project, built offline but for its own test host (a network namespace; a step never
reaches this machine's loopback): the frozen Debian mirror and a PyPI-style index of wheels
made here are served there, and the channel's archives point at it, so the image's apt
sources do too. One step runs `apt-get install` of a small Debian package; another `pip
install`s a new package and upgrades one that the requirements pinned (whose script is in
the model's environment, a read-only store path); the model runs the installed program and
imports the installed modules. The steps need the network, so `cog lock` pins their results;
a build from the lock in the same store runs neither again, and one in an empty store runs
both again and gets the very same bytes.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cuda_channels.channel import BUILTIN_DIR
from tests.builders.test_run_steps import image_layers, nar_hash, store_path, with_steps
from tests.conftest import TEST_CACHE, OutsideHost
from tests.projects import cog, project
from tests.wheels import index_page, make_wheel

MIRROR = TEST_CACHE / "debian-mirror"
APT_STEP = "apt-get update && apt-get install -y --no-install-recommends jq"
PREDICT = """\
import subprocess

from cog import BasePredictor

import tinyextra
import tinytool


class Predictor(BasePredictor):
    def setup(self) -> None:
        self.jq = subprocess.run(
            ["jq", "-r", ".word"], input='{"word": "howdy"}', capture_output=True, text=True,
            check=True,
        ).stdout.strip()

    def predict(self, text: str) -> str:
        return f"{self.jq} {tinytool.greet(text)} {tinytool.VERSION} {tinyextra.VERSION}"
"""


def tinytool(version: str) -> bytes:
    return (
        f"VERSION = {version!r}\n\n\ndef greet(name):\n    return 'tiny ' + name\n\n\n"
        "def main():\n    print(greet('cli'))\n"
    ).encode()


@dataclass
class Served:
    """What the test host serves: the Debian mirror and a simple index, with hits counted."""

    root: Path
    by_hash: dict[str, Path] = field(default_factory=dict)  # apt asks for indexes by hash
    hits: Counter[str] = field(default_factory=Counter)
    url: str = ""


def _by_hash(mirror: Path) -> dict[str, Path]:
    found = {}
    for index in sorted(mirror.glob("*/dists/*/*/binary-*/Packages*")):
        found[hashlib.sha256(index.read_bytes()).hexdigest()] = index
    return found


@pytest.fixture
def served(outside_host: OutsideHost, tmp_path: Path) -> Iterator[Served]:
    if not (MIRROR / "debian/dists/bookworm/InRelease").is_file():
        pytest.fail(f"no Debian test mirror at {MIRROR}; run `make test-fixtures`")
    root = tmp_path / "served"
    (root / "simple" / "tinytool").mkdir(parents=True)
    for archive in ("debian", "debian-security"):
        os.symlink(MIRROR / archive, root / archive)
    state = Served(root, _by_hash(MIRROR))

    class Handler(http.server.SimpleHTTPRequestHandler):
        def translate_path(self, path: str) -> str:
            state.hits[path] += 1
            digest = path.rsplit("/by-hash/SHA256/", 1)[-1] if "/by-hash/SHA256/" in path else ""
            if digest in state.by_hash:
                return str(state.by_hash[digest])
            return super().translate_path(path)

        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Handler, directory=str(root))
    server = outside_host.listening(
        lambda: http.server.ThreadingHTTPServer((outside_host.address, 0), handler)
    )
    state.url = f"http://{outside_host.address}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def tinytool_wheel(where: Path, version: str) -> Path:
    """A wheel with a module and a console script."""
    files = {"tinytool/__init__.py": tinytool(version)}
    return make_wheel(
        where, "tinytool", version, files=files, scripts={"tinytool": "tinytool:main"}
    )


def publish(served: Served) -> None:
    """tinytool 2.0 and tinyextra 1.0 on the test host's index."""
    for name in ("tinytool", "tinyextra"):
        where = served.root / "simple" / name
        where.mkdir(parents=True, exist_ok=True)
        wheel = (
            tinytool_wheel(where, "2.0") if name == "tinytool" else make_wheel(where, name, "1.0")
        )
        (where / "index.html").write_text(index_page([wheel.name]))


def requiring_tinytool_1(root: Path) -> None:
    """The project's requirements pin tinytool 1.0, from a folder of the project."""
    (root / "wheels").mkdir()
    tinytool_wheel(root / "wheels", "1.0")
    config = root / "cog.yaml"
    text = config.read_text()
    line = next(line for line in text.splitlines() if line.startswith("  python_packages: "))
    packages = json.loads(line.removeprefix("  python_packages: "))
    packages += [f"--find-links {root / 'wheels'}", "tinytool==1.0"]
    config.write_text(text.replace(line, f"  python_packages: {json.dumps(packages)}"))


def channels_at(served: Served, into: Path) -> Path:
    """The built-in channels with every archive at the test host."""
    into.mkdir()
    for builtin in sorted(BUILTIN_DIR.glob("*.json")):
        if builtin.name.startswith("cuda-"):
            continue
        data = json.loads(builtin.read_text())
        for archive in data["archives"]:
            archive["mirror"] = f"{served.url}/{archive['name']}"
        (into / builtin.name).write_text(json.dumps(data))
    return into


def release_hits(served: Served) -> int:
    return sum(n for path, n in served.hits.items() if path.endswith("/InRelease"))


def test_apt_and_pip_in_steps_install_what_the_model_uses(
    offline: dict[str, str], served: Served, tmp_path: Path
) -> None:
    publish(served)
    host = served.url.removeprefix("http://").split(":")[0]
    index = f"--index-url {served.url}/simple/ --trusted-host {host}"
    pip_step = f"pip install {index} --upgrade tinytool tinyextra"
    root = with_steps(project("hello-world", tmp_path), [APT_STEP, pip_step])
    requiring_tinytool_1(root)
    (root / "predict.py").write_text(PREDICT)
    env = offline | {
        "COG_CHANNEL_PATH": str(channels_at(served, tmp_path / "channels")),
        "COG_STORE_DIR": str(tmp_path / "store"),
    }

    locked = cog(root, env, "lock")
    assert locked.returncode == 0, locked.stderr[-4000:]
    lock = json.loads((root / "cog.lock").read_text())
    assert [(p["command"], p["network"]) for p in lock["run"]] == [
        (APT_STEP, True),
        (pip_step, True),
    ]
    assert {"apt", "curl", "git", "wget"} <= {p["name"] for p in lock["system"]["tools"]}
    assert {"pip", "tinytool"} <= {w["name"] for w in lock["python_packages"]}
    fetched = release_hits(served)
    assert fetched > 0 and served.hits["/simple/tinytool/"] == 1

    # jq from the apt step; tinytool 2.0 over the requirements' 1.0, and tinyextra, from pip's.
    ran = cog(root, env, "run", "-i", "text=world")
    assert ran.returncode == 0, ran.stderr[-4000:]
    assert ran.stdout.strip() == "howdy tiny world 2.0 1.0"

    built = cog(root, env, "build", "--locked", "--no-docker-load")
    assert built.returncode == 0, built.stderr[-4000:]
    # A build from the lock in the same store ran neither step again.
    assert release_hits(served) == fetched and served.hits["/simple/tinytool/"] == 1
    layers = image_layers(root)
    [apt] = [files for files in layers if "usr/bin/jq" in files]
    assert "var/lib/dpkg/info/jq.list" in apt and "var/lib/dpkg/status" in apt
    assert b"Package: jq\n" in apt["var/lib/dpkg/status"]
    leftovers = ("var/cache/apt/", "var/lib/apt/lists/", "var/log/", "var/lib/dpkg/status-old")
    assert not [name for name in apt if name.startswith(leftovers)]
    site = "usr/local/lib/python3.11/site-packages"
    [pip] = [files for files in layers if f"{site}/tinytool/__init__.py" in files]
    assert pip[f"{site}/tinytool/__init__.py"] == tinytool("2.0")
    assert f"{site}/tinyextra/__init__.py" in pip and "usr/local/bin/tinytool" in pip
    assert not [name for name in pip if name.startswith(("cog/", "root/.cache/"))]
    assert not [name for name in pip if name.endswith(".pyc")] or all(
        data[4:8] != b"\0\0\0\0" for name, data in pip.items() if name.endswith(".pyc")
    )

    # Another machine (an empty store) runs both steps again and gets the same bytes: the
    # locked pins hold (a result that differed would fail the build, naming its step).
    other = env | {"COG_STORE_DIR": str(tmp_path / "store-2")}
    again = cog(root, other, "build", "--locked", "--no-docker-load")
    assert again.returncode == 0, again.stderr[-4000:]
    assert served.hits["/simple/tinytool/"] == 2
    for name in ("run-1", "run-2"):
        assert nar_hash(other, store_path(root, name)) == nar_hash(env, store_path(root, name))
    shutil.rmtree(tmp_path / "store-2", ignore_errors=True)

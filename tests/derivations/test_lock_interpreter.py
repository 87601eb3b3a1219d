"""A Python interpreter that cannot be fetched is said when locking, before any package is
resolved, not by the build after: the version, every place tried, and what to do.

Offline: the channel's python-build-standalone release is moved to a closed port on loopback,
where nothing answers; COG_PYTHON_INSTALL_MIRROR names a folder that has the archive.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from tests.projects import cog, project

ASSET = "20260814/cpython-3.12.14%2B20260814-x86_64-unknown-linux-gnu-install_only_stripped.tar.gz"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unreachable_channel(offline: dict[str, str], into: Path) -> tuple[dict[str, str], str]:
    """The test's bookworm channel with python-build-standalone's releases (and no mirror of
    them) on a closed loopback port, first in COG_CHANNEL_PATH; the environment, and the URL."""
    first = offline["COG_CHANNEL_PATH"].split(":")[0]
    data = json.loads((Path(first) / "debian-bookworm.json").read_text())
    release = f"http://127.0.0.1:{closed_port()}/releases/download/"
    data["python_standalone"] = {"release": release, "mirrors": []}
    for source in data["python"].values():
        for platform in source.get("platforms", {}).values():
            platform["url"] = release + platform["url"].split("/releases/download/", 1)[1]
    into.mkdir()
    (into / "debian-bookworm.json").write_text(json.dumps(data))
    env = offline | {"COG_CHANNEL_PATH": f"{into}:{offline['COG_CHANNEL_PATH']}"}
    env.pop("COG_PYTHON_INSTALL_MIRROR", None)
    return env, release + ASSET


def python312_project(tmp_path: Path) -> Path:
    """hello-world on Python 3.12 that also asks for a package no index has: resolving it
    would be the error, were the interpreter not checked first."""
    root = project("hello-world", tmp_path)
    config = root / "cog.yaml"
    text = config.read_text().replace('python_version: "3.11"', 'python_version: "3.12"')
    assert 'python_version: "3.12"' in text
    config.write_text(text.replace('"--no-index",', '"--no-index", "no-such-package==1.0",', 1))
    assert "no-such-package" in config.read_text()
    return root


def test_an_interpreter_nothing_serves_is_said_before_resolving(
    offline: dict[str, str], tmp_path: Path
) -> None:
    env, url = unreachable_channel(offline, tmp_path / "channels")
    root = python312_project(tmp_path)
    for command in (["lock"], ["build", "--no-docker-load"]):
        result = cog(root, env, *command)
        assert result.returncode == 1
        error, hint = result.stderr.strip().splitlines()[-2:]
        assert error.startswith(
            "error: Python 3.12.14 (python_version 3.12, a python-build-standalone interpreter) "
            f"cannot be fetched from {url} (ConnectError: "
        ), error
        assert hint.startswith("hint: set COG_PYTHON_INSTALL_MIRROR to a mirror of")
        assert "use a python_version that a channel's Debian ships: 3.11 (debian-bookworm)" in hint
        assert "3.13 (debian-trixie)" in hint
        assert "no-such-package" not in result.stderr  # nothing was resolved
        assert "derivations to build" not in result.stderr  # nor fetched
        assert not (root / "cog.lock").exists()


def test_a_mirror_that_has_the_interpreter_lets_the_lock_go_on(
    offline: dict[str, str], tmp_path: Path
) -> None:
    env, _ = unreachable_channel(offline, tmp_path / "channels")
    mirror = tmp_path / "mirror"
    (mirror / ASSET.replace("%2B", "+")).parent.mkdir(parents=True)
    (mirror / ASSET.replace("%2B", "+")).write_bytes(b"checked against its sha256 when built")
    root = python312_project(tmp_path)
    result = cog(root, env | {"COG_PYTHON_INSTALL_MIRROR": mirror.as_uri()}, "lock")
    assert result.returncode == 1
    assert "cannot be fetched" not in result.stderr
    assert "no-such-package" in result.stderr  # the lock went on, to the packages

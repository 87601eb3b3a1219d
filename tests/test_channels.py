"""Channels, and a python-build-standalone interpreter fetched into its own store path."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from builders.realise import Realiser
from builders.rootview import merge_view
from builders.userland import standalone_python, userland
from cuda_channels.channel import BUILTIN_DIR, Channel, ChannelError, PythonSource, load
from derivations.apt import python_packages, resolve_root
from derivations.hashing import output_path
from store.errors import HashMismatch
from store.local import Store
from tests.conftest import CogResult, LoopbackServer, require_tool
from tests.debian_mirror import ARCH, mirrored

SHA256 = set("0123456789abcdef")


def test_default_channel_pins_bookworm_and_pythons() -> None:
    channel = load()
    assert channel.name == "debian-bookworm"
    assert set(channel.architectures) == {"amd64", "arm64"}
    assert {"libc6", "ca-certificates", "tzdata", "bash", "coreutils"} <= set(channel.base_packages)
    assert channel.python_source("3.11").source == "debian"
    pbs = channel.python_source("3.12")
    assert pbs.source == "python-build-standalone"
    for arch in ("amd64", "arm64"):
        assert set(pbs.platforms[arch]["sha256"]) <= SHA256
        assert len(pbs.platforms[arch]["sha256"]) == 64
        assert pbs.platforms[arch]["url"].startswith("https://")
    with pytest.raises(ChannelError) as e:
        channel.python_source("2.7")
    assert e.value.hint is not None and "3.11" in e.value.hint
    assert python_packages(channel, "3.11") == ["python3.11", "python3.11-venv"]
    assert python_packages(channel, "3.12") == []


def test_revision_follows_the_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = json.loads((BUILTIN_DIR / "debian-bookworm.json").read_text())
    assert load().revision == load().revision
    data["base_packages"].append("less")
    (tmp_path / "debian-bookworm.json").write_text(json.dumps(data))
    monkeypatch.setenv("COG_CHANNEL_PATH", str(tmp_path))
    edited = load()
    assert "less" in edited.base_packages
    monkeypatch.delenv("COG_CHANNEL_PATH")
    assert edited.revision != load().revision


def test_bad_channels_are_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken.json").write_text(json.dumps({"name": "broken"}))
    monkeypatch.setenv("COG_CHANNEL_PATH", str(tmp_path))
    with pytest.raises(ChannelError, match="malformed"):
        load("broken")
    with pytest.raises(ChannelError, match="no channel named 'nope'"):
        load("nope")
    with pytest.raises(ChannelError, match="does not support architecture riscv64"):
        load().check_arch("riscv64")


def test_channel_cli(cog: Callable[..., CogResult]) -> None:
    listed = cog("channel", "list")
    assert listed.returncode == 0 and listed.stdout.startswith("debian-bookworm  ")
    data = json.loads(cog("channel", "show", "--json").stdout)
    assert data["revision"] == load().revision and data["python"]["3.11"]["source"] == "debian"
    missing = cog("channel", "show", "nope")
    assert missing.returncode == 1 and "no channel named 'nope'" in missing.stderr
    assert "Traceback" not in missing.stderr


def standalone_tarball() -> bytes:
    """Laid out like python-build-standalone's install_only tarballs (top directory `python/`)."""
    buf = io.BytesIO()
    files = {
        "python/bin/python3.12": (b'#!/bin/sh\necho "Python 3.12.6 at $0"\n', 0o755),
        "python/lib/python3.12/os.py": (b"# os\n", 0o644),
        "python/lib/libpython3.12.so.1.0": (b"\x7fELF", 0o755),
        "python/include/python3.12/Python.h": (b"/* */\n", 0o644),
    }
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("python/bin/python3")
        link.type, link.linkname = tarfile.SYMTYPE, "python3.12"
        tar.addfile(link)
    return buf.getvalue()


def channel_with_standalone(url: str, sha256: str, mirror: str | None = None) -> Channel:
    channel = load() if mirror is None else mirrored(load(), mirror)
    source = PythonSource(
        "python-build-standalone", "3.12.6", platforms={ARCH: {"url": url, "sha256": sha256}}
    )
    return replace(channel, python={**channel.python, "3.12": source})


async def test_standalone_python_in_its_own_store_path(
    store: Store, http_server: LoopbackServer, debian_mirror: str
) -> None:
    require_tool("bwrap")
    data = standalone_tarball()
    name = "cpython-3.12.6%2B20240909-x86_64-unknown-linux-gnu-install_only_stripped.tar.gz"
    http_server.files[name] = data
    channel = channel_with_standalone(
        http_server.url(name), hashlib.sha256(data).hexdigest(), debian_mirror
    )
    pins = resolve_root(channel, ARCH, "3.12", [])
    assert pins.python == () and pins.system == ()  # no Debian interpreter
    layers = userland(channel, ARCH, "3.12", pins)
    assert layers.python is not None
    [base, python] = await Realiser(store).realise([layers.base, layers.python])
    path = python["out"]
    assert path.name == "python-3.12.6" and str(path).startswith("/cog/store/")
    tree = store.real_path(path)
    assert sorted(p.name for p in tree.iterdir()) == ["bin", "include", "lib"]
    assert (tree / "bin/python3").is_symlink() and (tree / "lib/python3.12/os.py").is_file()
    # Runnable from the base root layer, at its store path.
    view = merge_view([store.real_path(base["out"])], store.root / ".cog/tmp/view-test")
    argv = ["bwrap", "--unshare-all", "--ro-bind", str(view), "/", "--proc", "/proc"]
    argv += ["--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/cog/store"]
    argv += ["--ro-bind", str(tree), str(path), f"{path}/bin/python3"]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert result.stdout.strip() == f"Python 3.12.6 at {path}/bin/python3", result.stderr


async def test_standalone_python_hash_is_verified(
    store: Store, http_server: LoopbackServer
) -> None:
    http_server.files["python.tar.gz"] = standalone_tarball()
    wrong = hashlib.sha256(b"something else").hexdigest()
    channel = channel_with_standalone(http_server.url("python.tar.gz"), wrong)
    with pytest.raises(HashMismatch, match=wrong):
        await Realiser(store).realise([standalone_python(channel, "3.12", ARCH)])
    assert not store.is_valid(output_path(standalone_python(channel, "3.12", ARCH)))

"""Channels, and a python-build-standalone interpreter fetched into its own store path."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import urllib.parse
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from builders.realise import Realiser
from builders.rootview import merge_view
from builders.userland import standalone_python, userland
from cuda_channels.channel import (
    BUILTIN_DIR,
    Channel,
    ChannelError,
    PythonSource,
    StandaloneMirrors,
    default_for,
    load,
)
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
    assert data["tool_packages"] == list(load().tool_packages) and "apt" in data["tool_packages"]
    shown = cog("channel", "show").stdout
    assert f"tools:         {' '.join(load().tool_packages)}\n" in shown
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


def test_trixie_and_the_channel_each_python_starts_on() -> None:
    trixie = load("debian-trixie")
    assert trixie.glibc == "2.41" and trixie.python_source("3.13").source == "debian"
    assert "libssl3t64" in trixie.base_packages  # trixie's 64-bit time_t names
    for version in ("3.10", "3.11", "3.12"):
        assert trixie.python_source(version).source == "python-build-standalone"
    assert sorted(load().python) == ["3.10", "3.11", "3.12", "3.13"]
    # A project without a lock starts where Debian ships its Python, else on the default.
    assert [default_for(v) for v in ("3.10", "3.11", "3.12", "3.13")] == [
        "debian-bookworm",
        "debian-bookworm",
        "debian-bookworm",
        "debian-trixie",
    ]


def test_standalone_urls_user_mirror_then_release_then_channel_mirrors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = load().python_source("3.12").platforms["amd64"]["url"]
    asset = url.removeprefix(load().standalone.release)
    assert asset.startswith("20260814/cpython-3.12.14%2B20260814-x86_64")
    monkeypatch.delenv("COG_PYTHON_INSTALL_MIRROR", raising=False)
    assert load().standalone.urls(url) == [
        url,
        f"https://releases.astral.sh/github/python-build-standalone/releases/download/{asset}",
    ]
    monkeypatch.setenv("COG_PYTHON_INSTALL_MIRROR", "file:///srv/pbs/ https://corp.example/pbs")
    assert load().standalone.urls(url)[:3] == [
        f"file:///srv/pbs/{asset}",
        f"https://corp.example/pbs/{asset}",
        url,
    ]
    assert load().standalone.urls("https://elsewhere.example/python.tar.gz") == [
        "https://elsewhere.example/python.tar.gz"  # not a release asset: no mirror serves it
    ]


async def test_standalone_python_from_the_mirrors_in_order(
    tmp_path: Path, http_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The small archive of standalone_tarball() stands for a real release asset: GitHub and
    releases.astral.sh are not reachable from the machines this suite runs on."""
    data = standalone_tarball()
    asset = (
        "20240909/cpython-3.12.6%2B20240909-x86_64-unknown-linux-gnu-install_only_stripped.tar.gz"
    )
    dead_release = "http://127.0.0.1:9/releases/download/"  # nothing listens on port 9
    http_server.files[f"astral/{asset}"] = data
    channel = replace(
        channel_with_standalone(dead_release + asset, hashlib.sha256(data).hexdigest()),
        standalone=StandaloneMirrors(dead_release, (http_server.url("astral/"),)),
    )
    # The user's file:// mirror comes first: the channel's mirror is never asked.
    user = tmp_path / "pbs" / urllib.parse.unquote(asset)  # a mirror's files: `+`, not `%2B`
    user.parent.mkdir(parents=True)
    user.write_bytes(data)
    monkeypatch.setenv("COG_PYTHON_INSTALL_MIRROR", (tmp_path / "pbs").as_uri())
    first, second = Store(tmp_path / "a"), Store(tmp_path / "b")
    [python] = await Realiser(first).realise([standalone_python(channel, "3.12", ARCH)])
    assert (first.real_path(python["out"]) / "lib/python3.12/os.py").is_file()
    assert http_server.hits[f"astral/{asset}"] == 0
    # Without it: the release URL fails (connection refused), the channel's mirror serves.
    monkeypatch.delenv("COG_PYTHON_INSTALL_MIRROR")
    [again] = await Realiser(second).realise([standalone_python(channel, "3.12", ARCH)])
    assert again["out"] == python["out"]  # the path depends on the bytes, not the mirror
    assert http_server.hits[f"astral/{asset}"] == 1
    first.close()
    second.close()

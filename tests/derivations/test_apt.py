"""Debian indexes and resolution: signatures, signed hashes, and a deterministic resolver."""

from __future__ import annotations

import lzma
from dataclasses import replace
from pathlib import Path

import pytest

from builders.realise import Realiser
from builders.rootfs import deb_derivation
from cuda_channels.channel import Channel, load
from derivations.apt import (
    Candidate,
    DebPin,
    Resolver,
    SignatureError,
    Universe,
    UnknownPackage,
    Unsatisfiable,
    load_universe,
)
from derivations.errors import DerivationError
from store.errors import HashMismatch
from store.local import Store
from tests.conftest import TEST_CACHE, LoopbackServer
from tests.debian_mirror import ARCH, mirrored

MIRROR = TEST_CACHE / "debian-mirror"


def cand(
    name: str, version: str = "1.0", depends: str = "", provides: str = "", priority: str = ""
) -> Candidate:
    return Candidate(
        name=name,
        version=version,
        arch="amd64",
        archive="test",
        mirror="http://mirror.invalid",
        snapshot="http://snapshot.invalid",
        filename=f"pool/{name}_{version}_amd64.deb",
        sha256="0" * 64,
        size=1,
        depends=depends,
        pre_depends="",
        provides=provides,
        multi_arch="no",
        priority=priority or "optional",
    )


def names(found: list[Candidate]) -> list[str]:
    return [c.name for c in found]


def test_resolver_follows_alternatives_versions_and_provides() -> None:
    universe = Universe(
        [
            cand("app", depends="libfoo (>= 2), awk, mail-transport-agent | nullmailer, py:any"),
            cand("libfoo", "1.5"),
            cand("libfoo", "2.3"),
            cand("gawk", provides="awk"),
            cand("mawk", provides="awk", priority="required"),
            cand("nullmailer"),
            cand("py", depends="libfoo (>= 1)"),
        ],
        "test",
    )
    found = Resolver(universe).resolve(["app"])
    assert names(found) == ["app", "libfoo", "mawk", "nullmailer", "py"]
    assert next(c for c in found if c.name == "libfoo").version == "2.3"
    # Asking again gives the same answer, whatever the order of the request.
    assert Resolver(universe).resolve(["py", "app"]) == Resolver(universe).resolve(["app", "py"])


def test_resolver_prefers_what_is_already_chosen_and_installed() -> None:
    universe = Universe(
        [
            cand("app", depends="awk"),
            cand("gawk", provides="awk"),
            cand("mawk", provides="awk", priority="required"),
            cand("tool", depends="libc (>= 2)"),
            cand("libc", "2.36"),
        ],
        "test",
    )
    base = Resolver(universe).resolve(["gawk", "libc"])
    assert names(Resolver(universe).resolve(["app", "tool"], installed=base)) == ["app", "tool"]


def test_versioned_needs_and_virtual_packages() -> None:
    universe = Universe(
        [
            cand("a", depends="virt (>= 2)"),
            cand("p1", provides="virt (= 1)"),
            cand("p2", provides="virt (= 3)"),
            cand("b", depends="virt (>= 2)"),
            cand("p3", provides="other"),
        ],
        "test",
    )
    assert names(Resolver(universe).resolve(["a"])) == ["a", "p2"]
    assert names(Resolver(universe).resolve(["p3", "b=1.0"])) == ["b", "p2", "p3"]


def test_unsatisfiable_dependency_names_the_chain() -> None:
    universe = Universe(
        [
            cand("top", depends="middle"),
            cand("middle", depends="leaf (>= 3) | other"),
            cand("leaf", "2.0"),
        ],
        "test",
    )
    with pytest.raises(Unsatisfiable) as e:
        Resolver(universe).resolve(["top"])
    message = str(e.value)
    assert "top -> middle" in message
    assert "leaf (>= 3) | other" in message
    assert "the archive has leaf 2.0" in message and "nothing provides other" in message


def test_a_second_version_of_an_installed_package_is_refused() -> None:
    universe = Universe(
        [cand("lib", "1"), cand("lib", "2"), cand("app", depends="lib (>= 2)")], "t"
    )
    with pytest.raises(Unsatisfiable, match="lib 1 is already chosen"):
        Resolver(universe).resolve(["app"], installed=[cand("lib", "1")])


def test_unknown_package_names_it_and_its_closest_matches(debian_mirror: str) -> None:
    universe = load_universe(mirrored(load(), debian_mirror), ARCH)
    with pytest.raises(UnknownPackage) as e:
        Resolver(universe).resolve(["ffmpg"])
    assert "'ffmpg'" in str(e.value)
    assert e.value.hint is not None and "ffmpeg" in e.value.hint
    with pytest.raises(UnknownPackage, match=r"has no ffmpeg \(= 0\.1\)"):
        Resolver(universe).resolve(["ffmpeg=0.1"])
    for nvidia in ("cudnn9-cuda-12", "libcudnn8", "libnccl2", "cuda-toolkit-12-4"):
        with pytest.raises(UnknownPackage) as e:
            Resolver(universe).resolve([nvidia])
        assert e.value.hint is not None and "NVIDIA's CUDA apt repository" in e.value.hint


def serve_suite(server: LoopbackServer, in_release: bytes, packages: bytes | None = None) -> str:
    """A one-suite archive on the loopback server: the channel's `debian` archive points here."""
    dists = MIRROR / "debian/dists"
    for suite in ("bookworm", "bookworm-updates"):
        server.files[f"debian/dists/{suite}/InRelease"] = (dists / suite / "InRelease").read_bytes()
        index = dists / suite / "main/binary-amd64/Packages.xz"
        server.files[f"debian/dists/{suite}/main/binary-amd64/Packages.xz"] = index.read_bytes()
    server.files["debian/dists/bookworm/InRelease"] = in_release
    if packages is not None:
        server.files["debian/dists/bookworm/main/binary-amd64/Packages.xz"] = packages
    return server.url("debian").rstrip("/")


def debian_only(url: str) -> Channel:
    channel = load().with_mirror("debian", url)
    return replace(channel, archives=channel.archives[:1])


def test_a_bad_inrelease_signature_is_rejected(
    debian_mirror: str, http_server: LoopbackServer
) -> None:
    real = (MIRROR / "debian/dists/bookworm/InRelease").read_bytes()
    tampered = real.replace(b"Codename: bookworm", b"Codename: bookwork", 1)
    assert tampered != real
    channel = debian_only(serve_suite(http_server, tampered))
    with pytest.raises(SignatureError, match="bad signature"):
        load_universe(channel, ARCH)


def test_an_unsigned_inrelease_is_rejected(debian_mirror: str, http_server: LoopbackServer) -> None:
    channel = debian_only(serve_suite(http_server, b"Origin: Debian\nSuite: bookworm\n"))
    with pytest.raises(SignatureError, match="no valid signature"):
        load_universe(channel, ARCH)


def test_a_release_of_another_suite_is_rejected(
    debian_mirror: str, http_server: LoopbackServer
) -> None:
    updates = (MIRROR / "debian/dists/bookworm-updates/InRelease").read_bytes()
    channel = debian_only(serve_suite(http_server, updates))
    with pytest.raises(SignatureError, match="not 'bookworm'"):
        load_universe(channel, ARCH)


def test_a_tampered_packages_index_is_rejected(
    debian_mirror: str, http_server: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COG_CACHE_DIR", str(tmp_path / "cache"))  # no cached good copy
    index = MIRROR / "debian/dists/bookworm/main/binary-amd64/Packages.xz"
    text = lzma.decompress(index.read_bytes())
    evil = lzma.compress(text.replace(b"Package: ffmpeg\n", b"Package: ffmpeg\nX-Evil: 1\n", 1))
    real = (MIRROR / "debian/dists/bookworm/InRelease").read_bytes()
    channel = debian_only(serve_suite(http_server, real, packages=evil))
    with pytest.raises(DerivationError, match="does not match its signed hash"):
        load_universe(channel, ARCH)


def test_a_missing_keyring_is_a_clear_error(
    debian_mirror: str, http_server: LoopbackServer, tmp_path: Path
) -> None:
    real = (MIRROR / "debian/dists/bookworm/InRelease").read_bytes()
    channel = replace(debian_only(serve_suite(http_server, real)), keyring=str(tmp_path / "none"))
    with pytest.raises(SignatureError, match=r"keyring .* does not exist"):
        load_universe(channel, ARCH)


async def test_a_deb_with_the_wrong_hash_is_rejected(
    store: Store, http_server: LoopbackServer
) -> None:
    deb = next((MIRROR / "debian/pool/main/b/base-passwd").glob("*.deb"))
    http_server.files["base-passwd.deb"] = deb.read_bytes()
    wrong = "1" * 64
    pin = DebPin(
        "base-passwd",
        "3.6.1",
        "amd64",
        wrong,
        deb.stat().st_size,
        (http_server.url("base-passwd.deb"),),
    )
    with pytest.raises(HashMismatch) as e:
        await Realiser(store).realise([deb_derivation(pin)])
    assert http_server.url("base-passwd.deb") in str(e.value) and wrong in str(e.value)

"""The realiser with real builders: fetch over loopback, unpack, and bwrap-sandboxed commands."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import socket
import tarfile
import threading
from pathlib import Path

import pytest
import trio

from builders.command import command_derivation
from builders.errors import BuildError, SandboxUnavailable
from builders.fetch import fetch_derivation
from builders.realise import Realiser
from builders.unpack import unpack_derivation
from derivations import SrcInput, output_path
from store.errors import HashMismatch
from store.local import Store
from store.paths import StorePath
from tests.conftest import LoopbackServer
from tests.services import free_port


def tarball(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue())


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sh(busybox: StorePath, script: str) -> list[str]:
    return [f"{busybox}/bin/busybox", "sh", "-c", script]


def bb_input(busybox: StorePath) -> dict[str, SrcInput]:
    return {"busybox": SrcInput(path=str(busybox))}


async def run_sandboxed(
    store: Store, busybox: StorePath, name: str, script: str, env: dict[str, str] | None = None
) -> tuple[StorePath, Path]:
    """Builds a busybox shell script (with `$bb` set) in the sandbox; returns its output."""
    drv = command_derivation(
        name, sh(busybox, f"bb=$busybox/bin/busybox; {script}"), bb_input(busybox), env=env
    )
    [outs] = await Realiser(store).realise([drv])
    return outs["out"], store.real_path(outs["out"])


async def test_fetch_and_unpack_from_loopback(store: Store, http_server: LoopbackServer) -> None:
    data = tarball({"pkg/hello.txt": b"hello"})
    http_server.files["pkg.tar.gz"] = data
    fetched = fetch_derivation("pkg.tar.gz", http_server.url("pkg.tar.gz"), sha(data))
    unpacked = unpack_derivation("pkg", fetched.dep(), subdir="pkg")
    [outs] = await Realiser(store).realise([unpacked])
    assert (store.real_path(outs["out"]) / "hello.txt").read_text() == "hello"
    info = store.info(output_path(fetched))
    assert info.ca == f"fixed:sha256:{sha(data)}"
    # Everything valid: nothing is fetched again.
    realiser = Realiser(store)
    await realiser.realise([unpacked])
    assert realiser.built == [] and http_server.hits["pkg.tar.gz"] == 1


async def test_fetch_retries_transient_errors_and_falls_back_to_mirrors(
    store: Store, http_server: LoopbackServer
) -> None:
    data = b"payload" * 1000
    http_server.files["good/f"] = data
    http_server.failures["good/f"] = [500, 503]
    drv = fetch_derivation(
        "f", [http_server.url("missing/f"), http_server.url("good/f")], sha(data)
    )
    [outs] = await Realiser(store).realise([drv])
    assert store.real_path(outs["out"]).read_bytes() == data
    assert http_server.hits["missing/f"] == 1  # a 404 is not retried
    assert http_server.hits["good/f"] == 3


async def test_a_fetch_no_host_can_serve_fails_before_anything_is_built(
    store: Store, busybox: StorePath
) -> None:
    """Every URL on a host that refuses (or does not exist): one sentence at once, with the
    fetch's hint, and the builds the plan has beside it never start."""
    first, second = free_port(), free_port()
    urls = [f"http://127.0.0.1:{first}/py.tar.gz", f"http://127.0.0.1:{second}/py.tar.gz"]
    fetch = fetch_derivation("py.tar.gz", urls, sha(b"x"), hint="set a mirror")
    quick = command_derivation("quick", sh(busybox, "echo hi > $out/hi"), bb_input(busybox))
    with trio.fail_after(5), pytest.raises(BuildError) as e:
        await Realiser(store, jobs=2).realise([quick, fetch])
    assert str(e.value) == (
        f"could not fetch py.tar.gz from any of its URLs ({urls[0]}: 127.0.0.1:{first} refused "
        f"the connection; {urls[1]}: 127.0.0.1:{second} refused the connection)"
    )
    assert e.value.hint == "set a mirror"
    assert not store.is_valid(output_path(quick))
    # One host that answers is enough to try: the fetch itself then says what went wrong.
    await Realiser(store).realise([quick])
    assert store.is_valid(output_path(quick))


async def test_fetch_from_file_url(store: Store, tmp_path: Path) -> None:
    (tmp_path / "local.bin").write_bytes(b"local bytes")
    drv = fetch_derivation(
        "local.bin", f"file://{tmp_path}/local.bin", sha(b"local bytes"), executable=True
    )
    [outs] = await Realiser(store).realise([drv])
    assert store.real_path(outs["out"]).read_bytes() == b"local bytes"
    assert os.stat(store.real_path(outs["out"])).st_mode & 0o111


async def test_hash_mismatch_names_url_expected_and_actual_and_registers_nothing(
    store: Store, http_server: LoopbackServer
) -> None:
    http_server.files["f"] = b"the real bytes"
    expected = sha(b"what we pinned")
    drv = fetch_derivation("f", http_server.url("f"), expected)
    with pytest.raises(HashMismatch) as err:
        await Realiser(store).realise([drv])
    message = str(err.value)
    assert (
        http_server.url("f") in message
        and expected in message
        and sha(b"the real bytes") in message
    )
    assert not store.is_valid(output_path(drv))
    assert not store.real_path(output_path(drv)).exists()
    assert list(store.tmp.iterdir()) == []


async def test_sandboxed_build_runs_in_an_empty_world(store: Store, busybox: StorePath) -> None:
    script = (
        "$bb mkdir $out/bin; $bb env | $bb sort > $out/env;"
        "$bb ls / | $bb sort > $out/root; $bb ls /cog/store > $out/store;"
        "$bb ln -s $bb $out/bin/busybox; echo built-ok"
    )
    path, out = await run_sandboxed(store, busybox, "probe", script, env={"GREETING": "hi"})
    env = dict(line.split("=", 1) for line in (out / "env").read_text().splitlines())
    assert env["GREETING"] == "hi" and env["out"] == str(path)
    assert "SSL_CERT_FILE" not in env and "COG_STORE_DIR" not in env
    assert (out / "root").read_text().split() == ["build", "cog", "dev", "proc", "tmp"]
    assert (out / "store").read_text().split() == sorted([busybox.base, path.base])
    # Found by scanning: busybox through the symlink, itself through `out=` in the env file.
    assert store.info(path).references == tuple(sorted([busybox, path]))
    log = store.logs / f"{store.info(path).deriver.rsplit('/', 1)[1]}.log"  # type: ignore[union-attr]
    assert "built-ok" in log.read_text()


async def test_sandbox_has_no_network(store: Store, busybox: StorePath) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(3)
    port = listener.getsockname()[1]
    accepted: list[object] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            accepted.append(listener.accept())

    thread = threading.Thread(target=accept)
    thread.start()
    script = (
        f"if echo hi | $bb nc -w 2 127.0.0.1 {port}; then echo connected > $out/net;"
        f"else echo refused > $out/net; fi"
    )
    _, out = await run_sandboxed(store, busybox, "net-probe", script)
    thread.join()
    listener.close()
    assert (out / "net").read_text().strip() == "refused"
    assert accepted == []


async def test_sandbox_cannot_read_host_files(
    store: Store, busybox: StorePath, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    other = store.add(secret)  # in the store, but not an input
    script = (
        f"$bb cat {secret} > $out/a 2>&1; $bb cat /etc/passwd > $out/b 2>&1;"
        f"$bb cat {other} > $out/c 2>&1; echo done > $out/d"
    )
    _, out = await run_sandboxed(store, busybox, "read-probe", script)
    for name in ("a", "b", "c"):
        assert "No such file" in (out / name).read_text()
    assert "top secret" not in "".join((out / n).read_text() for n in "abc")


async def test_missing_bwrap_is_refused_clearly(
    store: Store, busybox: StorePath, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builders.sandbox.jail

    monkeypatch.setattr(builders.sandbox.jail, "bwrap_path", lambda: None)
    monkeypatch.setattr(builders.sandbox.jail, "_checked", {})
    drv = command_derivation(
        "x", sh(busybox, "$busybox/bin/busybox touch $out/ok"), bb_input(busybox)
    )
    with pytest.raises(SandboxUnavailable, match="bubblewrap"):
        await Realiser(store).realise([drv])
    [outs] = await Realiser(store, sandbox=False).realise([drv])  # --no-sandbox: explicit opt-out
    assert (store.real_path(outs["out"]) / "ok").is_file()


async def test_first_failure_stops_the_build_cleanly(store: Store, busybox: StorePath) -> None:
    slow = command_derivation(
        "slow", sh(busybox, "$busybox/bin/busybox sleep 30"), bb_input(busybox)
    )
    bad = command_derivation("bad", sh(busybox, "echo oops; exit 3"), bb_input(busybox))
    with trio.fail_after(20), pytest.raises(BuildError, match=r"bad.*status 3"):
        await Realiser(store, jobs=2).realise([slow, bad])
    assert not store.is_valid(output_path(slow)) and not store.is_valid(output_path(bad))
    assert list(store.tmp.iterdir()) == []


async def test_cancellation_kills_the_builder_and_leaves_nothing(
    store: Store, busybox: StorePath
) -> None:
    slow = command_derivation(
        "slow", sh(busybox, "$busybox/bin/busybox sleep 30"), bb_input(busybox)
    )
    with trio.move_on_after(1.5):
        await Realiser(store).realise([slow])
    assert not store.is_valid(output_path(slow))
    assert list(store.tmp.iterdir()) == []

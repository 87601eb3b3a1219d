"""Caches, `cog store import` and `cog store copy --from` trust nothing by name alone.

Each test plays an attacker who controls a cache (a real file:// directory or a real registry)
or an export stream, against the real `cog` command or the real substituter: hashes blanked
out, other bytes under a content-addressed name, unsigned imports, a blob digest that is a
file path, edits the signature did not cover, bombs, two trusted keys with one name, and a
store path changed on disk after it was registered.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import threading
import zlib
from contextlib import suppress
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from store.archive import archive_stream, hash_tree
from store.cache import Entry, OciCache, Substituter, open_cache
from store.compress import LAYER_GZIP
from store.local import Store
from store.paths import StorePath
from store.registry import login as registry_login
from store.signing import TrustedKeys, generate_key
from tests.conftest import REPO, make_tree
from tests.services import Registry

MiB = 1 << 20


def run_cog(
    store: Path, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "COG_STORE_DIR": str(store), "PYTHONPATH": str(REPO)}
    for name in ("COG_TRUSTED_KEYS", "COG_SIGNING_KEY"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "cog.cli.main", *args],
        env=env,
        input=stdin,
        capture_output=True,
        timeout=300,
        cwd=REPO,
        check=False,
    )


def one_refusal(result: subprocess.CompletedProcess[bytes]) -> str:
    """The stderr of a refused `copy --from`: a failure, no traceback, no build."""
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert "Traceback" not in err and "building instead" not in err, err
    return err


def input_addressed(store: Store, tmp_path: Path, name: str = "thing") -> StorePath:
    """A path as a builder registers it: named after its derivation, not its bytes."""
    out = StorePath.make("output:out", name.ljust(64, "0"), name)
    tree = make_tree(tmp_path / f"build-{name}", {"bin/run": f"#!/bin/sh\necho {name}\n"})
    with store.writing(), store.output_lock(out):
        store.install(tree, out)
    return out


def layer_of(path: StorePath, tree: Path) -> tuple[bytes, dict[str, Any]]:
    """The gzip layer of `tree` placed at `path`, and the honest path info of those bytes."""
    tar = b"".join(archive_stream(tree, path.layer_prefix))
    digest = hash_tree(tree, path.layer_prefix)
    info = {
        "nar_hash": digest.nar_hash,
        "nar_size": digest.nar_size,
        "tar_sha256": digest.tar_sha256,
        "tar_size": digest.tar_size,
    }
    return gzip.compress(tar, mtime=0), info


def forge(cache: Path, entry: dict[str, Any], blob: bytes, uncompressed: bytes | None) -> None:
    """Puts `blob` in the file cache and points `entry` (rewritten in place) at it."""
    digest = hashlib.sha256(blob).hexdigest()
    (cache / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (cache / "blobs" / "sha256" / digest).write_bytes(blob)
    entry["blob"] = {"mediaType": LAYER_GZIP, "digest": f"sha256:{digest}", "size": len(blob)}
    if uncompressed is not None:
        entry["diff_id"] = f"sha256:{hashlib.sha256(uncompressed).hexdigest()}"
    (cache / f"{entry['info']['path'].split('/')[-1].split('-')[0]}.json").write_text(
        json.dumps(entry)
    )


# --- 1. other bytes under a content-addressed name -----------------------------------------------


def test_a_content_addressed_path_arrives_only_with_the_bytes_its_name_says(
    tmp_path: Path,
) -> None:
    a = tmp_path / "a"
    tool = make_tree(tmp_path / "src", {"bin/tool": "#!/bin/sh\necho honest\n"})
    added = run_cog(a, "store", "add", str(tool), "--name", "tool")
    assert added.returncode == 0, added.stderr
    path = StorePath.parse(added.stdout.decode().strip())
    cache = tmp_path / "cache"
    url = f"file://{cache}"
    assert run_cog(a, "store", "copy", "--to", url, str(path)).returncode == 0
    honest = json.loads((cache / f"{path.hash}.json").read_text())
    evil_tree = make_tree(tmp_path / "evil", {"bin/tool": "#!/bin/sh\necho evil\n"})
    blob, evil_info = layer_of(path, evil_tree)
    tar = gzip.decompress(blob)

    # The entry blanks its hashes: nothing would be checked against them.
    blank = json.loads(json.dumps(honest))
    blank["info"].update(nar_hash="", tar_sha256="")
    forge(cache, blank, blob, tar)
    refused = one_refusal(run_cog(tmp_path / "b", "store", "copy", "--from", url, str(path)))
    assert "no valid hashes" in refused
    assert not Store(tmp_path / "b").is_valid(path)

    # The entry's hashes are those of the other bytes: they match the blob, not the name.
    consistent = json.loads(json.dumps(honest))
    consistent["info"].update(evil_info)
    forge(cache, consistent, blob, tar)
    refused = one_refusal(run_cog(tmp_path / "c", "store", "copy", "--from", url, str(path)))
    assert "do not match its content address" in refused
    assert not Store(tmp_path / "c").is_valid(path)

    # And the honest entry still works.
    (cache / f"{path.hash}.json").write_text(json.dumps(honest))
    fetched = run_cog(tmp_path / "d", "store", "copy", "--from", url, str(path))
    assert fetched.returncode == 0, fetched.stderr
    assert (Store(tmp_path / "d").real_path(path) / "bin/tool").read_text().endswith("honest\n")


def test_verify_checks_a_content_addressed_path_against_its_name(tmp_path: Path) -> None:
    """A path registered with other bytes under a content-addressed name (as an older cog
    let a cache do) is reported, though it hashes to what was registered."""
    store = Store(tmp_path / "store")
    honest = store.add(make_tree(tmp_path / "src", {"data": "honest"}), "data")
    ca = store.info(honest).ca
    liar = Store(tmp_path / "liar")
    with liar.writing(), liar.output_lock(honest):
        liar.install(make_tree(tmp_path / "evil", {"data": "evil"}), honest, ca=ca)
    report = run_cog(liar.root, "store", "verify")
    assert report.returncode == 1
    assert f"corrupt: {honest}: not what its name says" in report.stdout.decode()
    assert ", 1 corrupt" in report.stdout.decode()
    assert run_cog(store.root, "store", "verify").returncode == 0


def test_an_oci_cache_entry_with_blank_hashes_or_other_bytes_is_refused(
    oci_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    registry_login(oci_registry.host, oci_registry.user, oci_registry.password)
    cache = open_cache(f"oci://{oci_registry.host}/trust-cache")
    assert isinstance(cache, OciCache)
    a = Store(tmp_path / "a")
    path = a.add(make_tree(tmp_path / "src", {"lib/x.so": "honest"}), "lib")
    blob, evil_info = layer_of(path, make_tree(tmp_path / "evil", {"lib/x.so": "evil!!"}))
    blob_file = tmp_path / "evil.blob"
    blob_file.write_bytes(blob)
    descriptor = {
        "mediaType": LAYER_GZIP,
        "digest": f"sha256:{hashlib.sha256(blob).hexdigest()}",
        "size": len(blob),
    }
    diff_id = f"sha256:{hashlib.sha256(gzip.decompress(blob)).hexdigest()}"
    honest = replace(a.layer_info(path), registered_at=0)
    for lie in (
        replace(honest, nar_hash="", tar_sha256=""),
        replace(honest, **evil_info),
    ):
        cache.upload(Entry(lie, "layer", descriptor, diff_id), blob_file)
        said: list[str] = []
        b = Store(tmp_path / f"b-{len(lie.nar_hash)}")
        assert not Substituter([cache], TrustedKeys.load([]), said.append).fetch(b, path)
        assert not b.is_valid(path), said
        assert any("valid hashes" in s or "content address" in s for s in said), said


# --- 2. `cog store import` -----------------------------------------------------------------------


def test_import_needs_a_trusted_signature_or_the_bytes_a_name_says(tmp_path: Path) -> None:
    a = Store(tmp_path / "a")
    out = input_addressed(a, tmp_path)
    secret, public = generate_key("exporter", tmp_path / "keys")

    unsigned = run_cog(a.root, "store", "export", str(out))
    assert unsigned.returncode == 0
    refused = run_cog(tmp_path / "b", "store", "import", stdin=unsigned.stdout)
    assert refused.returncode == 1 and b"it is not signed" in refused.stderr
    assert not Store(tmp_path / "b").is_valid(out)

    signed = run_cog(a.root, "store", "export", str(out), "--signing-key", str(secret))
    _, stranger = generate_key("exporter", tmp_path / "other-keys")  # same name, other key
    untrusted = run_cog(
        tmp_path / "c", "store", "import", "--trusted-key", str(stranger), stdin=signed.stdout
    )
    assert untrusted.returncode == 1 and b"no trusted key signed it" in untrusted.stderr
    trusted = run_cog(
        tmp_path / "d", "store", "import", "--trusted-key", str(public), stdin=signed.stdout
    )
    assert trusted.returncode == 0, trusted.stderr
    assert Store(tmp_path / "d").info(out).nar_hash == a.info(out).nar_hash

    # Other bytes under a content-addressed name, registered in the exporting store.
    honest = a.add(make_tree(tmp_path / "src", {"data": "honest"}), "data")
    liar = Store(tmp_path / "liar")
    with liar.writing(), liar.output_lock(honest):
        liar.install(make_tree(tmp_path / "evil", {"data": "evil"}), honest, ca=a.info(honest).ca)
    forged = run_cog(liar.root, "store", "export", str(honest))
    assert forged.returncode == 0
    lied = run_cog(tmp_path / "e", "store", "import", stdin=forged.stdout)
    assert lied.returncode == 1 and b"do not match its content address" in lied.stderr
    assert not Store(tmp_path / "e").is_valid(honest)


# --- 3. the blob descriptor: a digest that is a path, and edits the signature must cover --------


def test_a_blob_digest_is_never_a_path_and_the_signature_covers_the_descriptor(
    tmp_path: Path,
) -> None:
    a = Store(tmp_path / "a")
    out = input_addressed(a, tmp_path)
    secret, public = generate_key("ci", tmp_path / "keys")
    cache = tmp_path / "cache"
    url = f"file://{cache}"
    sent = run_cog(a.root, "store", "copy", "--to", url, "--signing-key", str(secret), str(out))
    assert sent.returncode == 0, sent.stderr
    entry_file = cache / f"{out.hash}.json"
    honest = json.loads(entry_file.read_text())
    copy = ["store", "copy", "--from", url, "--trusted-key", str(public), str(out)]

    def edited(n: int, change: dict[str, Any], where: str = "blob") -> str:
        document = json.loads(json.dumps(honest))
        (document[where] if where else document).update(change)
        entry_file.write_text(json.dumps(document))
        return one_refusal(run_cog(tmp_path / f"b{n}", *copy))

    # A digest that climbs out of the cache to a host file (an older cog copied it, and its
    # refusal even printed that file's hash).
    outside = tmp_path / "outside"
    outside.write_bytes(b"a host file, not the cache's")
    refused = edited(0, {"digest": "sha256:../../../outside"})
    assert hashlib.sha256(outside.read_bytes()).hexdigest() not in refused
    assert "not sha256: and 64 hex digits" in refused
    passwd = edited(1, {"digest": "sha256:../../../../../../../etc/passwd"})
    assert "not sha256: and 64 hex digits" in passwd
    assert not list((tmp_path / "b1").rglob("passwd"))

    # Edits that leave every hash intact but change what the entry says: not signed.
    assert "no trusted key signed it" in edited(2, {"deriver": "/cog/store/x.drv"}, "info")
    assert "no trusted key signed it" in edited(3, {"mediaType": LAYER_GZIP + "+evil"})
    for n in range(4):
        assert not Store(tmp_path / f"b{n}").is_valid(out)

    entry_file.write_text(json.dumps(honest))
    fetched = run_cog(tmp_path / "good", *copy)
    assert fetched.returncode == 0, fetched.stderr
    assert Store(tmp_path / "good").info(out).deriver == a.info(out).deriver


# --- 4. bombs ------------------------------------------------------------------------------------


class DiskWatch:
    """The most disk space the files under `root` took at any moment (polled)."""

    def __init__(self, root: Path) -> None:
        self.root, self.most = root, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            used = 0
            for directory, _, files in os.walk(self.root):
                for name in files:
                    with suppress(OSError):
                        used += os.lstat(os.path.join(directory, name)).st_blocks * 512
            self.most = max(self.most, used)
            self._stop.wait(0.002)

    def __enter__(self) -> DiskWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _header(name: str, kind: bytes, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode = kind, size, 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info.tobuf(tarfile.GNU_FORMAT)


def _dirs(path: StorePath) -> bytes:
    return b"".join(
        _header(d, tarfile.DIRTYPE, 0) for d in ("cog/", "cog/store/", f"{path.layer_prefix}/")
    )


def sparse_tar(path: StorePath, realsize: int) -> bytes:
    """A GNU sparse member: one data block that unpacks to `realsize` bytes."""
    header = bytearray(_header(f"{path.layer_prefix}/hole", tarfile.REGTYPE, 512))
    header[156:157] = tarfile.GNUTYPE_SPARSE
    header[386:410] = b"%011o\0%011o\0" % (realsize - 1, 1)  # one byte, at the very end
    header[483:495] = b"%011o\0" % realsize
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    tar = _dirs(path) + bytes(header) + b"x".ljust(512, b"\0") + bytes(1024)
    return tar.ljust(-(-len(tar) // 10240) * 10240, b"\0")


def zero_bomb(path: StorePath, size: int) -> bytes:
    """A gzip of a tar holding `size` zero bytes."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = _dirs(path) + _header(f"{path.layer_prefix}/zeros", tarfile.REGTYPE, size)
    out = [packer.compress(head)]
    chunk = bytes(MiB)
    for _ in range(size // MiB):
        out.append(packer.compress(chunk))
    out.append(packer.compress(bytes(1024)) + packer.flush())
    return b"".join(out)


def test_bombs_are_cut_off_at_the_sizes_the_entry_declares(tmp_path: Path) -> None:
    a = tmp_path / "a"
    added = run_cog(a, "store", "add", str(make_tree(tmp_path / "src", {"f": "x"})), "--name", "p")
    path = StorePath.parse(added.stdout.decode().strip())
    cache = tmp_path / "cache"
    url = f"file://{cache}"
    assert run_cog(a, "store", "copy", "--to", url, str(path)).returncode == 0
    honest = json.loads((cache / f"{path.hash}.json").read_text())
    bound = 8 * MiB  # what any refusal below may have put on disk, at most

    def attempt(n: int) -> tuple[str, int]:
        target = tmp_path / f"b{n}"
        Store(target).close()
        with DiskWatch(target) as disk:
            refused = one_refusal(run_cog(target, "store", "copy", "--from", url, str(path)))
        assert not Store(target).is_valid(path)
        return refused, disk.most

    # 1. A few hundred bytes of sparse tar that unpack to 256 MiB.
    sparse = sparse_tar(path, 256 * MiB)
    entry = json.loads(json.dumps(honest))
    entry["info"]["tar_sha256"] = hashlib.sha256(sparse).hexdigest()
    forge(cache, entry, gzip.compress(sparse, mtime=0), sparse)
    refused, used = attempt(1)
    assert used < bound, f"{used} bytes on disk for a {len(sparse)}-byte sparse tar"
    assert "never has" in refused

    # 2. A small gzip of 256 MiB of zeros.
    bomb = zero_bomb(path, 256 * MiB)
    assert len(bomb) < 2 * MiB
    entry = json.loads(json.dumps(honest))
    forge(cache, entry, bomb, None)  # (the honest diff_id and sizes stay)
    refused, used = attempt(2)
    assert used < bound, f"{used} bytes on disk for a {len(bomb)}-byte gzip"
    assert "more" in refused and "than it declares" in refused

    # 3. A blob far larger than the entry declares (a sparse file in the cache).
    huge = cache / "huge"
    with open(huge, "wb") as f:
        f.truncate(256 * MiB)
    digest = hashlib.sha256()
    with open(huge, "rb") as f:
        while chunk := f.read(8 * MiB):
            digest.update(chunk)
    huge.rename(cache / "blobs" / "sha256" / digest.hexdigest())
    entry = json.loads(json.dumps(honest))
    entry["blob"]["digest"] = f"sha256:{digest.hexdigest()}"
    (cache / f"{path.hash}.json").write_text(json.dumps(entry))
    refused, used = attempt(3)
    assert used < bound, f"{used} bytes on disk for a blob declared {entry['blob']['size']}"
    assert "of another size" in refused


# --- 5. two trusted keys with one name -----------------------------------------------------------


def test_two_trusted_keys_with_the_same_name_both_count(tmp_path: Path) -> None:
    a = Store(tmp_path / "a")
    out = input_addressed(a, tmp_path)
    secret, public = generate_key("ci", tmp_path / "new")
    _, older = generate_key("ci", tmp_path / "old")  # the key it replaced, still trusted
    url = f"file://{tmp_path / 'cache'}"
    sent = run_cog(a.root, "store", "copy", "--to", url, "--signing-key", str(secret), str(out))
    assert sent.returncode == 0, sent.stderr
    for n, keys in enumerate([(public, older), (older, public)]):
        flags = [arg for key in keys for arg in ("--trusted-key", str(key))]
        fetched = run_cog(tmp_path / f"b{n}", "store", "copy", "--from", url, *flags, str(out))
        assert fetched.returncode == 0, fetched.stderr
        assert Store(tmp_path / f"b{n}").is_valid(out)


# --- 6. publishing a path changed after it was registered ----------------------------------------


def test_a_path_changed_on_disk_is_never_published(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    plain = store.add(make_tree(tmp_path / "src", {"lib/data": "registered"}), "data")
    blob = gzip.compress(b"pretend layer", mtime=0)
    descriptor = {
        "mediaType": LAYER_GZIP,
        "digest": f"sha256:{hashlib.sha256(blob).hexdigest()}",
        "size": len(blob),
        "diff_id": f"sha256:{hashlib.sha256(b'pretend layer').hexdigest()}",
    }
    files: dict[str, bytes | str] = {"blob": blob, "descriptor.json": json.dumps(descriptor)}
    layer = store.add(make_tree(tmp_path / "layer", files), "oci-layer")
    cache = tmp_path / "cache"
    for path, victim in ((plain, "lib/data"), (layer, "blob")):
        changed = store.real_path(path) / victim
        changed.chmod(0o644)
        changed.write_bytes(changed.read_bytes() + b" and changed")
        sent = run_cog(store.root, "store", "copy", "--to", f"file://{cache}", str(path))
        err = sent.stderr.decode()
        assert sent.returncode == 1, err
        assert f"{path} no longer matches its registered hash" in err and "Traceback" not in err
        assert not (cache / f"{path.hash}.json").exists()
    assert not list(cache.glob("*.json"))

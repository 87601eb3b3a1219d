"""Store operations: references, closure, gc, verify and repair, export and import."""

from __future__ import annotations

import io
import os
import random
import shutil
from pathlib import Path

import pytest

from store.errors import CorruptImport, PathNotValid
from store.gc import collect_garbage
from store.hashing import ReferenceScanner
from store.local import Store
from store.paths import StorePath, base32
from store.signing import SigningKey, TrustedKeys, generate_key
from store.transfer import export_paths, import_paths
from store.verify import verify_store
from tests.conftest import make_tree


def install_output(
    store: Store, tmp_path: Path, name: str, files: dict[str, bytes | str], scan: list[StorePath]
) -> StorePath:
    """Registers a tree as if a builder had produced it (input-addressed by `name`)."""
    path = StorePath.make("output:out", name.ljust(64, "0"), name)
    tree = make_tree(tmp_path / f"build-{name}", files)
    with store.output_lock(path):
        store.install(tree, path, scan=scan)
    return path


@pytest.fixture
def chain(store: Store, tmp_path: Path) -> dict[str, StorePath]:
    """lib <- app <- image, plus an unrelated path and a self-referencing one."""
    lib = store.add(make_tree(tmp_path / "lib", {"libfoo.so": "foo"}))
    app = install_output(store, tmp_path, "app", {"bin/app": f"#!{lib}/libfoo.so\n"}, [lib])
    image = install_output(store, tmp_path, "image", {"layers": f"{app}\n"}, [lib, app])
    lonely = store.add(make_tree(tmp_path / "lonely", {"x": "x"}))
    selfref = StorePath.make("output:out", "s" * 64, "selfref")
    tree = make_tree(tmp_path / "self", {"me": f"{selfref}/me"})
    with store.output_lock(selfref):
        store.install(tree, selfref, scan=[lib])
    return {"lib": lib, "app": app, "image": image, "lonely": lonely, "selfref": selfref}


def test_references_are_found_by_scanning(store: Store, chain: dict[str, StorePath]) -> None:
    assert store.info(chain["app"]).references == (chain["lib"],)
    assert store.info(chain["image"]).references == (chain["app"],)  # lib was a candidate, not used
    assert store.info(chain["selfref"]).references == (chain["selfref"],)
    assert store.closure([chain["image"]]) == [chain["lib"], chain["app"], chain["image"]]


def test_gc_removes_exactly_what_no_root_reaches(
    store: Store, chain: dict[str, StorePath], tmp_path: Path
) -> None:
    store.add_root(chain["app"], "app")
    project_link = tmp_path / "project" / ".cog" / "image"
    store.add_indirect_root(project_link, chain["selfref"])
    leftover = store.root / ("0" * 32 + "-crashed")
    leftover.mkdir()
    dry = collect_garbage(store, dry_run=True)
    assert sorted(dry.dead) == sorted([chain["image"], chain["lonely"]])
    assert store.is_valid(chain["image"]) and leftover.exists()

    result = collect_garbage(store)
    assert sorted(result.dead) == sorted([chain["image"], chain["lonely"]])
    assert leftover in result.leftovers and not leftover.exists()
    for kept in ("lib", "app", "selfref"):
        assert store.is_valid(chain[kept]) and store.real_path(chain[kept]).exists()
    for gone in ("image", "lonely"):
        assert not store.is_valid(chain[gone]) and not store.real_path(chain[gone]).exists()

    # An indirect root dies with its link; then its path goes too.
    project_link.unlink()
    result = collect_garbage(store)
    assert result.dead == [chain["selfref"]]
    assert not any(p is not None for link, p in store.roots() if "auto" in str(link))
    assert collect_garbage(store).dead == []


def test_verify_finds_corruption_and_repair_removes_it_and_its_referrers(
    store: Store, chain: dict[str, StorePath]
) -> None:
    assert verify_store(store).clean
    victim = store.real_path(chain["lib"]) / "libfoo.so"
    os.chmod(victim, 0o644)
    victim.write_text("tampered")
    report = verify_store(store)
    assert list(report.corrupt) == [chain["lib"]]
    assert "contents changed" in report.corrupt[chain["lib"]]

    report = verify_store(store, repair=True)
    removed = {i.path for i in report.removed}
    assert removed == {chain["lib"], chain["app"], chain["image"]}
    assert store.is_valid(chain["lonely"]) and not store.is_valid(chain["app"])
    assert verify_store(store).clean


def test_verify_reports_a_missing_path(store: Store, chain: dict[str, StorePath]) -> None:
    shutil.rmtree(store.real_path(chain["lonely"]))
    assert verify_store(store).corrupt == {chain["lonely"]: "missing from disk"}


def signer(tmp_path: Path) -> tuple[SigningKey, TrustedKeys]:
    secret, public = generate_key("exporter", tmp_path / "keys")
    return SigningKey.load(secret), TrustedKeys.load([public])


def test_export_import_round_trip_into_another_store(
    store: Store, chain: dict[str, StorePath], tmp_path: Path
) -> None:
    key, trusted = signer(tmp_path)
    stream = io.BytesIO()
    exported = export_paths(store, [chain["image"]], stream, key)
    assert exported == [chain["lib"], chain["app"], chain["image"]]
    other = Store(tmp_path / "other")
    stream.seek(0)
    assert import_paths(other, stream, trusted) == exported
    for p in exported:
        a, b = store.info(p), other.info(p)
        assert (a.nar_hash, a.tar_sha256, a.references) == (b.nar_hash, b.tar_sha256, b.references)
    assert (
        other.real_path(chain["app"]) / "bin/app"
    ).read_text() == f"#!{chain['lib']}/libfoo.so\n"
    assert verify_store(other).clean
    stream.seek(0)
    assert import_paths(other, stream, trusted) == exported  # idempotent


def test_import_refuses_a_tampered_stream(
    store: Store, chain: dict[str, StorePath], tmp_path: Path
) -> None:
    key, trusted = signer(tmp_path)
    stream = io.BytesIO()
    export_paths(store, [chain["app"]], stream, key)
    data = stream.getvalue().replace(b"#!/cog/store", b"#!/cog/st0re")
    other = Store(tmp_path / "other")
    with pytest.raises(CorruptImport, match="corrupt"):
        import_paths(other, io.BytesIO(data), trusted)
    assert not other.is_valid(chain["app"])
    assert other.is_valid(chain["lib"])  # what arrived intact before it is kept
    with pytest.raises(CorruptImport, match="ended"):
        import_paths(Store(tmp_path / "third"), io.BytesIO(stream.getvalue()[:-5000]), trusted)


def test_add_text_and_unknown_paths(store: Store, chain: dict[str, StorePath]) -> None:
    drv = store.add_text("x.drv", f'{{"src": "{chain["lib"]}"}}', [chain["lib"]])
    assert store.info(drv).references == (chain["lib"],)
    assert store.add_text("x.drv", f'{{"src": "{chain["lib"]}"}}', [chain["lib"]]) == drv
    with pytest.raises(PathNotValid):
        store.info(StorePath.make("source", "nothing", "missing"))


@pytest.mark.parametrize("candidates", [3, 40])  # substring search, and the regex pass for many
def test_reference_scanner_finds_hashes_split_across_chunks(candidates: int) -> None:
    from store.hashing import ReferenceScanner

    paths = [StorePath.make("x", str(i), "n") for i in range(candidates)]
    scanner = ReferenceScanner(p.hash for p in paths)
    text = f"junk {paths[1]} more {paths[-1]}/bin".encode()
    cut = text.index(paths[-1].hash.encode()) + 10  # a chunk boundary inside a hash
    scanner.feed(text[:cut])
    scanner.feed(text[cut:])
    assert scanner.found == {paths[1].hash, paths[-1].hash}


@pytest.mark.parametrize("needles", [3, 300])
def test_reference_scanner_finds_hash_parts_anywhere(needles: int) -> None:
    """Few needles use plain search; many use the alphabet-run scan. Both must agree."""
    rng = random.Random(needles)
    parts = [base32(rng.randbytes(20)) for _ in range(needles)]
    wanted = {parts[0], parts[1], parts[-1]}
    data = bytearray(rng.randbytes(3 << 20))
    data[100:132] = parts[0].encode()  # inside binary noise
    split = (1 << 20) - 10  # straddles the first chunk boundary
    data[split : split + 32] = parts[1].encode()
    letters = b"abcdfghijk" * 1000  # a long run of alphabet bytes, with a hit inside
    hit = len(data) - 20_000
    data[hit : hit + len(letters)] = letters
    data[hit + 5000 : hit + 5032] = parts[-1].encode()
    data[hit - 40 : hit - 9] = parts[2].encode()[:31]  # one byte short: not a hit
    scanner = ReferenceScanner(parts)
    for i in range(0, len(data), 1 << 20):
        scanner.feed(bytes(data[i : i + (1 << 20)]))
    assert scanner.found == wanted

"""Derivation hashing: modulo fixed outputs, builder versions, and `.drv` files round-trip."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from builders.command import command_derivation
from builders.fetch import fetch_derivation
from builders.unpack import unpack_derivation
from derivations import Derivation, drv_path, hash_modulo, output_path, read_drv, write_drv
from store.local import Store

SHA = "ab" * 32


def graph(url: str, version: str = "1") -> Derivation:
    src = fetch_derivation("src.tar.gz", url, SHA)
    tree = unpack_derivation("src", src.dep())
    return Derivation(
        name="app",
        builder="command",
        builder_version=version,
        inputs={"tree": tree.dep()},
        args={"argv": ["/bin/true"]},
    )


def test_moving_a_fixed_output_url_changes_nothing_downstream() -> None:
    a, b = graph("http://mirror-a/src.tar.gz"), graph("http://mirror-b/other/name.tgz")
    assert output_path(a) == output_path(b)
    assert hash_modulo(a) == hash_modulo(b)
    fetch_a = a.inputs["tree"].drv.inputs["src"].drv  # type: ignore[union-attr]
    fetch_b = b.inputs["tree"].drv.inputs["src"].drv  # type: ignore[union-attr]
    assert output_path(fetch_a) == output_path(fetch_b)
    assert drv_path(fetch_a) != drv_path(fetch_b)  # the recipes differ, their outputs do not


def test_a_different_fixed_hash_or_builder_version_changes_every_dependent_path() -> None:
    base = graph("http://x/src.tar.gz")
    assert output_path(base) != output_path(graph("http://x/src.tar.gz", version="2"))
    other = Derivation(
        name="app",
        builder="command",
        builder_version="1",
        inputs={
            "tree": unpack_derivation(
                "src", fetch_derivation("src.tar.gz", "http://x", "cd" * 32).dep()
            ).dep()
        },
        args={"argv": ["/bin/true"]},
    )
    assert output_path(base) != output_path(other)


def test_args_and_env_are_part_of_the_hash() -> None:
    a = command_derivation("x", ["/bin/true"], {}, env={"A": "1"})
    assert output_path(a) != output_path(command_derivation("x", ["/bin/true"], {}, env={"A": "2"}))
    assert output_path(a) != output_path(
        command_derivation("x", ["/bin/false"], {}, env={"A": "1"})
    )


def test_drv_files_are_written_and_read_back(store: Store) -> None:
    drv = graph("http://x/src.tar.gz")
    path = write_drv(store, drv)
    assert path == drv_path(drv)
    doc = json.loads(store.real_path(path).read_text())
    assert doc["outputs"] == {"out": str(output_path(drv))}
    assert doc["inputs"]["tree"]["drv"] == str(drv_path(drv.inputs["tree"].drv))  # type: ignore[union-attr]
    assert store.info(path).references == (drv_path(drv.inputs["tree"].drv),)  # type: ignore[union-attr]
    assert read_drv(store, path) == drv


def test_invalid_derivations_are_refused() -> None:
    with pytest.raises(ValidationError):
        fetch_derivation("x", "http://x", "not-a-hash")
    with pytest.raises(ValidationError):
        Derivation(name="../evil", builder="command", builder_version="1")
    with pytest.raises(ValidationError):
        Derivation(
            name="x",
            builder="fetch",
            builder_version="1",
            outputs=("out", "dev"),
            fixed_output={"sha256": SHA},
        )


async def test_the_realiser_refuses_what_it_cannot_build(store: Store) -> None:
    from builders.errors import BuildError
    from builders.realise import Realiser

    unknown = Derivation(name="x", builder="no-such-builder", builder_version="1")
    with pytest.raises(BuildError, match="no-such-builder"):
        await Realiser(store).realise([unknown])
    stale = Derivation(name="x", builder="unpack", builder_version="0")
    with pytest.raises(BuildError, match="version 0"):
        await Realiser(store).realise([stale])
    multi = Derivation(name="x", builder="unpack", builder_version="1", outputs=("out", "dev"))
    with pytest.raises(BuildError, match="outputs dev, out"):
        await Realiser(store).realise([multi])
    # Args the builder does not declare, or of the wrong type: one sentence, nothing run.
    for args, problem in (
        ({"argv": ["/bin/true"], "surprise": 1}, "surprise: Extra inputs are not permitted"),
        ({"argv": "/bin/true"}, "argv: Input should be a valid tuple"),
        ({}, "argv: Field required"),
    ):
        odd = Derivation(name="odd", builder="command", builder_version="1", args=args)
        with pytest.raises(BuildError, match="args do not fit the command builder") as e:
            await Realiser(store).realise([odd])
        assert problem in str(e.value) and e.value.hint

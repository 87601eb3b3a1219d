"""Derivation hashes, output paths and the `.drv` text, computed without touching the store.

Hash modulo fixed outputs (as Nix): a fixed-output input counts only by its content hash and
name, so moving its URL or adding a mirror changes nothing downstream. Hashes are cached on the
(frozen) derivation object, so a large graph is hashed once per node.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import blake3

from derivations.model import Derivation, DrvInput
from store.hashing import canonical_json
from store.paths import StorePath

T = TypeVar("T")


def _memo(drv: Derivation, key: str, compute: Callable[[], T]) -> T:
    memo = drv._memo
    if key not in memo:
        memo[key] = compute()
    return memo[key]  # type: ignore[no-any-return]


def hash_modulo(drv: Derivation) -> str:
    """The derivation's identity: BLAKE3 of its canonical JSON, inputs replaced by their hashes."""
    return _memo(drv, "hash", lambda: _hash_modulo(drv))


def _hash_modulo(drv: Derivation) -> str:
    if drv.fixed_output is not None:
        fixed = output_path(drv, "out")
        return blake3.blake3(
            f"fixed:out:sha256:{drv.fixed_output.sha256}:{fixed}".encode()
        ).hexdigest()
    doc = _document(drv, hash_modulo, list(drv.outputs))
    return blake3.blake3(canonical_json(doc).encode()).hexdigest()


def output_path(drv: Derivation, output: str = "out") -> StorePath:
    return _memo(drv, f"out:{output}", lambda: _output_path(drv, output))


def _output_path(drv: Derivation, output: str) -> StorePath:
    if output not in drv.outputs:
        raise ValueError(f"{drv.name} has no output {output!r}")
    if drv.fixed_output is not None:
        return StorePath.make("fixed:out", f"sha256:{drv.fixed_output.sha256}", drv.name)
    name = drv.name if output == "out" else f"{drv.name}-{output}"
    return StorePath.make(f"output:{output}", hash_modulo(drv), name)


def output_paths(drv: Derivation) -> dict[str, StorePath]:
    return {o: output_path(drv, o) for o in drv.outputs}


def _document(
    drv: Derivation, input_name: Callable[[Derivation], str], outputs: Any
) -> dict[str, Any]:
    """The one description of a derivation that both its identity and its `.drv` file are made
    from, so the two never diverge; they differ only in how an input derivation is named (by
    its hash, or its `.drv` path) and how the outputs are (by name, or with their paths)."""
    return {
        "name": drv.name,
        "builder": drv.builder,
        "builder_version": drv.builder_version,
        "inputs": {
            role: {"drv": input_name(inp.drv), "output": inp.output}
            if isinstance(inp, DrvInput)
            else {"path": inp.path}
            for role, inp in drv.inputs.items()
        },
        "args": drv.args,
        "env": drv.env,
        "outputs": outputs,
    }


def drv_document(drv: Derivation) -> dict[str, Any]:
    """What the `.drv` file holds: inputs by their `.drv` paths, outputs by their store paths."""
    outputs = {o: str(p) for o, p in output_paths(drv).items()}
    doc = _document(drv, lambda d: str(drv_path(d)), outputs)
    if drv.fixed_output is not None:
        doc["fixed_output"] = {"sha256": drv.fixed_output.sha256}
    return doc


def drv_text(drv: Derivation) -> str:
    return json.dumps(drv_document(drv), sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def drv_references(drv: Derivation) -> list[StorePath]:
    refs = set()
    for inp in drv.inputs.values():
        refs.add(drv_path(inp.drv) if isinstance(inp, DrvInput) else StorePath.parse(inp.path))
    return sorted(refs)


def drv_path(drv: Derivation) -> StorePath:
    """Where the `.drv` file lives: addressed by its text and references, like `Store.add_text`."""
    return _memo(drv, "drv_path", lambda: _drv_path(drv))


def _drv_path(drv: Derivation) -> StorePath:
    text = drv_text(drv)
    digest = blake3.blake3(text.encode()).hexdigest()
    return StorePath.make(
        "text", ":".join([digest, *map(str, drv_references(drv))]), f"{drv.name}.drv"
    )

"""Writing derivations into the store as `.drv` files, and reading them back."""

from __future__ import annotations

import json
from typing import Any

from derivations.errors import DerivationError
from derivations.hashing import drv_path, drv_references, drv_text
from derivations.model import Derivation, DrvInput, SrcInput
from store.local import Store
from store.paths import StorePath


def write_drv(store: Store, drv: Derivation) -> StorePath:
    """Writes `drv` and every derivation it depends on; returns its `.drv` path.

    A valid `.drv` already has all its inputs valid (a path's references always are), so the
    walk stops there: shared inputs of a large graph are visited once, not once per path to them.
    """
    expected = drv_path(drv)
    if store.is_valid(expected):
        return expected
    for inp in drv.inputs.values():
        if isinstance(inp, DrvInput):
            write_drv(store, inp.drv)
        elif not store.is_valid(StorePath.parse(inp.path)):
            raise DerivationError(f"{drv.name} needs {inp.path}, which is not in the store")
    written = store.add_text(expected.name, drv_text(drv), drv_references(drv))
    if written != expected:
        raise DerivationError(f"{drv.name}.drv was written to {written}, expected {expected}")
    return written


def read_drv(
    store: Store, path: StorePath, _seen: dict[StorePath, Derivation] | None = None
) -> Derivation:
    """Loads a `.drv` file (and its inputs) back into a Derivation."""
    seen = {} if _seen is None else _seen
    if path in seen:
        return seen[path]
    if not path.name.endswith(".drv"):
        raise DerivationError(f"{path} is not a derivation (.drv) path")
    try:
        doc: dict[str, Any] = json.loads(store.real_path(path).read_text())
    except (OSError, ValueError) as e:
        raise DerivationError(f"cannot read the derivation {path} ({e})") from None
    inputs: dict[str, DrvInput | SrcInput] = {}
    for role, inp in doc["inputs"].items():
        if "drv" in inp:
            dep = read_drv(store, StorePath.parse(inp["drv"]), seen)
            inputs[role] = DrvInput(drv=dep, output=inp["output"])
        else:
            inputs[role] = SrcInput(path=inp["path"])
    drv = Derivation(
        name=doc["name"],
        builder=doc["builder"],
        builder_version=doc["builder_version"],
        inputs=inputs,
        args=doc["args"],
        env=doc["env"],
        outputs=tuple(doc["outputs"]),
        fixed_output=doc.get("fixed_output"),
    )
    if drv_path(drv) != path:
        raise DerivationError(f"{path} does not hash to its own path; the store may be corrupt")
    seen[path] = drv
    return drv

"""What to build: the derivation model, its hashing, and `.drv` files in the store."""

from derivations.errors import DerivationError
from derivations.hashing import drv_path, hash_modulo, output_path, output_paths
from derivations.model import Derivation, DrvInput, FixedOutput, SrcInput
from derivations.store_io import read_drv, write_drv

__all__ = [
    "Derivation",
    "DerivationError",
    "DrvInput",
    "FixedOutput",
    "SrcInput",
    "drv_path",
    "hash_modulo",
    "output_path",
    "output_paths",
    "read_drv",
    "write_drv",
]

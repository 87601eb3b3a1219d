"""Unpack a tar (plain, gz, bz2, xz, zst) or zip archive into a store path, safely."""

from __future__ import annotations

import os

from builders.base import Args, BuildContext, derive
from builders.errors import BuildError
from derivations.model import Derivation, DrvInput, SrcInput
from store.extract import extract_archive, safe_relative


def unpack_derivation(name: str, src: DrvInput | SrcInput, subdir: str | None = None) -> Derivation:
    """Unpacks `src`; with `subdir`, the output is that directory of the archive (e.g. `python`)."""
    args = {"subdir": subdir} if subdir else {}
    return derive(UnpackBuilder, name, inputs={"src": src}, args=args)


class UnpackArgs(Args):
    subdir: str | None = None  # the archive's directory to take as the output


class UnpackBuilder:
    kind = "unpack"
    version = "1"
    runs_foreign_code = False

    def build(self, ctx: BuildContext) -> None:
        tree = ctx.scratch / "unpacked"
        fmt = extract_archive(ctx.inputs["src"], tree)
        ctx.say(f"unpacked {ctx.input_paths['src']} ({fmt})")
        subdir = ctx.args(UnpackArgs).subdir
        chosen = tree / safe_relative(subdir, "subdir") if subdir else tree
        if subdir and (not chosen.is_dir() or chosen.is_symlink()):
            raise BuildError(f"{ctx.input_paths['src']} has no directory {subdir!r} to take")
        os.rename(chosen, ctx.out)

"""A derivation that runs a program from its input closure, sandboxed (like a Nix builder)."""

from __future__ import annotations

from builders.base import BuildContext
from builders.errors import BuildError
from builders.sandbox import run_command
from derivations.model import Derivation, DrvInput, SrcInput


def command_derivation(
    name: str,
    argv: list[str],
    inputs: dict[str, DrvInput | SrcInput],
    env: dict[str, str] | None = None,
    rootfs: str | None = None,
) -> Derivation:
    """`argv[0]` must live in the input closure; `rootfs` names an input to mount at `/`."""
    args: dict[str, object] = {"argv": argv}
    if rootfs is not None:
        args["rootfs"] = rootfs
    return Derivation(
        name=name,
        builder=CommandBuilder.kind,
        builder_version=CommandBuilder.version,
        inputs=inputs,
        args=args,
        env=env or {},
    )


class CommandBuilder:
    kind = "command"
    version = "1"
    runs_foreign_code = True

    def build(self, ctx: BuildContext) -> None:
        argv = ctx.drv.args.get("argv")
        if not argv or not all(isinstance(a, str) for a in argv):
            raise BuildError(f"{ctx.drv.name} has no argv to run")
        role = ctx.drv.args.get("rootfs")
        rootfs = ctx.inputs[role] if role else None
        run_command(ctx, argv, rootfs)

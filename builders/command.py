"""A derivation that runs a program from its input closure, sandboxed (like a Nix builder)."""

from __future__ import annotations

from builders.base import Args, BuildContext, derive
from builders.errors import BuildError
from builders.sandbox.jail import run_command
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
    return derive(CommandBuilder, name, inputs=inputs, args=args, env=env)


class CommandArgs(Args):
    argv: tuple[str, ...]
    rootfs: str | None = None  # the input to mount at /


class CommandBuilder:
    kind = "command"
    version = "1"
    runs_foreign_code = True

    def build(self, ctx: BuildContext) -> None:
        args = ctx.args(CommandArgs)
        if not args.argv:
            raise BuildError(f"{ctx.drv.name} has no argv to run")
        rootfs = ctx.inputs[args.rootfs] if args.rootfs else None
        run_command(ctx, args.argv, rootfs)

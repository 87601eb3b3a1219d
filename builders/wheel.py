"""One store path per Python distribution: its wheel installed with `installer`.

The wheel is a fixed-output fetch; the install derivation lays it out as
`lib/pythonX.Y/site-packages`, `bin/` and data files. Console scripts get a placeholder
interpreter (`#!/cog/env/bin/python`) because the environment that will run them does not
exist yet; the environment builder rewrites it to its own interpreter. Bytecode is compiled
(builders/bytecode.py) by the target interpreter itself, run in the sandbox over the base and
Python root layers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.exceptions import InstallerError
from installer.sources import WheelFile
from packaging.utils import canonicalize_name

from builders.base import Args, BuildContext, derive
from builders.bytecode import COMPILE_ENV, compile_argv
from builders.errors import BuildError
from builders.fetch import fetch_derivation
from builders.sandbox.jail import run_command
from derivations.model import Derivation, DrvInput, SrcInput
from derivations.pylock import Wheel

PLACEHOLDER_INTERPRETER = "/cog/env/bin/python"


def site_packages(python: str) -> str:
    return f"lib/python{python}/site-packages"


def wheel_file_derivation(pin: Wheel) -> Derivation:
    return fetch_derivation(pin.filename, pin.url, pin.sha256, size=pin.size)


@dataclass(frozen=True)
class Interpreter:
    """The target interpreter a wheel's bytecode is compiled by: a root (the merged base and
    Python layers) to run it in, its path there, and its store path if it is a standalone one."""

    root: Derivation
    path: str
    standalone: Derivation | None = None


def install_derivation(
    wheel: Derivation, dist: str, version: str, filename: str, python: str, interp: Interpreter
) -> Derivation:
    """Installs the wheel file that `wheel` produces (fetched, or built from our sources)."""
    inputs: dict[str, DrvInput | SrcInput] = {"wheel": wheel.dep(), "root": interp.root.dep()}
    if interp.standalone is not None:
        inputs["python"] = interp.standalone.dep()
    return derive(
        WheelBuilder,
        f"python{python}-{canonicalize_name(dist)}-{version}".replace("+", "_"),
        inputs=inputs,
        args={"python": python, "filename": filename, "interpreter": interp.path},
        env=COMPILE_ENV,
    )


def wheel_derivation(pin: Wheel, python: str, interp: Interpreter) -> Derivation:
    wheel = wheel_file_derivation(pin)
    return install_derivation(wheel, pin.name, pin.version, pin.filename, python, interp)


class WheelArgs(Args):
    python: str  # X.Y
    filename: str  # the wheel's file name (installer reads its tags)
    interpreter: str  # compiles the bytecode, in the sandbox


class WheelBuilder:
    kind = "wheel"
    version = "3"  # 3: our own compile loop (marshal's bytes depend on the process's state)
    runs_foreign_code = True  # the target interpreter compiles the bytecode, sandboxed

    def build(self, ctx: BuildContext) -> None:
        args = ctx.args(WheelArgs)
        python = args.python
        build_dir = ctx.scratch / "build"  # the sandbox's /build
        build_dir.mkdir()
        wheel = ctx.scratch / args.filename
        os.symlink(ctx.inputs["wheel"], wheel)  # installer reads the name for the tags
        tree = build_dir / "tree"
        lib = tree / site_packages(python)
        scheme = {
            "purelib": str(lib),
            "platlib": str(lib),
            "scripts": str(tree / "bin"),
            "data": str(tree),
            "headers": str(tree / "include" / f"python{python}"),
        }
        destination = SchemeDictionaryDestination(
            scheme, interpreter=PLACEHOLDER_INTERPRETER, script_kind="posix"
        )
        try:
            with WheelFile.open(wheel) as source:
                install(source, destination, additional_metadata={"INSTALLER": b"cog\n"})
        except (InstallerError, ValueError, OSError) as e:
            raise BuildError(f"installing {wheel.name} failed: {e}") from None
        if lib.is_dir():
            site = site_packages(python)
            argv = compile_argv(args.interpreter, f"/build/tree/{site}", f"{ctx.out_path}/{site}")
            run_command(ctx, argv, rootfs=ctx.inputs["root"], output=False)
        os.rename(tree, ctx.out)
        ctx.say(f"installed {wheel.name}")

"""One store path per Python distribution: its wheel installed with `installer`.

The wheel is a fixed-output fetch; the install derivation lays it out as
`lib/pythonX.Y/site-packages`, `bin/` and data files. Console scripts get a placeholder
interpreter (`#!/cog/env/bin/python`) because the environment that will run them does not
exist yet; the environment builder rewrites it to its own interpreter. Bytecode is compiled
with `--invalidation-mode unchecked-hash` (imports never look at mtimes, so they never try to
write to the read-only store) by the target's Python version, with a fixed hash seed so the
.pyc bytes do not vary from one build to the next.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.exceptions import InstallerError
from installer.sources import WheelFile
from packaging.utils import canonicalize_name

from builders.base import BuildContext
from builders.errors import BuildError
from builders.fetch import fetch_derivation
from derivations.model import Derivation
from derivations.pylock import Wheel

PLACEHOLDER_INTERPRETER = "/cog/env/bin/python"


def site_packages(python: str) -> str:
    return f"lib/python{python}/site-packages"


def wheel_file_derivation(pin: Wheel) -> Derivation:
    return fetch_derivation(pin.filename, pin.url, pin.sha256)


def install_derivation(
    wheel: Derivation, dist: str, version: str, filename: str, python: str
) -> Derivation:
    """Installs the wheel file that `wheel` produces (fetched, or built from our sources)."""
    return Derivation(
        name=f"python{python}-{canonicalize_name(dist)}-{version}".replace("+", "_"),
        builder=WheelBuilder.kind,
        builder_version=WheelBuilder.version,
        inputs={"wheel": wheel.dep()},
        args={"python": python, "filename": filename},
    )


def wheel_derivation(pin: Wheel, python: str) -> Derivation:
    return install_derivation(
        wheel_file_derivation(pin), pin.name, pin.version, pin.filename, python
    )


def compile_bytecode(tree: Path, final: str, python: str) -> None:
    """Compiles every .py under `tree` as it will live at `final` (tracebacks show that)."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" != python:
        return  # .pyc is version-specific; left uncompiled rather than compiled wrongly
    code = (
        "import compileall, py_compile, sys\n"
        "ok = compileall.compile_dir(sys.argv[1], quiet=1, ddir=sys.argv[2], workers=1,\n"
        "    invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)\n"
        "sys.exit(0 if ok else 1)\n"
    )
    env = {"PYTHONHASHSEED": "0", "PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8"}
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tree), final], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise BuildError(f"compiling bytecode failed: {proc.stdout.strip()[-300:]}")


class WheelBuilder:
    kind = "wheel"
    version = "1"
    runs_foreign_code = False  # installing a wheel only copies files

    def build(self, ctx: BuildContext) -> None:
        python: str = ctx.drv.args["python"]
        wheel = ctx.scratch / ctx.drv.args["filename"]
        os.symlink(ctx.inputs["wheel"], wheel)  # installer reads the name for the tags
        out = ctx.out
        lib = out / site_packages(python)
        scheme = {
            "purelib": str(lib),
            "platlib": str(lib),
            "scripts": str(out / "bin"),
            "data": str(out),
            "headers": str(out / "include" / f"python{python}"),
        }
        destination = SchemeDictionaryDestination(
            scheme, interpreter=PLACEHOLDER_INTERPRETER, script_kind="posix"
        )
        try:
            with WheelFile.open(wheel) as source:
                install(source, destination, additional_metadata={"INSTALLER": b"cog\n"})
        except (InstallerError, ValueError, OSError) as e:
            raise BuildError(f"installing {wheel.name} failed: {e}") from None
        compile_bytecode(lib, f"{ctx.out_path}/{site_packages(python)}", python)
        ctx.say(f"installed {wheel.name}")

"""A Python environment as a store path: venv-style, over installed wheel paths.

`pyvenv.cfg` names the interpreter's home, so `bin/python` is a venv interpreter; its
site-packages is a farm of symlinks into the wheel paths (one link per top-level entry,
directories shared by several distributions, such as namespace packages, merged one level
down). Identical files are shared, and so is the bytecode of one source compiled in two wheels
(the first wins); two distributions that ship different files at one path are
an error naming both. Console scripts are copied with their placeholder interpreter replaced by
this environment's `bin/python`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from builders.base import Args, BuildContext
from builders.errors import BuildError
from builders.wheel import PLACEHOLDER_INTERPRETER, site_packages
from derivations.model import Derivation, DrvInput, SrcInput


def env_derivation(
    name: str,
    python: str,
    interpreter: str,
    wheels: list[Derivation],
    interpreter_input: DrvInput | SrcInput | None = None,
) -> Derivation:
    """`interpreter` is the absolute path of the python binary inside the image; with
    `interpreter_input`, that binary is taken from the input's tree into a store path of its
    own (a store path may not link outside the store), which every environment links to."""
    inputs: dict[str, DrvInput | SrcInput] = {
        f"wheel-{i:04d}": w.dep() for i, w in enumerate(sorted(wheels, key=lambda d: d.name))
    }
    if interpreter_input is not None:
        binary = Derivation(
            name=f"python{python}-binary",
            builder=BinaryBuilder.kind,
            builder_version=BinaryBuilder.version,
            inputs={"tree": interpreter_input},
            args={"path": interpreter},
        )
        inputs["interpreter"] = binary.dep()
    return Derivation(
        name=name,
        builder=EnvBuilder.kind,
        builder_version=EnvBuilder.version,
        inputs=inputs,
        args={"python": python, "interpreter": interpreter},
    )


def _same(a: Path, b: Path) -> bool:
    return hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()


def _same_source_bytecode(a: Path, b: Path) -> bool:
    """Two hash-based .pyc files of one source (a namespace package's `__init__.py` that many
    wheels ship, say): each wheel's bytecode names its own store path, so only the header, which
    holds the source's hash, can say they are the same module."""
    if not (a.suffix == b.suffix == ".pyc" and a.parent.name == "__pycache__" and b.is_file()):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        head = fa.read(16)
        flags = int.from_bytes(head[4:8], "little")
        return len(head) == 16 and flags & 1 == 1 and head == fb.read(16)


class BinaryArgs(Args):
    path: str  # the interpreter's path in its root layer


class EnvArgs(Args):
    python: str  # X.Y
    interpreter: str  # the interpreter's path at run time


class BinaryBuilder:
    """The interpreter binary of a root layer, as a store path (one file) of its own."""

    kind = "python-binary"
    version = "1"
    runs_foreign_code = False

    def build(self, ctx: BuildContext) -> None:
        path = ctx.args(BinaryArgs).path
        source = ctx.inputs["tree"] / path.lstrip("/")
        if not source.is_file():
            raise BuildError(f"{ctx.drv.name}: the interpreter {path} is not in its input")
        ctx.out.write_bytes(source.resolve().read_bytes())
        ctx.out.chmod(0o755)


class EnvBuilder:
    kind = "pyenv"
    version = "2"
    runs_foreign_code = False

    def build(self, ctx: BuildContext) -> None:
        args = ctx.args(EnvArgs)
        python, interpreter = args.python, args.interpreter
        out = ctx.out
        (out / "bin").mkdir(parents=True)
        lib = out / site_packages(python)
        lib.mkdir(parents=True)
        home = os.path.dirname(interpreter)
        (out / "pyvenv.cfg").write_text(
            f"home = {home}\ninclude-system-site-packages = false\nversion = {python}\n"
        )
        self._interpreter(ctx, interpreter, python)
        owners: dict[str, _Owner] = {}
        for role in sorted(r for r in ctx.inputs if r.startswith("wheel-")):
            real = ctx.inputs[role]
            logical = str(ctx.input_paths[role])
            dist = ctx.input_paths[role].name
            sp = site_packages(python)
            self._link_tree(real / sp, f"{logical}/{sp}", lib, dist, owners)
            self._scripts(real / "bin", f"{logical}/bin", ctx, dist)
        ctx.say(f"environment of {len(owners)} top-level entries")

    def _interpreter(self, ctx: BuildContext, interpreter: str, python: str) -> None:
        # A link, as `python -m venv` makes: to the binary's own store path, or to a
        # python-build-standalone interpreter's. Never a copy in each environment.
        target = ctx.out / "bin" / "python"
        binary = ctx.input_paths.get("interpreter")
        os.symlink(str(binary) if binary is not None else interpreter, target)
        for alias in ("python3", f"python{python}"):
            os.symlink("python", ctx.out / "bin" / alias)

    def _link_tree(
        self, real: Path, logical: str, into: Path, dist: str, owners: dict[str, _Owner]
    ) -> None:
        if not real.is_dir():
            return
        for entry in sorted(os.listdir(real)):
            source, target = real / entry, into / entry
            prior = owners.get(str(target))
            if prior is None:
                os.symlink(f"{logical}/{entry}", target)
                owners[str(target)] = _Owner(dist, source, f"{logical}/{entry}")
            elif source.is_dir() and not source.is_symlink() and prior.real.is_dir():
                if target.is_symlink():  # first sharing: the link becomes a directory of links
                    target.unlink()
                    target.mkdir()
                    self._link_tree(prior.real, prior.logical, target, prior.dist, owners)
                self._link_tree(source, f"{logical}/{entry}", target, dist, owners)
            elif source.is_file() and prior.real.is_file() and _same(source, prior.real):
                continue  # the very same file from two distributions
            elif _same_source_bytecode(source, prior.real):
                continue  # the first (in input order) wins: only the path it names differs
            else:
                where = str(target).split("site-packages/", 1)[-1]
                raise BuildError(f"{dist} and {prior.dist} both install {where}, differently")

    def _scripts(self, real: Path, logical: str, ctx: BuildContext, dist: str) -> None:
        if not real.is_dir():
            return
        python = f"{ctx.out_path}/bin/python".encode()
        placeholder = b"#!" + PLACEHOLDER_INTERPRETER.encode()
        for script in sorted(real.iterdir()):
            target = ctx.out / "bin" / script.name
            if target.exists() or target.is_symlink():
                raise BuildError(f"{dist} and another distribution both install bin/{script.name}")
            data = script.read_bytes()
            if data.startswith(placeholder):
                target.write_bytes(b"#!" + python + data[len(placeholder) :])
                target.chmod(0o755)
            else:
                os.symlink(f"{logical}/{script.name}", target)


@dataclass(frozen=True)
class _Owner:
    dist: str
    real: Path  # where the entry is on disk now
    logical: str  # its /cog/store path, which the link names

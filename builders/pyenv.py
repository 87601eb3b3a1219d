"""A Python environment as a store path: venv-style, over installed wheel paths.

`pyvenv.cfg` names the interpreter's home, so `bin/python` is a venv interpreter; its
site-packages is a farm of symlinks into the wheel paths (one link per top-level entry,
directories shared by several distributions, such as namespace packages, merged one level
down). Console scripts are copied with their placeholder interpreter replaced by this
environment's `bin/python`.

Two distributions that install one path are settled as pip settles them: the later install
wins, as pip overwrites another distribution's file (a script too). "Later" is the order of
the environment's inputs, which `env_derivation` sorts by derivation name
(`python3.11-tensorboard-…` before `python3.11-tensorflow-…`): the same on every machine, so
the environment is a function of its inputs alone. Identical bytes keep the first install
(the content is the same either way), and so does the bytecode of one source compiled in two
wheels; differing bytes are overwritten with a warning in the build's log and on stderr. A
file against a directory is an error naming both, as pip fails on it too.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from builders.base import Args, BuildContext, derive
from builders.errors import BuildError
from builders.root_site import PTH as ROOT_SITE_PTH
from builders.root_site import write as write_root_site
from builders.wheel import PLACEHOLDER_INTERPRETER, site_packages
from derivations.model import Derivation, DrvInput, SrcInput


def env_derivation(
    name: str,
    python: str,
    interpreter: str,
    wheels: list[Derivation],
    interpreter_input: DrvInput | SrcInput | None = None,
    root_site: bool = False,
) -> Derivation:
    """`interpreter` is the absolute path of the python binary inside the image; with
    `interpreter_input`, that binary is taken from the input's tree into a store path of its
    own (a store path may not link outside the store), which every environment links to.
    With `root_site` (the model's environment), its pip installs on the image's root and its
    Python reads what was installed there (builders.root_site)."""
    inputs: dict[str, DrvInput | SrcInput] = {
        f"wheel-{i:04d}": w.dep() for i, w in enumerate(sorted(wheels, key=lambda d: d.name))
    }
    if interpreter_input is not None:
        binary = derive(
            BinaryBuilder,
            f"python{python}-binary",
            inputs={"tree": interpreter_input},
            args={"path": interpreter},
        )
        inputs["interpreter"] = binary.dep()
    args: dict[str, object] = {"python": python, "interpreter": interpreter}
    if root_site:
        args["root_site"] = True
    return derive(EnvBuilder, name, inputs=inputs, args=args)


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
    root_site: bool = False  # pip installs into /usr/local, which the Python reads


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
    # Still 2 with later-wins: an environment that built before (no clashes, or clashes of
    # identical bytes) builds the very same tree; only inputs that were refused build now.
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
        farm = _Farm(ctx)
        sp = site_packages(python)
        for role in sorted(r for r in ctx.inputs if r.startswith("wheel-")):  # the install order
            real = ctx.inputs[role]
            logical = str(ctx.input_paths[role])
            dist = ctx.input_paths[role].name
            farm.link_tree(real / sp, f"{logical}/{sp}", lib, dist)
            farm.scripts(real / "bin", f"{logical}/bin", dist)
        farm.drop_stale_bytecode()
        if args.root_site:
            if os.path.lexists(lib / ROOT_SITE_PTH):
                raise BuildError(f"a distribution installs {ROOT_SITE_PTH} itself")
            write_root_site(out, str(ctx.out_path), sp, python)
        ctx.say(f"environment of {len(farm.owners)} top-level entries")

    def _interpreter(self, ctx: BuildContext, interpreter: str, python: str) -> None:
        # A link, as `python -m venv` makes: to the binary's own store path, or to a
        # python-build-standalone interpreter's. Never a copy in each environment.
        target = ctx.out / "bin" / "python"
        binary = ctx.input_paths.get("interpreter")
        os.symlink(str(binary) if binary is not None else interpreter, target)
        for alias in ("python3", f"python{python}"):
            os.symlink("python", ctx.out / "bin" / alias)


@dataclass(frozen=True)
class _Owner:
    dist: str
    real: Path  # where the entry is on disk now
    logical: str  # its /cog/store path, which the link names


@dataclass(frozen=True)
class _Script:
    dist: str
    digest: bytes  # sha256 of the bytes the environment holds (after the shebang rewrite)


class _Farm:
    """One environment's tree as the distributions are installed into it, in order."""

    def __init__(self, ctx: BuildContext) -> None:
        self.ctx = ctx
        self.owners: dict[str, _Owner] = {}  # a path in the output -> who installed it
        self.installed_scripts: dict[str, _Script] = {}
        self.overwritten_sources: set[str] = set()  # .py files a later distribution replaced

    def link_tree(self, real: Path, logical: str, into: Path, dist: str) -> None:
        if not real.is_dir():
            return
        for entry in sorted(os.listdir(real)):
            source, target = real / entry, into / entry
            prior = self.owners.get(str(target))
            if prior is None:
                self._link(source, f"{logical}/{entry}", target, dist)
            elif source.is_dir() and not source.is_symlink() and prior.real.is_dir():
                self._as_directory(target)
                self.link_tree(source, f"{logical}/{entry}", target, dist)
            elif source.is_file() and prior.real.is_file():
                if _same(source, prior.real) or _same_source_bytecode(source, prior.real):
                    continue  # one content: the first install's link stays
                target.unlink()
                self._link(source, f"{logical}/{entry}", target, dist)
                if target.suffix == ".py":
                    self.overwritten_sources.add(str(target))
                if target.parent.name != "__pycache__":  # bytecode follows its source, unsaid
                    self._warn(dist, prior.dist, _in_site_packages(target))
            else:
                raise BuildError(
                    f"{dist} and {prior.dist} both install {_in_site_packages(target)}, "
                    "one as a file and one as a directory"
                )

    def scripts(self, real: Path, logical: str, dist: str) -> None:
        if not real.is_dir():
            return
        python = f"{self.ctx.out_path}/bin/python".encode()
        placeholder = b"#!" + PLACEHOLDER_INTERPRETER.encode()
        for script in sorted(real.iterdir()):
            target = self.ctx.out / "bin" / script.name
            data = script.read_bytes()
            rewritten = data.startswith(placeholder)
            if rewritten:
                data = b"#!" + python + data[len(placeholder) :]
            digest = hashlib.sha256(data).digest()
            prior = self.installed_scripts.get(script.name)
            if prior is not None:
                if prior.digest == digest:
                    continue  # tensorflow's bin/tensorboard is tensorboard's, byte for byte
                self._warn(dist, prior.dist, f"bin/{script.name}")
                target.unlink()
            elif os.path.lexists(target):
                raise BuildError(
                    f"{dist} installs bin/{script.name}, the environment's own interpreter"
                )
            if rewritten:
                target.write_bytes(data)
                target.chmod(0o755)
            else:
                os.symlink(f"{logical}/{script.name}", target)
            self.installed_scripts[script.name] = _Script(dist, digest)

    def drop_stale_bytecode(self) -> None:
        """A replaced module keeps no bytecode of the source it replaced. The bytecode is
        unchecked (never compared with its source at import), so where the winner has none
        (its source did not compile for this Python), the loser's would run instead."""
        for source in sorted(self.overwritten_sources):
            target = Path(source)
            winner = self.owners[source].real.parent / "__pycache__"
            cache = target.parent / "__pycache__"
            if not cache.is_dir():
                continue
            stale = [
                name
                for name in sorted(os.listdir(cache))
                if name.split(".", 1)[0] == target.stem
                and name.endswith(".pyc")
                and not (winner / name).is_file()
            ]
            if stale:
                self._as_directory(cache)
            for name in stale:
                (cache / name).unlink()
                del self.owners[str(cache / name)]

    def _link(self, source: Path, logical: str, target: Path, dist: str) -> None:
        os.symlink(logical, target)
        self.owners[str(target)] = _Owner(dist, source, logical)

    def _as_directory(self, target: Path) -> None:
        """A directory linked whole becomes a directory of links, when a second distribution
        shares it or one of its entries must change."""
        if not target.is_symlink():
            return
        prior = self.owners[str(target)]
        target.unlink()
        target.mkdir()
        self.link_tree(prior.real, prior.logical, target, prior.dist)

    def _warn(self, later: str, earlier: str, where: str) -> None:
        line = (
            f"warning: {earlier} and {later} both install {where}, differently: {later}'s is "
            "kept (the later install wins, as with pip)"
        )
        self.ctx.say(line)
        print(line, file=sys.stderr)


def _in_site_packages(target: Path) -> str:
    return str(target).split("site-packages/", 1)[-1]

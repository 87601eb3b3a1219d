"""Our own packages as wheels: the `cog` SDK (for the model's environment) and the runtime.

Their sources are added to the store as content-addressed paths (editing the SDK gives a new
path, and so a new SDK layer); the `pywheel` builder zips one into a wheel deterministically:
sorted entries, fixed timestamps and modes, one compression level. The SDK is the `cog`
package without the command and its services (`cog/cli`, `cog/project`, `cog/doctor`); the
runtime wheel holds `runtime/`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import zipfile
from pathlib import Path

from builders.base import Args, BuildContext, derive
from builders.wheel import Interpreter, install_derivation
from derivations.model import Derivation, SrcInput
from store.local import Store
from store.paths import StorePath

REPO = Path(__file__).resolve().parent.parent
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _version() -> str:
    """The SDK's version, read from its source: the SDK reaches a build as an input (its
    files), never as a module of this process."""
    text = (REPO / "cog" / "__init__.py").read_text()
    found = re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE)
    assert found is not None, "cog/__init__.py sets no __version__"
    return found.group(1)


def add_sources(store: Store, package: str, dist: str, exclude: tuple[str, ...] = ()) -> StorePath:
    """The package's .py files (and data), minus `exclude` and caches, as a store path."""
    source = REPO / package
    with store.temp_dir("sdk-") as tmp:  # owned: a later run can tell a leftover
        tree = Path(tmp) / package
        for dirpath, dirnames, filenames in os.walk(source):
            rel = os.path.relpath(dirpath, source)
            dirnames[:] = sorted(
                d
                for d in dirnames
                if d != "__pycache__" and os.path.normpath(os.path.join(rel, d)) not in exclude
            )
            for name in sorted(filenames):
                if name.endswith((".pyc", ".pyo")):
                    continue
                target = tree / rel / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(Path(dirpath) / name, target)
        return store.add(Path(tmp), f"{dist}-src")


def wheel_of_sources(src: StorePath, dist: str, version: str) -> Derivation:
    return derive(
        PyWheelBuilder,
        f"{dist}-{version}-py3-none-any.whl",
        inputs={"src": SrcInput(path=str(src))},
        args={"dist": dist, "version": version},
    )


def sdk_install(store: Store, python: str, interp: Interpreter) -> Derivation:
    """The `cog` SDK installed for `python` (it goes into the model's environment)."""
    src = add_sources(store, "cog", "cog", exclude=("cli", "project", "doctor"))
    wheel = wheel_of_sources(src, "cog", _version())
    return install_derivation(wheel, "cog", _version(), wheel.name, python, interp)


def runtime_install(store: Store, python: str, interp: Interpreter) -> Derivation:
    """Our server, `runtime/`, installed for `python` (it goes into the runtime environment)."""
    src = add_sources(store, "runtime", "cog_runtime")
    wheel = wheel_of_sources(src, "cog_runtime", _version())
    return install_derivation(wheel, "cog_runtime", _version(), wheel.name, python, interp)


class PyWheelArgs(Args):
    dist: str
    version: str


class PyWheelBuilder:
    kind = "pywheel"
    version = "1"
    runs_foreign_code = False

    def build(self, ctx: BuildContext) -> None:
        args = ctx.args(PyWheelArgs)
        dist, version = args.dist, args.version
        info = f"{dist}-{version}.dist-info"
        files: list[tuple[str, bytes]] = []
        root = ctx.inputs["src"]
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath) / name
                files.append((path.relative_to(root).as_posix(), path.read_bytes()))
        files.append(
            (
                f"{info}/METADATA",
                f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode(),
            )
        )
        files.append(
            (
                f"{info}/WHEEL",
                b"Wheel-Version: 1.0\nGenerator: cog\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
            )
        )
        record = "".join(
            f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}\n"
            for name, data in files
        )
        files.append((f"{info}/RECORD", (record + f"{info}/RECORD,,\n").encode()))
        with zipfile.ZipFile(ctx.out, "w") as z:
            for name, data in files:
                entry = zipfile.ZipInfo(name, ZIP_TIME)
                entry.external_attr = 0o644 << 16
                entry.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(entry, data, compresslevel=6)
        ctx.say(f"wrote {ctx.drv.name} ({len(files)} files)")

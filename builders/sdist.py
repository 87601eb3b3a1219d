"""A wheel built from an sdist: in the sandbox, without network, by the target interpreter.

The build runs over a root of its own: the base, Debian's Python, a toolchain layer (the
channel's gcc, g++, libc6-dev, make, binutils and, for Debian's Python, its -dev headers, all
pinned in cog.lock) and the system packages. That root is only ever a build input: the image
never holds the compilers. The locked build requirements are installed as wheels into a build
environment over the target interpreter, and a small PEP 517 frontend calls the backend's
`build_wheel` in `/build/src`.

The same sdist gives the same wheel bytes on any machine: a fixed build directory, file-prefix
maps so no path of the build lands in an object file, SOURCE_DATE_EPOCH and a fixed hash seed,
then the wheel is rewritten (entries sorted with .dist-info last, stored uncompressed so no
zlib version shows, fixed timestamps and permissions, RECORD regenerated).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import re
import stat
import zipfile

from packaging.utils import canonicalize_name

from builders.base import Args, BuildContext, derive
from builders.errors import BuildError, SandboxUnavailable
from builders.fetch import fetch_derivation
from builders.pyenv import env_derivation
from builders.rootfs import root_layer_derivation
from builders.rootview import view_derivation
from builders.sandbox.jail import read_result, run_command
from builders.userland import Userland
from builders.wheel import Interpreter, install_derivation, wheel_derivation
from derivations.apt import DebPin
from derivations.buildreqs import LOAD_BACKEND, SdistError, build_system, unpack_sdist
from derivations.hashing import output_path
from derivations.model import Derivation, DrvInput, SrcInput
from derivations.pylock import Wheel

SOURCE_DATE_EPOCH = "315532800"  # 1980-01-01, the earliest time a zip entry can hold
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
# No build path in object files or __FILE__; one seed for gcc's otherwise random names. As
# CPPFLAGS, which setuptools appends to the interpreter's flags (CFLAGS would replace -O2 …).
CPPFLAGS = "-ffile-prefix-map=/build/src=. -frandom-seed=cog"
MAX_WHEEL = 4 << 30


def build_root(land: Userland, toolchain: tuple[DebPin, ...], arch: str) -> Derivation:
    """Where sdists are built: the image's root layers with the toolchain layer stacked in."""
    layer = root_layer_derivation(
        "rootfs-toolchain", toolchain, arch, [land.base, land.python_layer]
    )
    return view_derivation(
        "sdist-build-root", [land.base, land.python_layer, layer, *land.tool_layers, land.system]
    )


def sdist_wheel_derivation(pin: Wheel, python: str, land: Userland, root: Derivation) -> Derivation:
    """The wheel file built from `pin`'s sdist."""
    interp = Interpreter(land.python_root, land.interpreter, land.python)
    requires = [wheel_derivation(w, python, interp) for w in pin.build_requires]
    # Named by Python only, so sdists with the same build requirements share one environment.
    env = env_derivation(
        f"python{python}-sdist-build-env",
        python,
        land.interpreter,
        requires,
        (land.python or land.python_layer).dep(),
    )
    inputs: dict[str, DrvInput | SrcInput] = {
        "src": fetch_derivation(pin.filename, pin.url, pin.sha256, size=pin.size).dep(),
        "env": env.dep(),
        "root": root.dep(),
    }
    environment = {
        "PATH": f"{output_path(env)}/bin:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
        "PYTHONHASHSEED": "0",
        "PYTHONNOUSERSITE": "1",
        "PYTHONUNBUFFERED": "1",  # the backend's lines and the compiler's, in order in the log
        "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH,
        "CPPFLAGS": CPPFLAGS,
    }
    if land.python is not None:
        inputs["python"] = land.python.dep()
        # A standalone interpreter names the compiler it was built with; ours is the layer's.
        environment |= {"CC": "gcc", "CXX": "g++", "LDSHARED": "gcc -shared"}
    name = canonicalize_name(pin.name)
    return derive(
        SdistBuilder,
        f"python{python}-{name}-{pin.version}-wheel".replace("+", "_"),
        inputs=inputs,
        args={"package": pin.name, "version": pin.version},
        env=environment,
    )


def sdist_derivation(
    pin: Wheel, python: str, interp: Interpreter, land: Userland, root: Derivation
) -> Derivation:
    """`pin`'s sdist built into a wheel, then installed like any wheel."""
    wheel = sdist_wheel_derivation(pin, python, land, root)
    # installer reads only the project's name from the file name (to find its .dist-info);
    # the tags are known only once built, and the WHEEL file inside says them truly.
    filename = f"{re.sub(r'[-_.]+', '_', pin.name)}-{pin.version}-py3-none-any.whl"
    return install_derivation(wheel, pin.name, pin.version, filename, python, interp)


_FRONTEND = (
    """\
import importlib, json, os, re, shutil, sys
from importlib.metadata import PackageNotFoundError, distribution

spec = json.load(open("/build/backend.json"))
os.chdir("/build/src")
"""
    + LOAD_BACKEND
    + """\
missing = []
for req in hook({}) if hook is not None else ():
    try:
        distribution(re.split(r"[\\s;<>=!~\\[(@]", req.strip(), maxsplit=1)[0])
    except PackageNotFoundError:
        missing.append(req)
if missing:
    sys.exit("error: the build backend asks for " + ", ".join(missing)
             + ", which cog.lock does not pin; run `cog lock` again")
os.makedirs("/build/dist", exist_ok=True)  # the frontend's to make (meson-python never does)
name = backend.build_wheel("/build/dist", {})
shutil.copyfile(os.path.join("/build/dist", name), "/build/wheel.whl")
with open("/build/wheel-name", "w") as f:
    f.write(name)
"""
)


class SdistArgs(Args):
    package: str
    version: str


class SdistBuilder:
    kind = "sdist"
    version = "1"
    runs_foreign_code = True  # the package's own build backend and compilers

    def build(self, ctx: BuildContext) -> None:
        args = ctx.args(SdistArgs)
        package = f"{args.package} {args.version}"
        if not ctx.sandbox:
            raise SandboxUnavailable(
                f"building {package} from its sdist needs the sandbox (its toolchain is a root "
                "layer, never the host's compiler)",
                hint="install bubblewrap and build without --no-sandbox",
            )
        build = ctx.scratch / "build"  # the sandbox's /build
        build.mkdir()
        try:
            src = unpack_sdist(ctx.inputs["src"], ctx.scratch / "unpacked")
            system = build_system(src)
        except SdistError as e:
            raise BuildError(f"building {package} from its sdist failed: {e}") from None
        os.rename(src, build / "src")
        spec = {"backend": system.backend, "backend_path": list(system.backend_path)}
        (build / "backend.json").write_text(json.dumps(spec))
        (build / "frontend.py").write_text(_FRONTEND)
        ctx.say(f"building {package} with {system.backend}")
        python = f"{ctx.input_paths['env']}/bin/python"
        try:
            run_command(ctx, [python, "/build/frontend.py"], ctx.inputs["root"], output=False)
        except BuildError as e:
            raise BuildError(f"building {package} from its sdist failed ({e})") from None
        name = read_result(ctx, "wheel-name", 1024).decode(errors="replace")
        ctx.out.write_bytes(normalise_wheel(read_result(ctx, "wheel.whl", MAX_WHEEL), package))
        ctx.say(f"built {name}")


def _digest(data: bytes) -> str:
    raw = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"sha256={raw.decode()}"


def normalise_wheel(data: bytes, package: str) -> bytes:
    """The wheel rewritten so its bytes depend only on its files' contents and modes."""
    files: dict[str, tuple[bytes, bool]] = {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as wheel:
            for info in wheel.infolist():
                mode = info.external_attr >> 16
                if info.is_dir():
                    continue
                if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
                    raise BuildError(
                        f"the wheel built for {package} holds {info.filename!r}, "
                        "which is not a regular file"
                    )
                files[info.filename] = (wheel.read(info), bool(mode & 0o111))
    except zipfile.BadZipFile as e:
        raise BuildError(f"the backend of {package} wrote no readable wheel ({e})") from None
    tops = {n.split("/", 1)[0] for n in files if n.split("/", 1)[0].endswith(".dist-info")}
    if len(tops) != 1:
        raise BuildError(f"the wheel built for {package} has {len(tops)} .dist-info directories")
    record = f"{tops.pop()}/RECORD"
    files.pop(record, None)
    dist_info = record.rsplit("/", 1)[0] + "/"
    order = sorted(files, key=lambda n: (n.startswith(dist_info), n))
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    for name in order:
        writer.writerow([name, _digest(files[name][0]), len(files[name][0])])
    writer.writerow([record, "", ""])
    files[record] = (rows.getvalue().encode(), False)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as wheel:
        for name in [*order, record]:
            content, executable = files[name]
            info = zipfile.ZipInfo(name, ZIP_DATE)
            info.create_system = 3  # unix, so the modes below are read
            info.external_attr = (0o100755 if executable else 0o100644) << 16
            wheel.writestr(info, content)
    return out.getvalue()

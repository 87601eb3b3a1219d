"""Packages published only as sdists: locked with their build requirements and a toolchain,
built into wheels in the sandbox (the channel's gcc, no network), reproducibly.

Offline: fire 0.5.0 (pure Python) and crcmod 1.7 (a C extension) come from the wheel cache
`make test-fixtures` fills, the toolchain's .debs from the frozen Debian mirror.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

from builders.sdist import normalise_wheel
from tests.projects import WHEELS, cog, project
from tests.wheels import make_sdist

PREDICT = """\
import crcmod._crcfunext  # the C extension, compiled in the sandbox
import crcmod.predefined
import fire
from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self, text: str) -> str:
        crc = crcmod.predefined.mkCrcFun("crc-32")(text.encode())
        compiled = crcmod._crcfunext.__file__.endswith(".so")
        return f"{fire.__name__} {compiled} {crc:08x}"
"""


def sdist_project(tmp_path: Path, name: str, requirements: list[str]) -> Path:
    """hello-world whose python_packages also name `requirements`."""
    root = project("hello-world", tmp_path / name)
    config = root / "cog.yaml"
    index = ["--no-index", f"--find-links {WHEELS}"]
    text = config.read_text()
    assert json.dumps(index) in text
    config.write_text(text.replace(json.dumps(index), json.dumps([*index, *requirements])))
    return root


def built_wheels(store_dir: Path, name: str) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in store_dir.rglob(f"*-{name}-wheel")
        if p.is_file()
    }


def test_sdists_lock_build_and_import(offline: dict[str, str], tmp_path: Path) -> None:
    root = sdist_project(tmp_path, "a", ["fire==0.5.0", "crcmod==1.7"])
    assert (result := cog(root, offline, "lock")).returncode == 0, result.stderr[-3000:]
    lock = json.loads((root / "cog.lock").read_text())
    pins = {p["name"]: p for p in lock["python_packages"]}
    assert pins["crcmod"]["url"].endswith("crcmod-1.7.tar.gz")
    assert pins["fire"]["url"].endswith("fire-0.5.0.tar.gz")
    assert {"setuptools", "wheel"} <= {w["name"] for w in pins["crcmod"]["build_requires"]}
    assert all(w["url"].endswith(".whl") for w in pins["crcmod"]["build_requires"])
    assert pins["six"]["url"].endswith(".whl")  # wheels stay preferred
    toolchain = {p["name"] for p in lock["system"]["toolchain"]}
    assert {"gcc", "libc6-dev", "python3.11-dev"} <= toolchain
    # Locking again (the sdist pins handed back to uv as preferences) keeps the same bytes,
    # and so does locking from nothing.
    before = (root / "cog.lock").read_bytes()
    assert cog(root, offline, "lock").returncode == 0
    assert (root / "cog.lock").read_bytes() == before
    again = sdist_project(tmp_path, "b", ["fire==0.5.0", "crcmod==1.7"])
    assert cog(again, offline, "lock").returncode == 0
    assert (again / "cog.lock").read_bytes() == (root / "cog.lock").read_bytes()

    (root / "predict.py").write_text(PREDICT)
    result = cog(root, offline, "predict", "-i", "text=hello")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "fire True 3610a686"

    # A second empty store builds the very same wheels, byte for byte.
    first = Path(offline["COG_STORE_DIR"])
    other = offline | {"COG_STORE_DIR": str(tmp_path / "store-2"), "TZ": "Asia/Tokyo"}
    check = "import fire, crcmod._crcfunext; print('ok')"
    result = cog(again, other, "exec", "python", "-c", check, umask=0o077)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
    for name in ("crcmod-1.7", "fire-0.5.0"):
        wheels = built_wheels(first, name)
        assert wheels and wheels == built_wheels(tmp_path / "store-2", name)
    # The compilers built the wheel; they are not in the image.
    build = cog(root, offline, "build", "--no-docker-load")
    assert build.returncode == 0, build.stderr[-3000:]
    assert "toolchain" not in build.stdout


def bad_sdist(into: Path) -> Path:
    """badext 0.1: a setuptools sdist whose C file does not compile."""
    files = {
        "setup.py": "from setuptools import Extension, setup\n"
        'setup(name="badext", version="0.1", '
        'ext_modules=[Extension("badext", ["badext.c"])])\n',
        "badext.c": "int broken(void) { return 1 +; }\n",
        "PKG-INFO": "Metadata-Version: 2.1\nName: badext\nVersion: 0.1\n",
    }
    make_sdist(into, "badext-0.1", files)
    return into


def test_failing_sdist_names_package_and_compiler_error(
    offline: dict[str, str], tmp_path: Path
) -> None:
    links = bad_sdist(tmp_path / "links")
    root = sdist_project(tmp_path, "bad", [f"--find-links {links}", "badext==0.1"])
    result = cog(root, offline, "build", "--no-docker-load")
    assert result.returncode != 0
    assert "building badext 0.1 from its sdist failed" in result.stderr
    assert "badext.c" in result.stderr and "error:" in result.stderr  # gcc's own words
    assert "Traceback" not in result.stderr


# A backend that writes its wheel into the folder it is given and never makes it, as
# meson-python (pycairo, numpy's sdists) does: making it is the frontend's job (pip, uv, build).
MESON_LIKE_BACKEND = """\
import os, zipfile

NAME = "plain-0.1-py3-none-any.whl"
INFO = "plain-0.1.dist-info"
METADATA = "Metadata-Version: 2.1\\nName: plain\\nVersion: 0.1\\n"
WHEEL = "Wheel-Version: 1.0\\nGenerator: plain\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"


def get_requires_for_build_wheel(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    os.makedirs(os.path.join(metadata_directory, INFO))
    with open(os.path.join(metadata_directory, INFO, "METADATA"), "w") as f:
        f.write(METADATA)
    return INFO


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    with zipfile.ZipFile(os.path.join(wheel_directory, NAME), "w") as z:
        z.writestr("plain/__init__.py", "VALUE = 'built by its backend'\\n")
        z.writestr(INFO + "/METADATA", METADATA)
        z.writestr(INFO + "/WHEEL", WHEEL)
        z.writestr(INFO + "/RECORD", "")
    return NAME
"""


def test_the_wheel_folder_is_made_for_the_backend(offline: dict[str, str], tmp_path: Path) -> None:
    files = {
        "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\n'
        'backend-path = ["."]\n',
        "backend.py": MESON_LIKE_BACKEND,
    }
    links = make_sdist(tmp_path / "links", "plain-0.1", files).parent
    root = sdist_project(tmp_path, "plain", [f"--find-links {links}", "plain==0.1"])
    check = "import plain; print(plain.VALUE)"
    result = cog(root, offline, "exec", "python", "-c", check)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("built by its backend")


def test_an_sdist_whose_metadata_cannot_be_built_is_named_first(
    offline: dict[str, str], tmp_path: Path
) -> None:
    """uv builds a metadata-less sdist to read its requirements; when that fails loudly, the
    one-line error keeps what failed (its start), the exception the build raised, and uv's
    hints (its end), cut between words."""
    setup = 'print("checking for libfoo " * 200)\nimport pkg_resources_gone\n'
    links = make_sdist(tmp_path / "links", "needsfoo-0.1", {"setup.py": setup}).parent
    root = sdist_project(tmp_path, "meta", [f"--find-links {links}", "needsfoo==0.1"])
    result = cog(root, offline, "lock")
    assert result.returncode == 1
    error, hint = result.stderr.strip().splitlines()[-2:]
    assert error.startswith("error: the Python requirements cannot be resolved")
    assert "Python 3.11: Failed to build `needsfoo==0.1`" in error
    assert " … " in error and len(error) < 800
    head, raised, tail = error.split(" … ")
    words = set(result.stderr.split())  # the cuts fall between words, either side
    assert head.split()[-1] in words and tail.split()[0] in words
    assert "pkg_resources_gone" in tail  # uv's hint, long enough to push the exception out
    assert raised == "ModuleNotFoundError: No module named 'pkg_resources_gone'"
    assert "hint: a package published only as a source distribution" in hint
    assert "Traceback" not in result.stderr


def test_normalised_wheel_depends_only_on_contents() -> None:
    def wheel(order: list[str], date: tuple[int, ...], mode: int) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
            for name in order:
                info = zipfile.ZipInfo(name, date)  # type: ignore[arg-type]
                info.external_attr = mode << 16
                z.writestr(info, f"content of {name}")
        return out.getvalue()

    names = ["p/__init__.py", "p-1.dist-info/METADATA", "p-1.dist-info/RECORD", "p/x.py"]
    a = normalise_wheel(wheel(names, (2020, 5, 1, 1, 2, 3), 0o100664), "p")
    b = normalise_wheel(wheel(names[::-1], (2024, 1, 1, 0, 0, 0), 0o100600), "p")
    assert a == b
    with zipfile.ZipFile(io.BytesIO(a)) as z:
        assert z.namelist()[-1] == "p-1.dist-info/RECORD"
        record = z.read("p-1.dist-info/RECORD").decode()
    assert record.splitlines()[0].startswith("p/__init__.py,sha256=")

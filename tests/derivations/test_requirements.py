"""requirements.txt as people write it: index options, find-links, constraints, included files,
local wheels, markers, `+local` versions and `--hash`, locked offline against loopback indexes
made from the wheel cache."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from derivations import requirements
from derivations.requirements import (
    Pinned,
    RequirementsError,
    check_hashes,
    local_files,
    logical_lines,
    resolver_lines,
)
from tests.debian_mirror import serve
from tests.projects import WHEELS, cog, project
from tests.wheels import make_wheel

NUMPY = "numpy-2.1.3-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"


def module_wheel(folder: Path, name: str, version: str) -> Path:
    """A real, minimal pure-Python wheel whose module reports its version."""
    folder.mkdir(parents=True, exist_ok=True)
    init = {f"{name}/__init__.py": f'__version__ = "{version}"\n'.encode()}
    return make_wheel(folder, name, version, files=init)


def simple_index(root: Path, wheels: list[Path]) -> None:
    """A PEP 503 index of `wheels` under root/simple, files under root/files."""
    (root / "files").mkdir(parents=True)
    by_name: dict[str, list[Path]] = {}
    for wheel in wheels:
        shutil.copy(wheel, root / "files" / wheel.name)
        name = wheel.name.split("-")[0].lower().replace("_", "-")
        by_name.setdefault(name, []).append(wheel)
    for name, found in by_name.items():
        page = root / "simple" / name / "index.html"
        page.parent.mkdir(parents=True)
        links = "".join(
            f'<a href="../../files/{w.name}#sha256={hashlib.sha256(w.read_bytes()).hexdigest()}">'
            f"{w.name}</a>\n"
            for w in found
        )
        page.write_text(f"<html><body>\n{links}</body></html>\n")


@pytest.fixture
def indexes(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two loopback indexes: the wheel cache (the project's --index-url), and one holding only
    a `+local` build (its --extra-index-url)."""
    main, extra = tmp_path / "index-main", tmp_path / "index-extra"
    simple_index(main, [w for w in WHEELS.iterdir() if w.name.endswith(".whl")])
    simple_index(extra, [module_wheel(tmp_path / "built", "localpkg", "1.0+cog")])
    with serve(main) as main_url, serve(extra) as extra_url:
        yield main_url, extra_url


PREDICTOR = """
import localpkg, numpy, tqdm, vendored, sitepkg
from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self) -> str:
        found = (localpkg, numpy, tqdm, vendored, sitepkg)
        return " ".join(f"{m.__name__}={m.__version__}" for m in found)
"""


def write_project(root: Path, main: str, extra: str) -> None:
    module_wheel(root / "vendor", "vendored", "0.1")
    module_wheel(root / "site-wheels", "sitepkg", "2.0")
    numpy_sha = hashlib.sha256((WHEELS / NUMPY).read_bytes()).hexdigest()
    (root / "requirements.txt").write_text(
        f"--index-url {main}/simple\n"
        f"--extra-index-url {extra}/simple   # the team's own builds\n"
        "--find-links ./site-wheels\n"
        "-c constraints.txt\n"
        "-r more-requirements.txt\n"
        "tqdm ; python_version >= '3.8'\n"
        "never-installed ; sys_platform == 'darwin'\n"
        "./vendor/vendored-0.1-py3-none-any.whl\n"
        "localpkg==1.0+cog\n"
        "sitepkg\n"
    )
    (root / "constraints.txt").write_text("tqdm<=4.67.1\n")
    (root / "more-requirements.txt").write_text(
        f"numpy==2.1.3 \\\n    --hash=sha256:{numpy_sha} \\\n    --hash=sha256:{'0' * 64}\n"
    )
    (root / "predict.py").write_text(PREDICTOR)
    (root / "cog.yaml").write_text(
        'build:\n  python_version: "3.11"\n  python_requirements: requirements.txt\n'
        'predict: "predict.py:Predictor"\n'
    )


def test_requirements_with_every_option(
    offline: dict[str, str], tmp_path: Path, indexes: tuple[str, str]
) -> None:
    root = project("hello-world", tmp_path / "a")
    write_project(root, *indexes)
    locked = cog(root, offline, "lock")
    assert locked.returncode == 0, locked.stderr[-2000:]
    lock = json.loads((root / "cog.lock").read_text())
    pins = {w["name"]: w for w in lock["python_packages"]}
    assert {"localpkg", "numpy", "tqdm", "vendored", "sitepkg", "requests"} <= set(pins)
    assert "never-installed" not in pins  # its marker is false on linux
    assert pins["localpkg"]["version"] == "1.0+cog"
    assert pins["localpkg"]["url"].startswith(indexes[1])  # from the extra index
    # Files of the project are locked by a path relative to it: the lock is the same anywhere.
    assert pins["vendored"]["url"] == "file:vendor/vendored-0.1-py3-none-any.whl"
    assert pins["sitepkg"]["url"] == "file:site-wheels/sitepkg-2.0-py3-none-any.whl"
    assert set(lock["inputs"]["requirement_files"]) == {
        "./site-wheels",
        "constraints.txt",
        "more-requirements.txt",
        "./vendor/vendored-0.1-py3-none-any.whl",
    }
    # The runtime comes from the project's index, without its constraints or its packages.
    assert {w["name"] for w in lock["runtime_packages"]} >= {"trio", "pydantic"}
    assert all(w["url"].startswith(indexes[0]) for w in lock["runtime_packages"])

    ran = cog(root, offline, "run")
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.strip() == (
        "localpkg=1.0+cog numpy=2.1.3 tqdm=4.67.1 vendored=0.1 sitepkg=2.0"
    )

    # The same project elsewhere locks to the same bytes.
    moved = tmp_path / "b" / "moved"
    shutil.copytree(root, moved, ignore=shutil.ignore_patterns(".cog"))
    again = cog(moved, offline, "lock")
    assert again.returncode == 0, again.stderr[-2000:]
    assert (moved / "cog.lock").read_bytes() == (root / "cog.lock").read_bytes()

    # An included file that changes is drift that --locked names.
    (root / "constraints.txt").write_text("tqdm<4.67\n")
    stale = cog(root, offline, "build", "--locked")
    assert stale.returncode == 1
    assert "constraints.txt, which the requirements name, changed" in stale.stderr


def test_a_hash_that_does_not_match_is_refused(
    offline: dict[str, str], tmp_path: Path, indexes: tuple[str, str]
) -> None:
    root = project("hello-world", tmp_path)
    write_project(root, *indexes)
    (root / "more-requirements.txt").write_text(f"numpy==2.1.3 --hash=sha256:{'1' * 64}\n")
    result = cog(root, offline, "lock")
    assert result.returncode == 1
    assert "numpy resolved to a file with sha256" in result.stderr
    assert "not among the --hash values" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (root / "cog.lock").exists()


def test_lines_as_pip_reads_them(tmp_path: Path) -> None:
    text = "a==1 \\\n  --hash=sha256:ab \\\n  --hash=sha256:cd\n# note\n\nb  # why\n-r more.txt\n"
    lines = logical_lines(text)
    assert lines == ["a==1 --hash=sha256:ab --hash=sha256:cd", "b", "-r more.txt"]
    assert resolver_lines(lines, tmp_path) == ["a==1", "b", f"-r {tmp_path.resolve()}/more.txt"]
    with pytest.raises(RequirementsError, match=r"name more\.txt, which does not exist"):
        local_files(lines, tmp_path)
    check_hashes(lines, [Pinned("a", "cd"), Pinned("b", "ff")])
    with pytest.raises(RequirementsError, match="a resolved to a file with sha256 ee"):
        check_hashes(lines, [Pinned("A", "ee")])
    with pytest.raises(RequirementsError, match="are not sha256"):
        check_hashes(["a==1 --hash=md5:00"], [Pinned("a", "00")])


def test_local_files_are_hashed_again_only_where_they_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A find-links folder's hash (drift) is its files' names and sha256s; each file's sha256
    is remembered by its identity in .cog/file-hashes.json, so a rebuild reads no wheel again,
    and a file rewritten since is read again."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "a-1-py3-none-any.whl").write_bytes(b"A" * 300_000)
    (wheels / "b-1-py3-none-any.whl").write_bytes(b"B")
    lines = [f"--find-links {wheels}", "a==1"]
    expected = hashlib.sha256()
    for name, data in (("a-1-py3-none-any.whl", b"A" * 300_000), ("b-1-py3-none-any.whl", b"B")):
        expected.update(f"{name}\0".encode() + hashlib.sha256(data).digest())
    first = local_files(lines, tmp_path)
    assert first == {str(wheels): expected.hexdigest()}
    assert (tmp_path / ".cog" / "file-hashes.json").is_file()

    read: list[str] = []
    real = requirements.file_sha256
    monkeypatch.setattr(requirements, "file_sha256", lambda p: read.append(p.name) or real(p))
    assert local_files(lines, tmp_path) == first and read == []  # nothing read again
    (wheels / "b-1-py3-none-any.whl").write_bytes(b"C")
    changed = local_files(lines, tmp_path)
    assert read == ["b-1-py3-none-any.whl"] and changed != first


LOCAL_SDIST_PREDICTOR = """
import flat_pkg, spaced_pkg
from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self) -> str:
        return f"{flat_pkg.MESSAGE}; {spaced_pkg.MESSAGE}"
"""


def test_local_sdists_as_users_pack_them(offline: dict[str, str], tmp_path: Path) -> None:
    """`tar -czf dist/x.tar.gz setup.py pkg/` (no top directory) and a zip whose name has
    spaces, as Cog's local_python_requirement_artifact script packs them."""
    root = project("hello-world", tmp_path)
    dist = root / "dist"
    dist.mkdir()
    for name, archive in (("flat_pkg", "flat_pkg-0.1.0.tar.gz"), ("spaced_pkg", "")):
        setup = (
            "from setuptools import setup\n"
            f'setup(name="{name}", version="0.1.0", packages=["{name}"])\n'
        )
        module = f'MESSAGE = "{name} built"\n'
        if archive:
            with tarfile.open(dist / archive, "w:gz") as tar:
                for path, text in (("setup.py", setup), (f"{name}/__init__.py", module)):
                    info = tarfile.TarInfo(path)
                    info.size = len(text.encode())
                    tar.addfile(info, io.BytesIO(text.encode()))
        else:
            with zipfile.ZipFile(dist / "spaced pkg-0.1.0.zip", "w") as z:
                z.writestr("spaced pkg-0.1.0/setup.py", setup)
                z.writestr(f"spaced pkg-0.1.0/{name}/__init__.py", module)
    (root / "requirements.txt").write_text(
        f"--no-index\n--find-links {WHEELS}\n"
        "./dist/flat_pkg-0.1.0.tar.gz\n./dist/spaced pkg-0.1.0.zip\n"
    )
    (root / "cog.yaml").write_text(
        'build:\n  python_version: "3.11"\n  python_requirements: requirements.txt\n'
        'predict: "predict.py:Predictor"\n'
    )
    (root / "predict.py").write_text(LOCAL_SDIST_PREDICTOR)
    ran = cog(root, offline, "run")
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout.strip() == "flat_pkg built; spaced_pkg built"
    lock = json.loads((root / "cog.lock").read_text())
    pins = {w["name"]: w["url"] for w in lock["python_packages"]}
    assert pins["flat-pkg"] == "file:dist/flat_pkg-0.1.0.tar.gz"
    assert pins["spaced-pkg"] == "file:dist/spaced%20pkg-0.1.0.zip"


def test_a_project_folder_as_a_requirement(offline: dict[str, str], tmp_path: Path) -> None:
    """`./libs/mypkg` (a folder with its own setup.py) is packed into the same sdist bytes on
    every machine, locked by its folder, and an edit in it is drift."""
    root = project("hello-world", tmp_path / "a")
    package = root / "libs" / "mypkg"
    (package / "mypkg").mkdir(parents=True)
    (package / "setup.py").write_text(
        'from setuptools import setup\nsetup(name="mypkg", version="0.3.0", packages=["mypkg"])\n'
    )
    (package / "mypkg" / "__init__.py").write_text('MESSAGE = "from a folder"\n')
    (root / "requirements.txt").write_text(f"--no-index\n--find-links {WHEELS}\n./libs/mypkg\n")
    (root / "cog.yaml").write_text(
        'build:\n  python_version: "3.11"\n  python_requirements: requirements.txt\n'
        'predict: "predict.py:Predictor"\n'
    )
    (root / "predict.py").write_text(
        "import mypkg\nfrom cog import BasePredictor\n\n\nclass Predictor(BasePredictor):\n"
        "    def predict(self) -> str:\n        return mypkg.MESSAGE\n"
    )
    ran = cog(root, offline, "run")
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout.strip() == "from a folder"
    pins = {w["name"]: w for w in json.loads((root / "cog.lock").read_text())["python_packages"]}
    assert pins["mypkg"]["url"] == "file:libs/mypkg/"
    # Another checkout, another store: the folder packs to the locked sha256 again.
    moved = tmp_path / "b" / "moved"
    shutil.copytree(root, moved, ignore=shutil.ignore_patterns(".cog"))
    other = offline | {"COG_STORE_DIR": str(tmp_path / "other-store")}
    again = cog(moved, other, "build", "--locked", "--no-docker-load")
    assert again.returncode == 0, again.stderr[-3000:]
    (moved / "libs/mypkg/mypkg/__init__.py").write_text('MESSAGE = "edited"\n')
    stale = cog(moved, other, "build", "--locked", "--no-docker-load")
    assert stale.returncode == 1
    assert "./libs/mypkg, which the requirements name, changed" in stale.stderr

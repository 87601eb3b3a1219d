"""Real, tiny wheels made by the tests: metadata, modules, entry points and a RECORD; and
sdists of a few files."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import urllib.parse
import zipfile
from pathlib import Path


def make_sdist(directory: Path, stem: str, files: dict[str, str]) -> Path:
    """`directory`/`stem`.tar.gz (`directory` made if need be), whose files (by their paths
    below the archive's top folder, `stem`) hold the given texts."""
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(f"{stem}/{name}")
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    sdist = directory / f"{stem}.tar.gz"
    sdist.write_bytes(buffer.getvalue())
    return sdist


def make_wheel(
    directory: Path,
    name: str,
    version: str,
    tag: str = "py3-none-any",
    requires: tuple[str, ...] = (),
    files: dict[str, bytes] | None = None,
    scripts: dict[str, str] | None = None,
) -> Path:
    """`files` default to `{name}/__init__.py`; `scripts` are console scripts (name: target)."""
    path = directory / f"{name}-{version}-{tag}.whl"
    info = f"{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires
    )
    contents = dict(files or {f"{name}/__init__.py": f"VERSION = {version!r}\n".encode()})
    contents[f"{info}/METADATA"] = metadata.encode()
    contents[f"{info}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: {tag}\n"
    ).encode()
    if scripts:
        lines = "".join(f"{k} = {v}\n" for k, v in scripts.items())
        contents[f"{info}/entry_points.txt"] = f"[console_scripts]\n{lines}".encode()
    record = "".join(
        f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},"
        f"{len(d)}\n"
        for p, d in contents.items()
    )
    with zipfile.ZipFile(path, "w") as z:
        for p, d in contents.items():
            z.writestr(p, d)
        z.writestr(f"{info}/RECORD", record + f"{info}/RECORD,,\n")
    return path


def index_page(files: list[str]) -> str:
    """A PEP 503 project page linking `files` (names, quoted as URLs)."""
    links = "".join(f'<a href="{urllib.parse.quote(f)}">{f}</a>\n' for f in files)
    return f"<html><body>\n{links}</body></html>\n"


def simple_index(root: Path, wheels: dict[str, list[str]]) -> str:
    """A PEP 503 index of made-up wheels at `root` (`name` -> its versions), as a URL."""
    for name, versions in wheels.items():
        project = root / name
        project.mkdir(parents=True)
        files = [make_wheel(project, name, v).name for v in versions]
        (project / "index.html").write_text(index_page(files))
    return root.as_uri()

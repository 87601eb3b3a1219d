"""Real, tiny wheels made by the tests: metadata, modules, entry points and a RECORD."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path


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

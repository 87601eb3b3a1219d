"""requirements.txt as people write it: the files it names, and the hashes it pins.

The lock records the requirement lines as written (relative paths and all), so the same
project locks to the same bytes wherever it is checked out. Only the copy handed to the
resolver has its paths made absolute (uv reads it from a temporary directory), and the files
those paths name (constraints, included requirement files, local wheels and sdists) are
recorded by hash, so editing one is drift that `--locked` names.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.parse
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from derivations.errors import DerivationError
from store.hashing import file_sha256

# Options whose value is a file or folder (pip's spellings, short and long, `=` or a space).
_PATH_OPTIONS = ("-r", "--requirement", "-c", "--constraint", "-f", "--find-links")
_OPTION = re.compile(r"^(-r|--requirement|-c|--constraint|-f|--find-links)(=|\s+|(?=[^-\s]))(\S+)$")
_HASH = re.compile(r"\s+--hash[=\s]\s*([A-Za-z0-9]+):([0-9A-Fa-f]+)")
_ARCHIVES = (".whl", ".tar.gz", ".zip", ".tar.bz2", ".tar.xz", ".tgz")


class RequirementsError(DerivationError):
    pass


def logical_lines(text: str) -> list[str]:
    """The lines pip reads: `\\` continuations joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\r?\n", " ", text)
    lines = []
    for line in joined.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if line:
            lines.append(" ".join(line.split()))
    return lines


def _is_url(value: str) -> bool:
    return "://" in value


def _local_path(line: str) -> str | None:
    """The path a line names: an option's file (`-c constraints.txt`) or a local archive or
    directory given as the requirement itself (`./wheels/x.whl`, `file:./pkg`)."""
    match = _OPTION.match(line)
    if match:
        value = match.group(3)
        return None if _is_url(value) else value
    if line.startswith("-"):
        return None
    head = _HASH.split(line)[0].split(";")[0].strip()
    if _is_url(head) or " @ " in head:
        return None  # a URL (`name @ https://…`): the resolver fetches it, the lock pins it
    if head.startswith("file:"):
        return head.removeprefix("file:")
    if head.startswith(("./", "../", "/", "~")) or (head.endswith(_ARCHIVES) and "/" in head):
        return head
    return None


def resolver_lines(lines: Sequence[str], project: Path) -> list[str]:
    """`lines` with each local path made absolute (against the project) and hashes left out
    (the resolver does not check them: `check_hashes` does, against what it pinned). A
    project folder named as a requirement becomes its packed sdist (`pack_folder`)."""
    out = []
    for line in lines:
        path = _local_path(line)
        line = _HASH.sub("", line)
        if path is not None:
            where = (project / Path(path).expanduser()).resolve()
            if where.is_dir() and not line.startswith("-"):
                where = pack_folder(project, where)
            absolute = str(where)
            line = line.replace(path, absolute, 1).replace("file:" + absolute, absolute, 1)
        out.append(line)
    return out


PACKED = ".cog/sdists"  # where project folders named as requirements are packed


def pack_folder(project: Path, folder: Path) -> Path:
    """`folder` (a Python project inside `project`) as an sdist zip under .cog/sdists, with
    the same bytes on every machine: sorted entries under one top directory, stored (no
    compressor's version shows), fixed times and modes; caches and VCS data left out."""
    rel = folder.relative_to(project.resolve()).as_posix()
    target = project / PACKED / (urllib.parse.quote(rel, safe="") + ".zip")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
        for path in sorted(folder.rglob("*")):
            inside = path.relative_to(folder)
            if path.is_symlink() or not path.is_file() or _SKIPPED & set(inside.parts):
                continue
            info = zipfile.ZipInfo(f"{folder.name}/{inside.as_posix()}", (1980, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if os.access(path, os.X_OK) else 0o644) << 16
            z.writestr(info, path.read_bytes())
    os.replace(tmp, target)
    return target


_SKIPPED = {".git", "__pycache__", ".cog", ".venv"}


def folder_url(url: str) -> str:
    """A packed folder's locked URL (`file:.cog/sdists/pkg.zip`) as the folder's own
    (`file:pkg/`): the lock names what is in the project, not a file cog made."""
    prefix = f"file:{urllib.parse.quote(PACKED)}/"
    if url.startswith(prefix) and url.endswith(".zip"):
        name = urllib.parse.unquote(url[len(prefix) : -4])  # the file's name: the folder, quoted
        return "file:" + urllib.parse.quote(urllib.parse.unquote(name)) + "/"
    return url


class FileHashes:
    """sha256s of local files, remembered in the project's `.cog/file-hashes.json` by each
    file's identity (device, inode, size, mtime and ctime in ns), as git's index does: a
    find-links folder of torch wheels is gigabytes, hashed again only where a file changed.
    Only drift is judged from these; what is built is checked against the lock's sha256s."""

    def __init__(self, project: Path) -> None:
        self.path = project / ".cog" / "file-hashes.json"
        try:
            self.known: dict[str, list[Any]] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.known = {}
        self.seen: dict[str, list[Any]] = {}

    def sha256(self, file: Path) -> str:
        st = file.stat()
        identity = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        key = str(file.absolute())
        entry = self.known.get(key)
        if entry is None or entry[:-1] != identity:
            entry = [*identity, file_sha256(file)]
        self.seen[key] = entry
        return str(entry[-1])

    def save(self) -> None:
        """What this run hashed (and only that), if the project's .cog can take it."""
        if self.seen == self.known:
            return
        try:
            self.path.parent.mkdir(exist_ok=True)
            temp = self.path.with_suffix(f".{os.getpid()}.tmp")
            temp.write_text(json.dumps(self.seen, sort_keys=True))
            os.replace(temp, self.path)
        except OSError:
            pass


def local_files(lines: Sequence[str], project: Path) -> dict[str, str]:
    """The sha256 of every local file the lines name (a folder: of its archives' names and
    bytes), keyed by the path as written. A missing one is an error naming it."""
    found = {}
    hashes = FileHashes(project)
    for line in lines:
        path = _local_path(line)
        if path is None:
            continue
        where = project / Path(path).expanduser()
        if where.is_file():
            found[path] = hashes.sha256(where)
        elif where.is_dir():
            digest = hashlib.sha256()
            for entry in sorted(where.rglob("*")):
                parts = set(entry.relative_to(where).parts)
                if entry.is_file() and not entry.is_symlink() and not _SKIPPED & parts:
                    digest.update(f"{entry.relative_to(where)}\0".encode())
                    digest.update(bytes.fromhex(hashes.sha256(entry)))
            found[path] = digest.hexdigest()
        else:
            raise RequirementsError(
                f"the requirements name {path}, which does not exist in {project}",
                hint="fix the path (relative paths are read from the project directory)",
            )
    hashes.save()
    return found


def with_included(lines: Sequence[str], project: Path, depth: int = 0) -> list[str]:
    """`lines` and, recursively, the lines of the files they include with `-r` (whose own
    relative paths are read from their folder, as pip does)."""
    out = []
    for line in lines:
        out.append(line)
        match = _OPTION.match(line)
        if match and match.group(1) in ("-r", "--requirement") and not _is_url(match.group(3)):
            path = project / Path(match.group(3)).expanduser()
            if depth > 20:
                raise RequirementsError(f"the requirements include {path} in a loop")
            if path.is_file():
                out += with_included(logical_lines(path.read_text()), path.parent, depth + 1)
    return out


@dataclass(frozen=True)
class Pinned:
    name: str
    sha256: str


def check_hashes(lines: Sequence[str], pins: Sequence[Pinned]) -> None:
    """Every requirement that lists `--hash` values must have been pinned to a file with one
    of them (pip's hash-checking, applied to the lock: the bytes built are those hashes)."""
    by_name = {canonicalize_name(p.name): p for p in pins}
    for line in lines:
        hashes = _HASH.findall(line)
        if not hashes:
            continue
        spec = _HASH.split(line)[0].strip()
        try:
            name = canonicalize_name(Requirement(spec).name)
        except InvalidRequirement:
            raise RequirementsError(
                f"--hash is given for {spec!r}, which is not a requirement by name",
                hint="write hashes after a pinned requirement, e.g. `numpy==2.1.3 --hash=…`",
            ) from None
        sha256s = {value.lower() for algorithm, value in hashes if algorithm.lower() == "sha256"}
        if not sha256s:
            raise RequirementsError(
                f"the hashes given for {name} are not sha256",
                hint="give sha256 hashes (`--hash=sha256:…`), which the lock records",
            )
        pin = by_name.get(name)
        if pin is None:
            continue  # excluded by its marker on this target
        if pin.sha256 not in sha256s:
            raise RequirementsError(
                f"{name} resolved to a file with sha256 {pin.sha256}, which is not among the "
                f"--hash values the requirements give for it",
                hint="pin the version those hashes are for, or update the hashes",
            )


def relative_url(url: str, project: Path) -> str:
    """A file:// URL inside the project, as `file:REL` (the lock stays the same wherever the
    project is checked out); any other URL unchanged."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme != "file":
        return url
    path = Path(urllib.parse.unquote(parsed.path))
    root = project.resolve()
    if path.is_relative_to(root):
        return "file:" + urllib.parse.quote(path.relative_to(root).as_posix())
    return url


def absolute_url(url: str, project: Path) -> str:
    """The inverse of `relative_url`, for fetching a locked local file; a project folder is
    packed again (the same bytes, so the locked sha256 holds while the folder is unchanged)."""
    if url.startswith("file:") and not url.startswith("file://"):
        where = project.resolve() / urllib.parse.unquote(url.removeprefix("file:"))
        if url.endswith("/") and where.is_dir():
            where = pack_folder(project, where)
        return where.as_uri()
    return url

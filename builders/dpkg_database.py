"""dpkg's database for the packages a root layer unpacks, as dpkg itself would have left it.

The layers are unpacked without dpkg, yet a `run:` step may run `apt-get install`, which runs
dpkg over them. dpkg reads, besides `/var/lib/dpkg/status` (builders.rootfs):

- `info/<package>.list`, every path the package installed: without it dpkg warns once per
  package and believes the package owns no file, so it could not tell an overwrite from a
  conflict;
- `info/<package>.<member>`, the control members it keeps (maintainer scripts, md5sums,
  conffiles, triggers …): a trigger runs the interested package's postinst (libc-bin's runs
  ldconfig after a library is installed);
- `triggers/File` and `triggers/<name>`, which packages are interested in which triggers, and
  an empty `triggers/Unincorp` (no activation waits to be taken in);
- `available`, `diversions` and `statoverride`, which dpkg's own postinst creates empty, and
  `info/format`, the database's format, which dpkg writes on its first run.

Each layer writes the records of its own packages, and the trigger interests of the layers
below too (from the topmost lower layer, which carries them all), as it does the status.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from builders.errors import BuildError

DPKG = "var/lib/dpkg"
_INFO_NAME = re.compile(r"[a-z0-9][a-z0-9.+-]*(:[a-z0-9-]+)?")
# What dpkg's own postinst and first run leave, so that a step's layer does not carry them.
_SKELETON = {"available": "", "diversions": "", "statoverride": "", "info/format": "1\n"}
_KEPT_ELSEWHERE = {"control"}  # the control stanza goes to the status file


@dataclass(frozen=True)
class Installed:
    """One unpacked package as dpkg records it."""

    control: str  # its control stanza
    members: Mapping[str, bytes]  # control members other than `control`, by name
    paths: Sequence[str]  # what it installed, as dpkg lists them (`/.`, `/usr`, …)

    def field(self, name: str) -> str:
        for line in self.control.splitlines():
            key, sep, value = line.partition(":")
            if sep and key == name:
                return value.strip()
        return ""

    @property
    def info_name(self) -> str:
        """`name`, or `name:arch` for a Multi-Arch: same package, as dpkg names its files."""
        name = self.field("Package")
        if self.field("Multi-Arch") == "same":
            name = f"{name}:{self.field('Architecture')}"
        if not _INFO_NAME.fullmatch(name):  # it names files: never a path
            raise BuildError(f"a package's control names it {name!r}, which dpkg would refuse")
        return name


def listed_path(normalised: str) -> str:
    """A data tar member (its path relative to the root) as dpkg lists it: absolute, no
    trailing slash, the root as `/.`."""
    return f"/{normalised}" if normalised else "/."


def write(tree: Path, lowers: Sequence[Path], packages: Iterable[Installed]) -> None:
    """The records of `packages` (unpacked into `tree`) over those of the layers `lowers`
    (lowest first; the topmost carries the trigger interests of all)."""
    lower = lowers[-1] if lowers else None
    packages = list(packages)
    info = tree / DPKG / "info"
    if packages:
        info.mkdir(parents=True, exist_ok=True)
    interests = _interests(lower)
    for package in packages:
        name = package.info_name
        (info / f"{name}.list").write_text("".join(f"{p}\n" for p in package.paths))
        for member, data in sorted(package.members.items()):
            if member in _KEPT_ELSEWHERE or "/" in member:
                continue
            path = info / f"{name}.{member}"
            path.write_bytes(data)
            os.chmod(path, 0o755 if _is_script(member) else 0o644)
        for directive in _directives(package.members.get("triggers", b"")):
            kind, _, trigger = directive.partition(" ")
            if kind in ("interest", "interest-await", "interest-noawait"):
                who = name + ("/noawait" if kind == "interest-noawait" else "")
                interests.setdefault(trigger.strip(), set()).add(who)
    _write_interests(tree, interests)
    if (tree / DPKG / "info").is_dir():
        for rel, text in _SKELETON.items():
            path = tree / DPKG / rel
            if not path.exists() and not any((below / DPKG / rel).exists() for below in lowers):
                path.write_text(text)


def _is_script(member: str) -> bool:
    return member in ("preinst", "postinst", "prerm", "postrm", "config")


def _directives(text: bytes) -> list[str]:
    lines = text.decode("utf-8", "replace").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _interests(lower: Path | None) -> dict[str, set[str]]:
    """trigger -> interested packages, as the layers below recorded them."""
    found: dict[str, set[str]] = {}
    where = lower / DPKG / "triggers" if lower is not None else None
    if where is None or not where.is_dir():
        return found
    file_triggers = where / "File"
    if file_triggers.is_file():
        for line in file_triggers.read_text().splitlines():
            path, _, who = line.partition(" ")
            if who:
                found.setdefault(path, set()).add(who)
    for entry in sorted(where.iterdir()):
        if entry.name in ("File", "Unincorp", "Lock") or not entry.is_file():
            continue
        found.setdefault(entry.name, set()).update(entry.read_text().split())
    return found


def _write_interests(tree: Path, interests: Mapping[str, set[str]]) -> None:
    """`triggers/File` for file triggers (paths), `triggers/<name>` for named ones."""
    if not interests:
        return
    where = tree / DPKG / "triggers"
    where.mkdir(parents=True, exist_ok=True)
    # dpkg reads a missing Unincorp as a database whose interests are not known yet, and
    # marks every interested package's triggers pending (update-ca-certificates and all).
    (where / "Unincorp").write_text("")
    files = sorted((t, who) for t, names in interests.items() if t.startswith("/") for who in names)
    if files:
        (where / "File").write_text("".join(f"{path} {who}\n" for path, who in files))
    for trigger, names in sorted(interests.items()):
        if "/" not in trigger and trigger not in ("File", "Unincorp", "Lock", ".", ".."):
            (where / trigger).write_text("".join(f"{who}\n" for who in sorted(names)))

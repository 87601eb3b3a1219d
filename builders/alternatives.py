"""Debian alternatives, applied without running maintainer scripts.

Many packages ship a file under a private name and let their postinst point the public name
at it (`update-alternatives --install /usr/bin/awk awk /usr/bin/mawk 5`; libblas3 does this
for `libblas.so.3`). We read those calls from each postinst, keep the highest priority per
name (ties: first by path), and make the links dpkg would: LINK -> /etc/alternatives/NAME ->
PATH, relative so the layer stays self-contained. Calls whose words use shell variables are
skipped and logged. The choices are recorded in the layer, so an upper layer's higher
priority wins over a lower layer's, as it would on a real system.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path

RECORD = "var/lib/cog/alternatives.json"
_CALL = re.compile(r"update-alternatives\s+(?:--quiet\s+)?--install\s")


@dataclass(frozen=True)
class Alternative:
    name: str
    link: str  # absolute, e.g. /usr/bin/awk
    path: str  # absolute, what it points at
    priority: int
    slaves: tuple[tuple[str, str, str], ...]  # (link, name, path)


def parse_postinst(script: str) -> tuple[list[Alternative], list[str]]:
    """The `--install` calls of a maintainer script, and the ones that could not be read."""
    joined = re.sub(r"\\\n\s*", " ", script)
    found: list[Alternative] = []
    skipped: list[str] = []
    for line in joined.splitlines():
        match = _CALL.search(line)
        if not match:
            continue
        call = line[match.start() :].split(";")[0].split("||")[0].split("&&")[0].strip()
        if "$" in call or "`" in call:
            skipped.append(f"{call} (uses shell variables)")
            continue
        words = [w for w in shlex.split(call) if w not in ("--quiet", "--install")][1:]
        slaves = []
        rest = words[4:]
        while len(rest) >= 4 and rest[0] == "--slave":
            slaves.append((rest[1], rest[2], rest[3]))
            rest = rest[4:]
        if len(words) < 4 or not words[3].isdigit() or rest:
            skipped.append(f"{call} (not understood)")
            continue
        found.append(Alternative(words[1], words[0], words[2], int(words[3]), tuple(slaves)))
    return found, skipped


# Debian's merged /usr: these top-level folders are links into usr/ (the layout makes them).
MERGED_USR = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


def usr_merged(path: str) -> str:
    """Where `path` lives under merged /usr: /lib/cpp at usr/lib/cpp (an upper layer has no
    `lib -> usr/lib` link to write through, and a real lib/ there would hide the base's)."""
    rel = path.lstrip("/")
    return f"usr/{rel}" if rel.split("/", 1)[0] in MERGED_USR else rel


def _relative_link(tree: Path, link: str, target: str) -> None:
    rel = usr_merged(link)
    path = tree / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.is_file():
        path.unlink()
    os.symlink(posixpath.relpath(target.lstrip("/"), posixpath.dirname(rel) or "."), path)


def _present(path: str, tree: Path, lower: Path | None) -> bool:
    rel = usr_merged(path)
    return any(root is not None and (root / rel).exists() for root in (tree, lower))


def apply(tree: Path, lower: Path | None, offered: list[Alternative]) -> list[Alternative]:
    """Makes the links for each name whose best alternative is in this layer; records all."""
    chosen: dict[str, Alternative] = {}
    below = lower / RECORD if lower is not None else None
    if below is not None and below.is_file():
        for item in json.loads(below.read_text()):
            alt = Alternative(**{**item, "slaves": tuple(tuple(s) for s in item["slaves"])})
            chosen[alt.name] = alt
    inherited = dict(chosen)
    for alt in sorted(offered, key=lambda a: (-a.priority, a.path)):
        best = chosen.get(alt.name)
        if (best is None or alt.priority > best.priority) and _present(alt.path, tree, lower):
            chosen[alt.name] = alt
    made = []
    for name, alt in sorted(chosen.items()):
        if inherited.get(name) is alt:
            continue
        for link, slave_name, path in ((alt.link, name, alt.path), *alt.slaves):
            if _present(path, tree, lower):  # dpkg, too, skips slaves whose file is absent
                _relative_link(tree, link, f"/etc/alternatives/{slave_name}")
                _relative_link(tree, f"/etc/alternatives/{slave_name}", path)
        made.append(alt)
    record = tree / RECORD
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps([asdict(a) for _, a in sorted(chosen.items())], indent=1) + "\n")
    return made

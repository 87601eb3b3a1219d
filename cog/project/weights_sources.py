"""What `cog weights import` reads: each managed weight's sources in cog.yaml, their files
filtered by the include/exclude globs, and the fingerprints that tell a changed source."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cog.project.errors import UsageError
from derivations.config import CogConfig, Weight
from derivations.weights_lock import LockEntry, LockSource, dirhash
from store.hashing import file_sha256


class WeightsError(UsageError):
    """A managed weight that cannot be imported, pulled or mounted as asked."""


def managed_weights(config: CogConfig) -> list[Weight]:
    return [w for w in config.weights if w.managed]


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A gitignore-style glob: a bare pattern matches at any depth, one with a `/` is
    anchored at the source's root, `**` spans folders, a trailing `/` means a folder, and a
    match on a folder covers what is inside it."""
    directory = pattern.endswith("/")
    body = pattern.strip("/") if directory else pattern.lstrip("/")
    anchored = "/" in pattern.rstrip("/")
    out, i = [], 0
    while i < len(body):
        if body.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif body.startswith("**", i):
            out.append(".*")
            i += 2
        elif body[i] == "*":
            out.append("[^/]*")
            i += 1
        elif body[i] == "?":
            out.append("[^/]")
            i += 1
        elif body[i] == "[" and "]" in body[i + 1 :]:
            end = body.index("]", i + 1)
            inner = body[i + 1 : end].replace("\\", "\\\\")
            out.append("[^" + inner[1:] + "]" if inner.startswith("!") else f"[{inner}]")
            i = end + 1
        else:
            out.append(re.escape(body[i]))
            i += 1
    prefix = "" if anchored else "(?:.*/)?"
    suffix = "/.*" if directory else "(?:/.*)?"
    return re.compile(f"^{prefix}{''.join(out)}{suffix}$")


def matches(path: str, patterns: list[str]) -> bool:
    """Whether `path` is matched by the patterns, read as a .gitignore (later `!` undoes)."""
    found = False
    for raw in patterns:
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        if _glob_regex(pattern.removeprefix("!")).match(path):
            found = not negate
    return found


@dataclass
class SourceFile:
    path: str  # relative, with forward slashes
    real: Path
    size: int
    digest: str = ""  # sha256, once hashed


@dataclass
class Source:
    uri: str
    root: Path  # the folder it names, links resolved
    include: list[str]
    exclude: list[str]
    every: list[SourceFile]  # all its files, the filtered-out ones too
    fingerprint: str = ""  # of every file, once hashed


def source_root(project: Path, uri: str, name: str, allowed: Sequence[Path] = ()) -> Path:
    """The folder a cog.yaml source names. cog.yaml travels with the project, so its sources
    stay inside it (links resolved: `file://../x`, `/home/me/.ssh` or a link out are refused);
    a folder outside is read only where the user named it on the command line (`allowed`)."""
    if not uri.startswith("file://"):
        scheme = uri.partition("://")[0] if "://" in uri else uri
        raise WeightsError(
            f"weight {name!r}: the source {uri} is not supported here ({scheme})",
            hint="use a file:// source (a folder, relative to the project or absolute)",
        )
    where = uri.removeprefix("file://")
    root = (project / where) if not os.path.isabs(where) else Path(where)
    if not root.is_dir():
        raise WeightsError(
            f"weight {name!r}: the source {uri} is not a folder",
            hint="a file:// source must name a folder of weight files",
        )
    real = root.resolve()
    if not real.is_relative_to(project.resolve()) and not any(
        real.is_relative_to(a.resolve()) for a in allowed
    ):
        raise WeightsError(
            f"weight {name!r}: the source {uri} is {real}, outside the project, which cog.yaml "
            "alone cannot have read and pushed",
            hint=f"move it into the project, or run `cog weights import --allow-source {real}`",
        )
    return real


def inventory(root: Path, name: str) -> list[SourceFile]:
    """Every regular file under `root`, sorted by path; a link or special file is refused."""
    found: list[SourceFile] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for entry in [*dirnames, *filenames]:
            full = Path(dirpath) / entry
            mode = full.lstat().st_mode
            rel = full.relative_to(root).as_posix()
            if stat.S_ISLNK(mode):
                raise WeightsError(
                    f"weight {name!r}: {rel} in its source is a link",
                    hint="replace it by the file it points to",
                )
            if entry in filenames:
                if not stat.S_ISREG(mode):
                    raise WeightsError(f"weight {name!r}: {rel} is not a regular file")
                found.append(SourceFile(rel, full, full.stat().st_size))
    return sorted(found, key=lambda f: f.path)


@dataclass
class Plan:
    """One weight about to be imported: its sources and the files they keep, and how it
    stands against weights.lock once `fingerprint` has hashed it."""

    weight: Weight
    sources: list[Source]
    files: list[SourceFile]
    excluded: list[SourceFile]
    old: LockEntry | None = None  # the weight's entry in weights.lock

    @property
    def name(self) -> str:
        return self.weight.name or ""

    @property
    def target(self) -> str:
        return self.weight.target or ""

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def locked_sources(self) -> list[LockSource]:
        return [LockSource(s.uri, s.fingerprint, s.include, s.exclude) for s in self.sources]

    @property
    def status(self) -> str:
        """new, config changed, upstream changed or unchanged (as Cog says it)."""
        old = self.old
        if old is None:
            return "new"
        sources = [(s.uri, s.include, s.exclude) for s in self.sources]
        if old.target != self.target or sources != [
            (s.uri, s.include, s.exclude) for s in old.sources
        ]:
            return "config changed"
        if [s.fingerprint for s in self.sources] != [s.fingerprint for s in old.sources] or [
            (f.path, f.digest) for f in self.files
        ] != [(f.path, f.digest) for f in sorted(old.files, key=lambda f: f.path)]:
            return "upstream changed"
        return "unchanged"


def plan_weight(project: Path, weight: Weight, allowed: Sequence[Path] = ()) -> Plan:
    name = weight.name or ""
    sources = []
    files: dict[str, SourceFile] = {}
    excluded: list[SourceFile] = []
    for source in () if isinstance(weight.source, str) else weight.source:
        root = source_root(project, source.uri, name, allowed)
        every = inventory(root, name)
        include = sorted(p.strip() for p in source.include)
        exclude = sorted(p.strip() for p in source.exclude)
        kept = []
        for f in every:
            if (exclude and matches(f.path, exclude)) or (include and not matches(f.path, include)):
                excluded.append(f)
            else:
                kept.append(f)
        if not kept:
            what = f"include {include}" if include else ""
            what += (" and " if what else "") + (f"exclude {exclude}" if exclude else "")
            raise WeightsError(
                f"weight {name!r}: "
                + (
                    f"the patterns ({what}) matched none of the {len(every)} files in {source.uri}"
                    if every
                    else f"the source {source.uri} has no files"
                ),
                hint="check the source and its include/exclude patterns in cog.yaml",
            )
        for f in kept:
            if f.path in files:
                raise WeightsError(f"weight {name!r}: two sources both have the file {f.path}")
            files[f.path] = f
        sources.append(Source(source.uri, root, include, exclude, every))
    return Plan(weight, sources, sorted(files.values(), key=lambda f: f.path), excluded)


def fingerprint(plan: Plan) -> None:
    """Hashes every file of the plan's sources (a source's fingerprint covers all its files,
    the filtered-out ones too)."""
    for source in plan.sources:
        for f in source.every:
            try:
                f.digest = "sha256:" + file_sha256(f.real)
            except OSError as e:
                raise WeightsError(f"cannot read {f.real}: {e.strerror}") from None
        source.fingerprint = dirhash([(f.path, f.digest) for f in source.every])

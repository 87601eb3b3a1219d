"""Each generated cog.yaml case loaded by Cog (cog_config_oracle) and by our loader
(derivations.config.load_config, on a project holding the files the case names), and the
outcome: the same answer, a difference the allow-list explains, or a difference."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from derivations.config import ConfigError, load_config
from tests.conformance import config_allowlist as allow
from tests.conformance import patterns
from tests.conformance.cog_config_oracle import Verdict, cog_load, schema_wording
from tests.conformance.config_cases import FILES, Case, cases


@dataclass(frozen=True)
class Row:
    case: Case
    cog: Verdict
    ours: str | None  # our error without its `cog.yaml: `, None where we accept
    outcome: str  # "same", "allowed" or "differs"
    reason: str = ""

    @property
    def cog_text(self) -> str:
        if self.cog.accepted:
            return "accepted"
        if self.cog.stage == "decode":
            return "refused by its decoder: " + self.cog.lines[1].strip()
        return self.cog.lines[0]

    @property
    def ours_text(self) -> str:
        return "accepted" if self.ours is None else self.ours


def _allowed(table: dict[str, str], case_id: str) -> str:
    return patterns.reason(table, case_id)


def ours(case: Case, project: Path) -> str | None:
    (project / "cog.yaml").write_text(case.text)
    try:
        load_config(project)
    except ConfigError as e:
        return str(e).removeprefix("cog.yaml: ")
    return None


def compare(case: Case, project: Path) -> Row:
    cog, mine = cog_load(case.text, project), ours(case, project)
    if cog.accepted != (mine is None):
        reason = _allowed(allow.VERDICT, case.id)
        return Row(case, cog, mine, "allowed" if reason else "differs", reason)
    if cog.accepted or mine in cog.lines:
        return Row(case, cog, mine, "same")
    document = yaml.load(case.text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    if cog.stage == "decode" and mine in schema_wording(document):
        return Row(case, cog, mine, "allowed", allow.DECODER)
    reason = _allowed(allow.WORDING, case.id)
    return Row(case, cog, mine, "allowed" if reason else "differs", reason)


def project_files(root: Path) -> Path:
    for name, text in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def scratch_dir() -> str | None:
    """Memory-backed where there is one: each case writes and reads a cog.yaml."""
    return "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


def compare_all() -> list[Row]:
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as scratch:
        project = project_files(Path(scratch))
        return [compare(case, project) for case in cases()]


def stale_allowances(rows: list[Row]) -> list[str]:
    """Allow-list entries that no case needs any more."""
    used = [r.case.id for r in rows if r.outcome == "allowed"]
    return patterns.unused([allow.VERDICT, allow.WORDING], used)

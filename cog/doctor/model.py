"""What a `cog doctor` check is: its findings, the project it reads (loaded once per run, and
again after a fix changed files), and the helpers every check shares."""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cog.doctor.python_source import PythonFile
from derivations.config import CogConfig, ConfigError, parse_config


class Severity(enum.IntEnum):
    """Smaller is worse, as in Cog."""

    ERROR = 0
    WARNING = 1
    INFO = 2


class Group(str, enum.Enum):
    CONFIG = "Config"
    PYTHON = "Python"
    ENVIRONMENT = "Environment"


@dataclass(frozen=True)
class Finding:
    severity: Severity
    message: str
    remediation: str = ""
    file: str = ""
    line: int = 0


class FixError(Exception):
    """A fix that could not be made; its message is one sentence."""


@dataclass
class Context:
    """What every check reads, loaded once per run (and again after a fix changed files)."""

    project: Path
    config_name: str
    config_bytes: bytes | None = None
    data: Any = None  # the YAML, when it parsed
    parse_error: str | None = None
    config: CogConfig | None = None
    config_error: str | None = None
    python_files: dict[str, PythonFile] = field(default_factory=dict)
    python_errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, project: Path, config_name: str) -> Context:
        ctx = cls(project, config_name)
        try:
            ctx.config_bytes = (project / config_name).read_bytes()
        except FileNotFoundError:
            return ctx
        try:
            text = ctx.config_bytes.decode()
        except UnicodeDecodeError as e:
            byte = ctx.config_bytes[e.start]
            ctx.parse_error = f"byte 0x{byte:02x} at offset {e.start} is not UTF-8"
            return ctx
        try:
            ctx.data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            ctx.parse_error = f"{getattr(e, 'problem', None) or e}{at}"
            return ctx
        try:
            ctx.config = parse_config(text, config_name, strict=True)
        except ConfigError as e:
            ctx.config_error = str(e).removeprefix(f"{config_name}: ")
            if e.hint and e.hint.startswith("did you mean"):
                ctx.config_error += f" ({e.hint})"
            return ctx
        for ref in (ctx.config.predict, ctx.config.train):
            if ref:
                ctx.parse_python(split_ref(ref)[0])
        return ctx

    def parse_python(self, rel: str) -> PythonFile | None:
        """The project's Python file, parsed once; None when it is missing or not Python."""
        if rel in self.python_files:
            return self.python_files[rel]
        try:
            source = (self.project / rel).read_bytes()
        except OSError:
            return None
        try:
            pf = PythonFile.parse(rel, source)
        except SyntaxError as e:
            self.python_errors[rel] = f"{e.msg} at line {e.lineno}"
            return None
        except ValueError as e:
            self.python_errors[rel] = str(e)
            return None
        self.python_files[rel] = pf
        return pf

    def parsed(self) -> list[PythonFile]:
        return [self.python_files[p] for p in sorted(self.python_files)]


def split_ref(ref: str) -> tuple[str, str]:
    """`predict.py:Predictor` -> ("predict.py", "Predictor"), split at the last colon."""
    file, colon, cls = ref.rpartition(":")
    return (file, cls) if colon else (ref, "")


def write_like(path: Path, data: bytes) -> None:
    """Rewrite a file in place, keeping its mode."""
    mode = path.stat().st_mode & 0o7777
    path.write_bytes(data)
    os.chmod(path, mode)


class Check:
    name = ""
    group = Group.CONFIG
    description = ""
    fixable = False

    def check(self, ctx: Context) -> list[Finding]:
        raise NotImplementedError

    def fix(self, ctx: Context, findings: list[Finding]) -> None:
        """Only called on a fixable check with findings; raises FixError when it cannot."""
        raise NotImplementedError

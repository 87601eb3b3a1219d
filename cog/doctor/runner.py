"""Running `cog doctor`'s checks in Cog 0.23's order: finding the project, each check's
result, and the fixes `--fix` applies between them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cog.doctor.config_checks import (
    ConfigDeprecatedFields,
    ConfigParse,
    ConfigPredictRef,
    ConfigSchema,
    PredictToRunMigration,
)
from cog.doctor.environment_checks import GpuCompatibility, PythonVersion, Sandbox
from cog.doctor.model import Check, Context, Finding, FixError, Severity
from cog.doctor.python_checks import DeprecatedImports, MissingTypeAnnotations, PydanticBaseModel
from cog.project.errors import UsageError


def find_project(config_name: str) -> Path:
    """The nearest folder, from here up, that holds the config file."""
    here = Path.cwd()
    for directory in (here, *here.parents):
        if (directory / config_name).is_file():
            return directory
    raise UsageError(
        f"{config_name} not found in {here} (or in any parent directories)",
        hint="run `cog init` to start a project, or cd to your project",
    )


def all_checks() -> list[Check]:
    return [
        ConfigParse(),
        ConfigSchema(),
        PredictToRunMigration(),
        ConfigDeprecatedFields(),
        ConfigPredictRef(),
        PydanticBaseModel(),
        DeprecatedImports(),
        MissingTypeAnnotations(),
        PythonVersion(),
        GpuCompatibility(),
        Sandbox(),
    ]


@dataclass
class CheckResult:
    check: Check
    findings: list[Finding] = field(default_factory=list)
    fixed: bool = False
    error: str | None = None  # the check itself (or its fix) failed


def run_checks(
    project: Path, config_name: str, fix: bool, checks: list[Check] | None = None
) -> list[CheckResult]:
    """Every check in order; with `fix`, each fixable check with findings fixes them, and the
    project is read again so later checks see the fixed files."""
    ctx = Context.load(project, config_name)
    results = []
    for check in all_checks() if checks is None else checks:
        result = CheckResult(check)
        try:
            result.findings = check.check(ctx)
        except Exception as e:  # one check failing must not stop the others
            result.error = _sentence(e)
            results.append(result)
            continue
        if fix and check.fixable and result.findings:
            try:
                check.fix(ctx, result.findings)
                result.fixed = True
            except FixError as e:
                result.error = str(e)
            except (OSError, SyntaxError) as e:
                result.error = _sentence(e)
            ctx = Context.load(project, config_name)
        results.append(result)
    return results


def has_unfixed_error(results: list[CheckResult]) -> bool:
    """Whether a check failed, or found an error that it did not fix: `cog doctor` exits 1."""
    return any(
        r.error is not None
        or (not r.fixed and any(f.severity == Severity.ERROR for f in r.findings))
        for r in results
    )


def fixable_error_left(results: list[CheckResult]) -> bool:
    """Whether `cog doctor --fix` would fix an error that this run found and left."""
    return any(
        r.check.fixable
        and not r.fixed
        and r.error is None
        and any(f.severity == Severity.ERROR for f in r.findings)
        for r in results
    )


def _sentence(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        where = f" ({e.filename})" if e.filename else ""
        return f"{e.strerror}{where}"
    return str(e) or type(e).__name__

"""`cog doctor [--fix]`: check the project for common problems, and fix the fixable ones, as
Cog 0.23 does (experimental there too). Warnings exit 0; an error left unfixed exits 1. The
checks and fixes are `cog.doctor`'s; this parses the flags and prints their results."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from cog.doctor.model import Severity
from cog.doctor.runner import (
    CheckResult,
    find_project,
    fixable_error_left,
    has_unfixed_error,
    run_checks,
)
from store.local import Store

NOTE = "NOTE: cog doctor is experimental. Behavior and checks may change in future versions."


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "doctor",
        description="Diagnose and fix common issues in a Cog project. "
        + NOTE
        + " By default it reports problems without modifying any files; "
        "--fix applies the safe fixes.",
    )
    p.add_argument("--fix", action="store_true", help="automatically apply fixes")
    p.add_argument(
        "-f", "--file", default="cog.yaml", metavar="NAME", help="the name of the config file"
    )
    p.set_defaults(func=cmd_doctor)


class _Console:
    """Cog's console lines on stderr: with an icon on a terminal, plain otherwise."""

    def __init__(self) -> None:
        self.icons = (
            sys.stderr.isatty()
            and not os.environ.get("NO_COLOR")
            and not os.environ.get("COG_NO_COLOR")
            and os.environ.get("TERM") != "dumb"
        )

    def _line(self, icon: str, text: str) -> None:
        prefix = f" {icon} " if self.icons and icon else ""
        print(prefix + text if text else "", file=sys.stderr)

    def info(self, text: str = "") -> None:
        self._line("⚙ ", text)

    def success(self, text: str) -> None:
        self._line("✔", text)

    def warn(self, text: str) -> None:
        self._line("⚠", text)

    def error(self, text: str) -> None:
        self._line("✗", text)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def cmd_doctor(args: argparse.Namespace, store: Store) -> int:
    out = _Console()
    out.warn(NOTE)
    out.info()
    project = find_project(args.file)
    out.info("Running cog doctor --fix..." if args.fix else "Running cog doctor...")
    out.info()
    results = run_checks(project, args.file, args.fix)
    report(out, results, args.fix)
    return 1 if has_unfixed_error(results) else 0


def report(out: _Console, results: list[CheckResult], fix: bool) -> None:
    errors = warnings = fixed = 0
    group = None
    for r in results:
        if r.check.group != group:
            group = r.check.group
            out.info(group.value)
        if r.error is not None:  # the check, or its fix, failed: that is the error to show
            out.error(f"{r.check.description}: {r.error}")
            errors += 1
            continue
        if not r.findings:
            out.success(r.check.description)
            continue
        if r.fixed:
            out.success(f"Fixed: {r.check.description}")
            fixed += len(r.findings)
        else:
            worst = min(f.severity for f in r.findings)
            {Severity.ERROR: out.error, Severity.WARNING: out.warn}.get(worst, out.info)(
                r.check.description
            )
            errors += sum(f.severity == Severity.ERROR for f in r.findings)
            warnings += sum(f.severity == Severity.WARNING for f in r.findings)
        for f in r.findings:
            where = ""
            if f.file:
                where = f"{f.file}:{f.line} — " if f.line > 0 else f"{f.file} — "
            out.info(f"  {where}{f.message}")
            if fix and not r.fixed:
                if f.remediation:
                    out.info(f"  Remediation: {f.remediation}")
                else:
                    out.info("  (no auto-fix available)")
    out.info()
    if fix and fixed:
        summary = f"Fixed {_plural(fixed, 'issue')}"
        if warnings:
            summary += f". {_plural(warnings, 'warning')} remaining"
        if errors:
            summary += f". {_plural(errors, 'unfixed error')}"
        out.info(summary + ".")
    elif errors or warnings:
        parts = [_plural(n, w) for n, w in ((errors, "error"), (warnings, "warning")) if n]
        summary = f"Found {', '.join(parts)}."
        if not fix and fixable_error_left(results):
            summary += ' Run "cog doctor --fix" to auto-fix.'
        out.info(summary)
    else:
        out.success("no issues found")

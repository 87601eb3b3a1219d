"""The checks of the project's cog.yaml, in Cog 0.23's words: that it parses and validates,
the deprecated `predict:` interface (migrated by `--fix`), deprecated keys, and the class the
predict reference names."""

from __future__ import annotations

import json
import os
import re
from typing import Any

from cog.doctor.fixes import to_runner
from cog.doctor.model import Check, Context, Finding, FixError, Severity, split_ref, write_like
from derivations.config import DEPRECATED


class ConfigParse(Check):
    name = "config-parse"
    description = "Config parsing"

    def check(self, ctx: Context) -> list[Finding]:
        if ctx.config_bytes is None:
            return [
                Finding(
                    Severity.ERROR,
                    f"{ctx.config_name} not found",
                    'Run "cog init" to create a cog.yaml',
                    ctx.config_name,
                )
            ]
        if ctx.parse_error is not None:
            return [
                Finding(
                    Severity.ERROR,
                    f"{ctx.config_name} has invalid YAML: {ctx.parse_error}",
                    f"Fix the YAML syntax in {ctx.config_name}",
                    ctx.config_name,
                )
            ]
        return []


class ConfigSchema(Check):
    name = "config-schema"
    description = "Config schema"

    def check(self, ctx: Context) -> list[Finding]:
        if ctx.config_error is None:
            return []
        return [
            Finding(
                Severity.ERROR,
                f"{ctx.config_name} validation failed: {ctx.config_error}",
                f"Fix the configuration errors in {ctx.config_name}",
                ctx.config_name,
            )
        ]


_PREDICT_KEY = re.compile(rb"^predict[ \t]*:", re.M)
_RUN_KEY = re.compile(rb"^run[ \t]*:", re.M)
_STARTER_PREDICT = re.compile(
    rb"""^predict:[ \t]*["']?predict\.py:Predictor["']?[ \t]*(?:#.*)?$""", re.M
)


class PredictToRunMigration(Check):
    """`predict:` and Predictor/BasePredictor/predict() are Cog's old names for `run:` and
    Runner/BaseRunner/run(); the starter shape (predict.py:Predictor) is migrated."""

    name = "predict-to-run-migration"
    description = "Deprecated predict interface names"
    fixable = True

    def check(self, ctx: Context) -> list[Finding]:
        raw = ctx.config_bytes or b""
        findings = []
        starter = bool(_STARTER_PREDICT.search(raw))
        if _PREDICT_KEY.search(raw) or starter:
            findings.append(
                Finding(
                    Severity.WARNING,
                    "predict in cog.yaml is deprecated; use run with run.py:Runner",
                    "Run cog doctor --fix to migrate predict: to run:",
                    ctx.config_name,
                )
            )
        if starter:
            pf = ctx.parse_python("predict.py")
            if pf is not None and pf.top_class("Predictor") is not None:
                findings.append(
                    Finding(
                        Severity.WARNING,
                        "predict.py uses deprecated Predictor/BasePredictor/predict() names",
                        "Run cog doctor --fix to migrate to Runner/BaseRunner/run()",
                        "predict.py",
                    )
                )
        return findings

    def fix(self, ctx: Context, findings: list[Finding]) -> None:
        raw = ctx.config_bytes or b""
        if _RUN_KEY.search(raw):
            raise FixError("automatic migration cannot run when run is already set")
        if not _STARTER_PREDICT.search(raw):
            raise FixError(
                "Manual migration required: automatic migration only supports predict.py:Predictor"
            )
        old, new = ctx.project / "predict.py", ctx.project / "run.py"
        if new.exists() or new.is_symlink():
            raise FixError("cannot migrate predict.py to run.py because run.py already exists")
        pf = ctx.parse_python("predict.py")
        if pf is None:
            if "predict.py" in ctx.python_errors:
                raise FixError(
                    f"cannot migrate predict.py: it is not valid Python "
                    f"({ctx.python_errors['predict.py']})"
                )
            raise FixError("cannot migrate predict.py to run.py because predict.py was not found")
        if pf.top_class("Predictor") is None:
            raise FixError(
                "cannot migrate predict.py because no legacy Predictor/BasePredictor/predict() "
                "names were found"
            )
        source = to_runner(pf)
        config = _STARTER_PREDICT.sub(b'run: "run.py:Runner"', raw, count=1)
        mode = old.stat().st_mode & 0o7777
        # Write the new file first, then the config, then remove the old file: a failure at
        # any step leaves the project as it was.
        new.write_bytes(source)
        os.chmod(new, mode)
        config_path = ctx.project / ctx.config_name
        try:
            write_like(config_path, config)
        except OSError:
            new.unlink()
            raise
        old.unlink()


# Cog's reasons for each deprecated key (the keys and replacements are derivations.config's).
_DEPRECATION_REASONS = {
    "predict": "use run to point at run.py:Runner",
    "concurrency.max": "configure prediction concurrency with @cog.concurrent on your async "
    "run() method instead",
    "build.python_packages": "use a requirements.txt file instead",
    "build.pre_install": "use build.run commands instead",
}


class ConfigDeprecatedFields(Check):
    name = "config-deprecated-fields"
    description = "Deprecated fields"

    def check(self, ctx: Context) -> list[Finding]:
        if ctx.config is None:
            return []  # parse and schema errors are the other checks' findings
        findings = []
        for path, replacement in DEPRECATED:
            value: Any = ctx.data
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            if value in (None, "", [], {}):
                continue
            dotted = ".".join(path)
            reason = _DEPRECATION_REASONS.get(dotted, f'use "{replacement}" instead')
            findings.append(
                Finding(
                    Severity.WARNING,
                    f'"{dotted}" is deprecated: {reason}',
                    f'Use "{replacement}" instead',
                    ctx.config_name,
                )
            )
        return findings


class ConfigPredictRef(Check):
    name = "config-predict-ref"
    description = "Predict reference"

    def check(self, ctx: Context) -> list[Finding]:
        ref = ctx.config.predict if ctx.config else None
        if not ref:
            return []
        file, cls = split_ref(ref)
        if not file or not cls:
            return [
                Finding(
                    Severity.ERROR,
                    f"predict reference {json.dumps(ref)} must be in the form 'file.py:ClassName'",
                    f'Set predict to "predict.py:Predictor" in {ctx.config_name}',
                    ctx.config_name,
                )
            ]
        if not (ctx.project / file).exists():
            return [
                Finding(
                    Severity.ERROR,
                    f"{file} not found",
                    f"Create {file} or update the predict field in {ctx.config_name}",
                    ctx.config_name,
                )
            ]
        pf = ctx.parse_python(file)
        if pf is None:
            why = ctx.python_errors.get(file, "it cannot be read")
            return [
                Finding(
                    Severity.ERROR,
                    f"cannot parse {file}: {why}",
                    f"Fix the syntax of {file}",
                    file,
                )
            ]
        if pf.top_class(cls) is not None:
            return []
        message = f"class {json.dumps(cls)} not found in {file}"
        names = [c.name for c in pf.top_classes()]
        if names:
            message += f"; found: {', '.join(names)}"
        return [
            Finding(
                Severity.ERROR,
                message,
                f"Add class {cls} to {file} or update the predict field in {ctx.config_name}",
                file,
            )
        ]

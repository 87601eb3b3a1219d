"""The checks of the predictor's Python code, in Cog 0.23's words: pydantic's BaseModel with
arbitrary types, imports Cog removed (both fixed by `--fix`), and missing return annotations."""

from __future__ import annotations

import ast

from cog.doctor.fixes import (
    REMOVED_IMPORTS,
    to_cog_base_model,
    without_removed_imports,
    workaround_classes,
)
from cog.doctor.model import Check, Context, Finding, Group, Severity, split_ref, write_like
from cog.doctor.python_source import methods


class PydanticBaseModel(Check):
    name = "python-pydantic-basemodel"
    group = Group.PYTHON
    description = "Pydantic BaseModel workaround"
    fixable = True

    def check(self, ctx: Context) -> list[Finding]:
        return [
            Finding(
                Severity.ERROR,
                f"{cls.name} inherits from pydantic.BaseModel with arbitrary_types_allowed; "
                "use cog.BaseModel instead",
                "Replace pydantic.BaseModel with cog.BaseModel and remove "
                "ConfigDict(arbitrary_types_allowed=True)",
                pf.path,
                cls.lineno,
            )
            for pf in ctx.parsed()
            for cls in workaround_classes(pf)
        ]

    def fix(self, ctx: Context, findings: list[Finding]) -> None:
        for rel in sorted({f.file for f in findings}):
            pf = ctx.python_files[rel]
            write_like(ctx.project / rel, to_cog_base_model(pf))


class DeprecatedImports(Check):
    name = "python-deprecated-imports"
    group = Group.PYTHON
    description = "Deprecated imports"
    fixable = True

    def check(self, ctx: Context) -> list[Finding]:
        findings = []
        for pf in ctx.parsed():
            for stmt in pf.tree.body:
                if not isinstance(stmt, ast.ImportFrom):
                    continue
                for alias in stmt.names:
                    for module, name, why in REMOVED_IMPORTS:
                        if stmt.module == module and alias.name == name:
                            findings.append(
                                Finding(
                                    Severity.ERROR,
                                    why,
                                    f"Remove the import of {name} from {module}",
                                    pf.path,
                                    stmt.lineno,
                                )
                            )
        return findings

    def fix(self, ctx: Context, findings: list[Finding]) -> None:
        for rel in sorted({f.file for f in findings}):
            write_like(ctx.project / rel, without_removed_imports(ctx.python_files[rel]))


class MissingTypeAnnotations(Check):
    name = "python-missing-type-annotations"
    group = Group.PYTHON
    description = "Type annotations"

    def check(self, ctx: Context) -> list[Finding]:
        if ctx.config is None:
            return []
        findings = []
        for ref, default in ((ctx.config.predict, None), (ctx.config.train, "train")):
            if not ref:
                continue
            file, cls_name = split_ref(ref)
            pf = ctx.python_files.get(file)
            cls = pf.top_class(cls_name) if pf else None
            if pf is None or cls is None:
                continue  # the reference check reports it
            method = default or ("run" if methods(cls, "run") else "predict")
            found = methods(cls, method)
            if found and found[0].returns is None:
                findings.append(
                    Finding(
                        Severity.WARNING,
                        f"{cls_name}.{method}() is missing a return type annotation",
                        f"Add a return type annotation: def {method}(self, ...) -> YourType:",
                        file,
                        found[0].lineno,
                    )
                )
        return findings

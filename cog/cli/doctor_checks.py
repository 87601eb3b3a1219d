"""The checks `cog doctor` runs, in Cog 0.23's order and words: the project's cog.yaml, the
Python files it names, and what a build here needs. A check reports findings; the fixable ones
also rewrite files (`cog doctor --fix`)."""

from __future__ import annotations

import ast
import enum
import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from cog.cli.doctor_source import (
    Edit,
    Imported,
    PythonFile,
    alias_text,
    apply_edits,
    drop_from_import,
    import_from_line,
    loaded_names,
    methods,
    names_in,
)
from derivations.config import DEPRECATED, CogConfig, ConfigError, parse_config


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


# --- Config ------------------------------------------------------------------------------------


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
_COG_BASE_MODULES = ("cog", "cog.predictor")


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
        source = apply_edits(pf.source, _runner_edits(pf))
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


def _runner_edits(pf: PythonFile) -> list[Edit]:
    classes = [c for c in pf.top_classes() if c.name == "Predictor"]
    manual = "Manual migration required: automatic migration "
    if len(classes) != 1:
        raise FixError(manual + "only supports a single Predictor class")
    cls = classes[0]
    base_imports = _cog_base_predictor_imports(pf)
    aliases = {a.asname for _, a in base_imports if a.asname}
    base_names = [n for base in cls.bases for n in ast.walk(base) if isinstance(n, ast.Name)]
    if any(n.id in aliases for n in base_names):
        raise FixError(manual + "does not support aliased BasePredictor inheritance")
    predicts = methods(cls, "predict")
    if len(predicts) != 1 or methods(cls, "run"):
        raise FixError(
            manual + "only supports a single Predictor class with a single predict method"
        )
    edits = [
        replace(pf.name_span(cls), text=b"Runner"),
        replace(pf.name_span(predicts[0]), text=b"run"),
    ]
    targets = [n for n in base_names if n.id == "BasePredictor"]
    if targets and not base_imports:
        raise FixError(manual + "only supports BasePredictor imported from cog")
    if targets and _other_base_predictor_imports(pf):
        raise FixError(manual + "only supports unambiguous BasePredictor imports from cog")
    for node in targets:
        start, end = pf.span(node)
        edits.append(Edit(start, end, b"BaseRunner"))
    # The import: renamed when nothing else uses BasePredictor, else BaseRunner added to it.
    target_spans = {pf.span(n) for n in targets}
    used_elsewhere = any(
        isinstance(n, ast.Name) and n.id == "BasePredictor" and pf.span(n) not in target_spans
        for n in ast.walk(pf.tree)
    ) or any(isinstance(n, ast.Attribute) and n.attr == "BasePredictor" for n in ast.walk(pf.tree))
    for _, alias in base_imports:
        if alias.asname:
            continue
        span = pf.alias_name_span(alias)
        if not used_elsewhere:
            edits.append(Edit(span.start, span.end, b"BaseRunner"))
        elif targets:
            edits.append(Edit(span.end, span.end, b", BaseRunner"))
    return edits


def _cog_base_predictor_imports(pf: PythonFile) -> list[tuple[ast.ImportFrom, ast.alias]]:
    return [
        (node, alias)
        for node in ast.walk(pf.tree)
        if isinstance(node, ast.ImportFrom) and node.module in _COG_BASE_MODULES
        for alias in node.names
        if alias.name == "BasePredictor"
    ]


def _other_base_predictor_imports(pf: PythonFile) -> bool:
    return any(
        isinstance(node, ast.ImportFrom)
        and node.module not in _COG_BASE_MODULES
        and any(a.name == "BasePredictor" for a in node.names)
        for node in ast.walk(pf.tree)
    )


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


# --- Python ------------------------------------------------------------------------------------


def _is_pydantic_base_model(node: ast.expr, imports: dict[str, Any]) -> bool:
    if isinstance(node, ast.Name):
        bound = imports.get(node.id)
        return bound is not None and (bound.module, bound.original) == ("pydantic", "BaseModel")
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "BaseModel"
        and isinstance(node.value, ast.Name)
        and node.value.id == "pydantic"
    )


def _model_configs(cls: ast.ClassDef) -> list[tuple[ast.stmt, ast.Call]]:
    """`model_config = <call>` statements of a class body."""
    found: list[tuple[ast.stmt, ast.Call]] = []
    for stmt in cls.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target: ast.expr | None = stmt.targets[0]
        elif isinstance(stmt, ast.AnnAssign):
            target = stmt.target
        else:
            continue
        value = stmt.value
        if (
            isinstance(target, ast.Name)
            and target.id == "model_config"
            and isinstance(value, ast.Call)
        ):
            found.append((stmt, value))
    return found


def _allows_arbitrary(call: ast.Call) -> ast.keyword | None:
    for kw in call.keywords:
        value = kw.value
        if kw.arg == "arbitrary_types_allowed" and isinstance(value, ast.Constant):
            return kw if value.value is True else None
    return None


def _workaround_classes(pf: PythonFile) -> list[ast.ClassDef]:
    """Classes that subclass pydantic.BaseModel with arbitrary_types_allowed=True."""
    imports = pf.imported_names()
    return [
        cls
        for cls in pf.top_classes()
        if any(_is_pydantic_base_model(b, imports) for b in cls.bases)
        and any(_allows_arbitrary(call) for _, call in _model_configs(cls))
    ]


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
            for cls in _workaround_classes(pf)
        ]

    def fix(self, ctx: Context, findings: list[Finding]) -> None:
        for rel in sorted({f.file for f in findings}):
            pf = ctx.python_files[rel]
            write_like(ctx.project / rel, _to_cog_base_model(pf))


def _to_cog_base_model(pf: PythonFile) -> bytes:
    flagged = _workaround_classes(pf)
    imports = pf.imported_names()
    flagged_ids = {id(c) for c in flagged}
    pydantic_base = imports.get("BaseModel") == Imported("pydantic", "BaseModel")
    # When code outside the flagged classes still uses pydantic's BaseModel under that name,
    # it keeps it, and cog's BaseModel comes in as CogBaseModel.
    outside = [s for s in pf.tree.body if id(s) not in flagged_ids]
    target = (
        "CogBaseModel" if pydantic_base and "BaseModel" in loaded_names(outside) else "BaseModel"
    )

    edits: list[Edit] = []
    for cls in flagged:
        for base in cls.bases:
            if _is_pydantic_base_model(base, imports):
                if not (isinstance(base, ast.Name) and base.id == target):
                    edits.append(Edit(*pf.span(base), target.encode()))
                break
        for stmt, call in _model_configs(cls):
            edits += _model_config_edits(pf, stmt, call)
    first = PythonFile.parse(pf.path, apply_edits(pf.source, edits))

    # pydantic's BaseModel and ConfigDict stay imported only where something still uses them
    # (a `BaseModel` the flagged classes now use is cog's).
    used = loaded_names(first.tree.body)

    def unused(alias: ast.alias) -> bool:
        local = alias.asname or alias.name
        if alias.name not in ("BaseModel", "ConfigDict"):
            return False
        return local not in used or (local == target and alias.name == "BaseModel")

    module_used = any(
        isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "pydantic"
        for n in ast.walk(first.tree)
    )
    edits = []
    for stmt in first.tree.body:
        if isinstance(stmt, ast.ImportFrom) and stmt.module == "pydantic" and not stmt.level:
            edit = drop_from_import(first, stmt, unused)
            if edit is not None:
                edits.append(edit)
        elif (
            isinstance(stmt, ast.Import)
            and not module_used
            and [alias_text(a) for a in stmt.names] == ["pydantic"]
        ):
            edits.append(first.whole_lines(stmt))
    second = PythonFile.parse(pf.path, apply_edits(first.source, edits))
    return _import_from_cog(second, target)


def _model_config_edits(pf: PythonFile, stmt: ast.stmt, call: ast.Call) -> list[Edit]:
    """Remove arbitrary_types_allowed=True from a ConfigDict(...) call (the whole statement
    when nothing else is left in it), and spell pydantic.ConfigDict as ConfigDict."""
    fn = call.func
    qualified = (
        isinstance(fn, ast.Attribute)
        and fn.attr == "ConfigDict"
        and isinstance(fn.value, ast.Name)
        and fn.value.id == "pydantic"
    )
    if not (qualified or (isinstance(fn, ast.Name) and fn.id == "ConfigDict")):
        return []
    kw = _allows_arbitrary(call)
    rename = [Edit(*pf.span(fn), b"ConfigDict")] if qualified else []
    if kw is None:
        return rename
    if len(call.args) + len(call.keywords) == 1:
        return [pf.whole_lines(stmt)]
    start, end = pf.span(kw)
    src = pf.source
    # The argument with the comma after it, or else the comma before it.
    after = end
    while after < len(src) and src[after] in b" \t":
        after += 1
    if after < len(src) and src[after : after + 1] == b",":
        after += 1
        while after < len(src) and src[after] in b" \t":
            after += 1
        return [Edit(start, after), *rename]
    before = start
    while before > 0 and src[before - 1] in b" \t\n":
        before -= 1
    if src[before - 1 : before] == b",":
        before -= 1
        return [Edit(before, end), *rename]
    return [Edit(start, end), *rename]


def _import_from_cog(pf: PythonFile, local: str) -> bytes:
    """The source with cog's BaseModel bound to `local`: added to a top-level
    `from cog import …`, or as a new import after the docstring and __future__ imports."""
    bound = pf.imported_names().get(local)
    if bound is not None and (bound.module, bound.original) == ("cog", "BaseModel"):
        return pf.source
    fragment = "BaseModel" if local == "BaseModel" else f"BaseModel as {local}"
    for stmt in pf.tree.body:
        if isinstance(stmt, ast.ImportFrom) and stmt.module == "cog" and not stmt.level:
            if any((a.asname or a.name) == local for a in stmt.names):
                continue
            names = [alias_text(a) for a in stmt.names] + [fragment]
            start, end = pf.span(stmt)
            return apply_edits(pf.source, [Edit(start, end, import_from_line("cog", names))])
    at = 0
    for index, stmt in enumerate(pf.tree.body):
        docstring = (
            index == 0
            and isinstance(stmt, ast.Expr)
            and isinstance(stmt.value, ast.Constant)
            and isinstance(stmt.value.value, str)
        )
        future = isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__"
        if not (docstring or future):
            break
        at = pf.end_of_line(pf.span(stmt)[1])
    line = b"from cog import " + fragment.encode() + b"\n"
    return pf.source[:at] + line + pf.source[at:]


# Imports that Cog removed: (module, name, why).
_REMOVED_IMPORTS = (
    (
        "cog.types",
        "ExperimentalFeatureWarning",
        "ExperimentalFeatureWarning was removed in cog 0.17; "
        "current_scope().record_metric() is no longer experimental",
    ),
)


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
                    for module, name, why in _REMOVED_IMPORTS:
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
            write_like(ctx.project / rel, _without_removed_imports(ctx.python_files[rel]))


def _without_removed_imports(pf: PythonFile) -> bytes:
    """Drop the removed names from their imports, then the simple top-level statements that
    use them (such as a warnings filter), then the imports only those statements used."""
    drop: dict[str, set[str]] = {}
    for module, name, _ in _REMOVED_IMPORTS:
        drop.setdefault(module, set()).add(name)
    removed: set[str] = set()
    edits = []
    for stmt in pf.tree.body:
        if isinstance(stmt, ast.ImportFrom) and stmt.module in drop:
            names = {a.name for a in stmt.names} & drop[stmt.module]

            def removed_name(alias: ast.alias, names: set[str] = names) -> bool:
                return alias.name in names

            edit = drop_from_import(pf, stmt, removed_name)
            if edit is not None:
                edits.append(edit)
                removed |= {a.asname or a.name for a in stmt.names if a.name in names}
    before = loaded_names(pf.tree.body)
    simple = (ast.Expr, ast.Assign, ast.AnnAssign, ast.AugAssign)
    for stmt in pf.tree.body:
        if isinstance(stmt, simple) and names_in(stmt) & removed:
            edits.append(pf.whole_lines(stmt, tidy=True))
    after_pf = PythonFile.parse(pf.path, apply_edits(pf.source, edits))
    orphaned = before - loaded_names(after_pf.tree.body)
    edits = []
    for stmt in after_pf.tree.body:
        if isinstance(stmt, ast.Import):
            bound = {(a.asname or a.name.split(".")[0]) for a in stmt.names}
            if bound <= orphaned:
                edits.append(after_pf.whole_lines(stmt))
    return apply_edits(after_pf.source, edits)


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


# --- Environment -------------------------------------------------------------------------------


class PythonVersion(Check):
    """Cog compares the local Python with cog.yaml's; here the interpreter comes from the
    project's channel, so the question is whether that channel has the version."""

    name = "env-python-version"
    group = Group.ENVIRONMENT
    description = "Python version"

    def check(self, ctx: Context) -> list[Finding]:
        from cuda_channels.channel import load
        from derivations.lock import Lock, LockError, channel_name, read

        if ctx.config is None:
            return []
        try:
            lock: Lock | None = read(ctx.project)
        except (OSError, LockError):  # a lock this cog cannot read names no channel
            lock = None
        channel = load(channel_name(ctx.config, lock))
        version = ctx.config.build.python_version
        if version in channel.python:
            return []
        known = ", ".join(sorted(channel.python, key=lambda v: tuple(map(int, v.split(".")))))
        return [
            Finding(
                Severity.ERROR,
                f"channel {channel.name} has no Python {version} (it has {known})",
                f"Set build.python_version in {ctx.config_name} to one of {known}",
                ctx.config_name,
            )
        ]


class Sandbox(Check):
    """Build steps that run foreign code (build.run, source distributions) run under
    bubblewrap; Cog's Docker check has no counterpart here, since nothing needs Docker."""

    name = "env-sandbox"
    group = Group.ENVIRONMENT
    description = "Sandbox"

    def check(self, ctx: Context) -> list[Finding]:
        from builders.sandbox import bwrap_path, network_problem, sandbox_works

        if sandbox_works():
            problem = network_problem()
            if problem is None:
                return []
            why, fix = problem
            return [
                Finding(
                    Severity.WARNING,
                    f"{why}, so models run natively and build steps that need the network "
                    "cannot have a network of their own",
                    fix[0].upper() + fix[1:],
                )
            ]
        if bwrap_path() is None:
            message = "bubblewrap (bwrap) is not installed"
        else:
            message = "bubblewrap (bwrap) cannot create namespaces here"
        return [
            Finding(
                Severity.WARNING,
                message + ", so build steps that run commands cannot be sandboxed",
                "Install bubblewrap (apt-get install bubblewrap) and allow unprivileged "
                "user namespaces",
            )
        ]


# The oldest torch (and CUDA) with kernels for a compute capability, by the highest entry a
# device meets: Cog's doctor table (pkg/doctor/gpu_compatibility.go), measured there from each
# wheel's torch._C._cuda_getArchFlags(). Cubins cross no capability major without PTX.
GPU_FLOORS: dict[tuple[int, int], tuple[str, str]] = {
    (12, 0): ("2.7.0", "12.8"),  # Blackwell consumer, RTX 50xx
    (10, 0): ("2.7.0", "12.8"),  # Blackwell datacenter, B100/B200
    (9, 0): ("2.0.1", "11.8"),  # Hopper, H100
}


def compute_capabilities() -> list[tuple[int, int]]:
    """This machine's GPUs' compute capabilities, distinct and ascending; none without
    nvidia-smi or a driver."""
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    query = [smi, "--query-gpu=compute_cap", "--format=csv,noheader"]
    try:
        out = subprocess.run(query, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return []
    found = set()
    for line in out.stdout.splitlines():
        major, dot, minor = line.strip().partition(".")
        if dot and major.isdigit() and minor.isdigit():
            found.add((int(major), int(minor)))
    return sorted(found)


class GpuCompatibility(Check):
    """As Cog's: the pinned torch and its CUDA against the compute capability of each GPU
    here, since an image built for a wheel without kernels for it fails every CUDA call."""

    name = "env-gpu-compat"
    group = Group.ENVIRONMENT
    description = "GPU compatibility"

    def check(self, ctx: Context) -> list[Finding]:
        from packaging.version import Version

        from cuda_channels.cuda import CudaError, load_cuda, pins, select
        from derivations.config import requirement_lines

        config = ctx.config
        if os.environ.get("COG_SKIP_GPU_CHECK") or config is None or not config.build.gpu:
            return []
        try:
            lines = requirement_lines(config, ctx.project)
            torch = pins(lines).get("torch")
            cuda = select(load_cuda(), lines, config.build.cuda, config.build.cudnn).cuda
        except (ConfigError, CudaError):  # other checks and `cog lock` say what is wrong
            return []
        if torch is None:
            return []
        release = Version(torch.partition("+")[0])  # 2.7.0+cu128 meets the 2.7.0 floor
        findings = []
        for capability in compute_capabilities():
            floor = max((k for k in GPU_FLOORS if capability >= k), default=None)
            if floor is None:
                continue
            min_torch, min_cuda = GPU_FLOORS[floor]
            if release >= Version(min_torch) and Version(cuda) >= Version(min_cuda):
                continue
            sm = f"sm_{capability[0]}{capability[1]}"
            findings.append(
                Finding(
                    Severity.WARNING,
                    f"torch=={torch} (CUDA {cuda}) ships no kernels for {sm}, the compute "
                    "capability of this machine's GPU. The image will build, but every CUDA "
                    'operation in it will fail at runtime with "no kernel image is available '
                    'for execution on the device".',
                    f"{sm} requires torch>={min_torch} built against CUDA>={min_cuda}. Pin a "
                    "newer torch, or set COG_SKIP_GPU_CHECK=1 if you are building for a "
                    "different GPU than the one in this machine.",
                )
            )
        return findings


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


def _sentence(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        where = f" ({e.filename})" if e.filename else ""
        return f"{e.strerror}{where}"
    return str(e) or type(e).__name__

"""The rewrites `cog doctor --fix` makes in predictor code, each with the legacy pattern it
removes (which its check also looks for): Predictor/predict() to Runner/run(), pydantic's
BaseModel with arbitrary types to cog's BaseModel, and imports Cog removed. Each returns the
file's new bytes, every other byte as it was; one that cannot be made raises FixError."""

from __future__ import annotations

import ast
from dataclasses import replace
from typing import Any

from cog.doctor.model import FixError
from cog.doctor.python_source import (
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

# --- Predictor to Runner -----------------------------------------------------------------------

_COG_BASE_MODULES = ("cog", "cog.predictor")


def to_runner(pf: PythonFile) -> bytes:
    """The starter predict.py with Predictor, BasePredictor and predict() renamed to Runner,
    BaseRunner and run()."""
    return apply_edits(pf.source, _runner_edits(pf))


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


# --- pydantic's BaseModel to cog's -------------------------------------------------------------


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


def workaround_classes(pf: PythonFile) -> list[ast.ClassDef]:
    """Classes that subclass pydantic.BaseModel with arbitrary_types_allowed=True."""
    imports = pf.imported_names()
    return [
        cls
        for cls in pf.top_classes()
        if any(_is_pydantic_base_model(b, imports) for b in cls.bases)
        and any(_allows_arbitrary(call) for _, call in _model_configs(cls))
    ]


def to_cog_base_model(pf: PythonFile) -> bytes:
    flagged = workaround_classes(pf)
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
    when nothing else is left in it; its line when it stood on one of its own). A
    `pydantic.ConfigDict` keeps its spelling, and so `import pydantic` stays used."""
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
    if kw is None:
        return []
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
        line_start = src.rfind(b"\n", 0, start) + 1
        if not src[line_start:start].strip() and src[after : after + 1] == b"\n":
            return [Edit(line_start, after + 1)]  # it stood alone: its whole line goes
        return [Edit(start, after)]
    before = start
    while before > 0 and src[before - 1] in b" \t\n":
        before -= 1
    if src[before - 1 : before] == b",":
        before -= 1
        return [Edit(before, end)]
    return [Edit(start, end)]


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


# --- Removed imports ---------------------------------------------------------------------------

# Imports that Cog removed: (module, name, why).
REMOVED_IMPORTS = (
    (
        "cog.types",
        "ExperimentalFeatureWarning",
        "ExperimentalFeatureWarning was removed in cog 0.17; "
        "current_scope().record_metric() is no longer experimental",
    ),
)


def without_removed_imports(pf: PythonFile) -> bytes:
    """Drop the removed names from their imports, then the simple top-level statements that
    use them (such as a warnings filter), then the imports only those statements used."""
    drop: dict[str, set[str]] = {}
    for module, name, _ in REMOVED_IMPORTS:
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

"""Output models: BaseModel and TypedDict classes of the predict file, and of the local
modules it imports (pkg/schema/python/models.go). Only direct subclasses of a BaseModel
count, fields are annotated assignments of the class body, and a local module is a file
`a/b.py` for `a.b` (never a package's `__init__.py`)."""

from __future__ import annotations

import ast
import posixpath
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cog.project.static_schema.errors import SchemaError
from cog.project.static_schema.hints import Ann as HintAnn
from cog.project.static_schema.hints import parse as parse_hint
from cog.project.static_schema.imports import Entry, Imports
from cog.project.static_schema.literals import parse_default
from cog.project.static_schema.source import Source
from cog.project.static_schema.types import ModelField, Models

KNOWN_EXTERNAL = frozenset(
    {
        "builtins",
        "typing",
        "typing_extensions",
        "collections",
        "abc",
        "enum",
        "dataclasses",
        "os",
        "sys",
        "io",
        "json",
        "re",
        "math",
        "pathlib",
        "functools",
        "itertools",
        "contextlib",
        "concurrent",
        "asyncio",
        "multiprocessing",
        "threading",
        "logging",
        "warnings",
        "unittest",
        "pytest",
        "numpy",
        "torch",
        "tensorflow",
        "jax",
        "scipy",
        "sklearn",
        "transformers",
        "diffusers",
        "accelerate",
        "safetensors",
        "PIL",
        "cv2",
        "skimage",
        "requests",
        "httpx",
        "aiohttp",
        "fastapi",
        "flask",
        "pydantic",
        "cog",
    }
)


def is_known_external(module: str) -> bool:
    top = module.split(".", 1)[0] if module.find(".") > 0 else module
    return top.lstrip(".") in KNOWN_EXTERNAL


def module_to_file(module: str, source_path: str = "") -> str:
    """moduleToFilePath: `a.b` → a/b.py; `.b` beside the importing file."""
    if module.startswith(".") and source_path:
        level = len(module) - len(module.lstrip("."))
        clean = module.lstrip(".")
        if not clean:
            return ""
        base = posixpath.dirname(source_path)
        base = "" if base == "." else base
        for _ in range(level - 1):
            if not base:
                break
            base = posixpath.dirname(base)
            base = "" if base == "." else base
        return posixpath.join(*([base] if base else []), *clean.split(".")) + ".py"
    clean = module.lstrip(".")
    if not clean:
        return ""
    return posixpath.join(*clean.split(".")) + ".py"


def nested_module(module: str, original: str) -> str:
    if not module or not original:
        return module
    return "." + original if module == "." else f"{module}.{original}"


@dataclass
class Summary:
    imports: Imports | None
    models: Models
    typed_dicts: set[str]
    source_path: str


@dataclass
class ModelContext:
    imports: Imports
    source_path: str
    loaded: dict[str, Summary]
    typed_dicts: set[str] = field(default_factory=set)
    resolved: Models | None = None


def parse_file(path: Path) -> Source | None:
    try:
        text = path.read_bytes()
    except OSError:
        return None
    try:
        return Source.parse(text, str(path))
    except (SyntaxError, ValueError, RecursionError):
        return None


def collect_models(src: Source, ctx: ModelContext) -> Models:
    models: Models = {}
    for statement in src.tree.body:
        if not isinstance(statement, ast.ClassDef):
            continue
        is_model = inherits_base_model(src, statement, ctx.imports)
        is_typed_dict, required_default, parents = typed_dict_info(
            src, statement, ctx.imports, ctx.typed_dicts
        )
        if not is_model and not is_typed_dict:
            continue
        fields = class_fields(src, statement, ctx.imports, is_typed_dict, required_default)
        if is_typed_dict:
            inherited = []
            for parent in parents:
                if parent in models:
                    inherited.append(models[parent])
                elif ctx.resolved is not None and parent in ctx.resolved:
                    inherited.append(ctx.resolved[parent])
            fields = _merge(inherited, fields)
        models[statement.name] = fields
        if is_typed_dict:
            ctx.typed_dicts.add(statement.name)
    return models


def _merge(parents: list[list[ModelField]], own: list[ModelField]) -> list[ModelField]:
    merged: dict[str, ModelField] = {}
    for group in [*parents, own]:
        for f in group:
            merged[f.name] = f
    return list(merged.values())


def _bases(statement: ast.ClassDef) -> list[ast.expr]:
    return list(statement.bases)


def inherits_base_model(src: Source, statement: ast.ClassDef, imports: Imports) -> bool:
    for base in _bases(statement):
        if isinstance(base, ast.Name) and (
            imports.is_base_model(base.id) or base.id == "BaseModel"
        ):
            return True
        if isinstance(base, ast.Attribute) and src.content(base).endswith(".BaseModel"):
            return True
    return False


def typed_dict_info(
    src: Source, statement: ast.ClassDef, imports: Imports, typed_dicts: set[str]
) -> tuple[bool, bool, list[str]]:
    is_typed_dict, required_default, parents = False, True, []
    for base in _bases(statement):
        if isinstance(base, ast.Name):
            if imports.is_typed_dict(base.id) or base.id == "TypedDict":
                is_typed_dict = True
            elif base.id in typed_dicts:
                is_typed_dict = True
                parents.append(base.id)
        elif isinstance(base, ast.Attribute):
            text = src.content(base)
            if text.endswith(".TypedDict"):
                is_typed_dict = True
            elif text in typed_dicts:
                is_typed_dict = True
                parents.append(text)
    for keyword in statement.keywords:
        if keyword.arg == "total" and src.content(keyword.value).strip() == "False":
            required_default = False
    return is_typed_dict, required_default, parents


def class_fields(
    src: Source, statement: ast.ClassDef, imports: Imports, typed_dict: bool, required: bool
) -> list[ModelField]:
    fields = []
    for item in statement.body:
        if not isinstance(item, ast.AnnAssign) or not isinstance(item.target, ast.Name):
            continue
        try:
            ann = parse_hint(src, item.annotation)
        except SchemaError:
            continue
        default = None
        if item.value is not None:
            default = parse_default(src, item.value, src.end(item.annotation))
        ann, key_required = _typed_dict_field(ann, imports, typed_dict, required)
        fields.append(ModelField(item.target.id, ann, default, key_required))
    return fields


def _typed_dict_field(
    ann: HintAnn, imports: Imports, typed_dict: bool, required: bool
) -> tuple[HintAnn, bool | None]:
    if not typed_dict:
        return ann, None
    if ann.kind != "generic" or len(ann.args) != 1:
        return ann, required
    name = ann.name
    if name == "NotRequired" or name.endswith(".NotRequired"):
        return ann.args[0], False
    if name == "Required" or name.endswith(".Required"):
        return ann.args[0], True
    if imports.is_field_qualifier(name):
        entry = imports.get(name)
        if entry is not None and entry.original in ("NotRequired", "Required"):
            return ann.args[0], entry.original == "Required"
    return ann, required


# ---- models of local modules --------------------------------------------------------------


def load_module_models(ctx: ModelContext, root: Path, module: str) -> Models | None:
    if is_known_external(module):
        return None
    py_path = module_to_file(module, ctx.source_path)
    if not py_path:
        return None
    key = posixpath.normpath(py_path)
    if key in ctx.loaded:
        return ctx.loaded[key].models
    ctx.loaded[key] = Summary(None, {}, set(), key)
    full = root / py_path
    if not full.exists():
        del ctx.loaded[key]
        return None
    src = parse_file(full)
    if src is None:
        print(f"cog: warning: failed to read {str(full)!r}", file=sys.stderr)
        return None
    file_ctx = ModelContext(Imports.collect(src), key, ctx.loaded)
    models = collect_models(src, file_ctx)
    file_ctx.resolved = models
    resolve_external(root, models, file_ctx)
    file_ctx.resolved = models
    models.update(collect_models(src, file_ctx))
    ctx.loaded[key] = Summary(file_ctx.imports, models, file_ctx.typed_dicts, key)
    _refresh_aliases(ctx.loaded)
    resolve_external(root, models, file_ctx)
    ctx.loaded[key] = Summary(file_ctx.imports, models, file_ctx.typed_dicts, key)
    return models


def _propagate(
    local: str, entry: Entry, src: Models, dst: Models, src_td: set[str], dst_td: set[str]
) -> None:
    if entry.original in src:
        dst[local] = src[entry.original]
    if entry.original in src_td:
        dst_td.add(local)


def resolve_external(root: Path, models: Models, ctx: ModelContext) -> None:
    """resolveExternalModels: what the file's imports bring from local modules."""
    for local, entry in list(ctx.imports.names.items()):
        module, module_models, nested = _models_for_import(ctx, root, entry)
        if module_models is None:
            _propagate(local, entry, models, models, ctx.typed_dicts, ctx.typed_dicts)
            continue
        for name, fields in module_models.items():
            models[f"{local}.{name}"] = fields
        summary = _summary_of(ctx, module)
        if summary is not None:
            ctx.typed_dicts.update(f"{local}.{name}" for name in summary.typed_dicts)
        if nested or entry.original == entry.module or entry.module == ".":
            continue
        module_typed = summary.typed_dicts if summary is not None else ctx.typed_dicts
        _propagate(local, entry, module_models, models, module_typed, ctx.typed_dicts)
        for name, fields in module_models.items():
            models.setdefault(name, fields)


def _summary_of(ctx: ModelContext, module: str) -> Summary | None:
    py_path = module_to_file(module, ctx.source_path)
    return ctx.loaded.get(posixpath.normpath(py_path)) if py_path else None


def _models_for_import(
    ctx: ModelContext, root: Path, entry: Entry
) -> tuple[str, Models | None, bool]:
    found = load_module_models(ctx, root, entry.module)
    if found is not None:
        return entry.module, found, False
    module = nested_module(entry.module, entry.original)
    if module == entry.module:
        return entry.module, None, False
    return module, load_module_models(ctx, root, module), True


def _refresh_aliases(loaded: dict[str, Summary]) -> None:
    for summary in list(loaded.values()):
        if summary.imports is None:
            continue
        for local, entry in summary.imports.names.items():
            py_path = module_to_file(entry.module, summary.source_path)
            if not py_path:
                continue
            imported = loaded.get(posixpath.normpath(py_path))
            if imported is None:
                continue
            _propagate(
                local,
                entry,
                imported.models,
                summary.models,
                imported.typed_dicts,
                summary.typed_dicts,
            )

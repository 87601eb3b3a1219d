"""The predictor's callable and its inputs, as Cog's parser finds them
(pkg/schema/python/target.go, inputs.go): a class's run() (else its deprecated predict(), also
from a parent class of the file or of a local module), or a function; each annotated
parameter an input, its default a literal, a top-level name, or an `Input(...)` call (also one
a class attribute or method of the file returns)."""

from __future__ import annotations

import ast
import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cog.project.static_schema.errors import SchemaError, unsupported
from cog.project.static_schema.hints import parse as parse_hint
from cog.project.static_schema.imports import Imports
from cog.project.static_schema.literals import (
    INT64,
    Lit,
    Scope,
    module_scope,
    parse_bool,
    parse_default,
    parse_list,
    parse_number,
    parse_string,
    resolve_choices,
    resolve_default,
    resolve_string,
)
from cog.project.static_schema.models import (
    ModelContext,
    collect_models,
    is_known_external,
    module_to_file,
    nested_module,
    parse_file,
    resolve_external,
)
from cog.project.static_schema.source import Source
from cog.project.static_schema.types import FieldType, InType, Models, resolve_input

Function = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass
class InputInfo:
    default: Lit | None = None
    description: str | None = None
    ge: float | None = None
    le: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    regex: str | None = None
    choices: tuple[Lit, ...] | None = None
    deprecated: bool | None = None
    accept: str | None = None


@dataclass
class InputField:
    name: str
    order: int
    field_type: FieldType
    input_type: InType
    info: InputInfo = field(default_factory=InputInfo)


@dataclass
class FileContext:
    src: Source
    imports: Imports
    scope: Scope
    attributes: dict[str, InputInfo]
    methods: dict[str, tuple[list[str], InputInfo]]
    models: Models
    typed_dicts: set[str]
    root: Path | None
    source_path: str
    train: bool
    cache: dict[str, FileContext]
    loading: set[str]


def file_context(
    src: Source,
    root: Path | None,
    source_path: str,
    train: bool,
    cache: dict[str, FileContext],
    loading: set[str],
) -> FileContext:
    """A parsed file's imports, literal names, models and Input registry."""
    imports = Imports.collect(src)
    ctx = ModelContext(imports, source_path, {})
    models = collect_models(src, ctx)
    ctx.resolved = models
    if root is not None:
        resolve_external(root, models, ctx)
        ctx.resolved = models
        models.update(collect_models(src, ctx))
    scope = module_scope(src)
    attributes, methods = input_registry(src, imports, scope)
    return FileContext(
        src,
        imports,
        scope,
        attributes,
        methods,
        models,
        ctx.typed_dicts,
        root,
        source_path,
        train,
        cache,
        loading,
    )


# ---- the Input registry ------------------------------------------------------------------


def is_input_call(src: Source, node: ast.AST, imports: Imports) -> bool:
    if not isinstance(node, ast.Call):
        return False
    name = src.content(node.func)
    if name == "Input":
        return True
    entry = imports.get(name)
    return entry is not None and entry.module == "cog" and entry.original == "Input"


def input_registry(
    src: Source, imports: Imports, scope: Scope
) -> tuple[dict[str, InputInfo], dict[str, tuple[list[str], InputInfo]]]:
    attributes: dict[str, InputInfo] = {}
    methods: dict[str, tuple[list[str], InputInfo]] = {}
    for statement in src.tree.body:
        if not isinstance(statement, ast.ClassDef):
            continue
        for item in statement.body:
            target = value = None
            if isinstance(item, ast.Assign) and len(item.targets) == 1:
                target, value = item.targets[0], item.value
            elif isinstance(item, ast.AnnAssign):
                target, value = item.target, item.value
            if (
                isinstance(target, ast.Name)
                and value is not None
                and is_input_call(src, value, imports)
            ):
                key = f"{statement.name}.{target.id}"
                with contextlib.suppress(SchemaError):  # Cog skips what it cannot read
                    attributes[key] = input_call(src, value, key, scope)  # type: ignore[arg-type]
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                call = _returned_input(src, item, imports)
                if call is None:
                    continue
                key = f"{statement.name}.{item.name}"
                params = [
                    a.arg
                    for a in [*item.args.posonlyargs, *item.args.args, *item.args.kwonlyargs]
                    if a.arg not in ("self", "cls")
                ]
                with contextlib.suppress(SchemaError):
                    methods[key] = (params, input_call(src, call, key, scope))
    return attributes, methods


def _returned_input(src: Source, function: Function, imports: Imports) -> ast.Call | None:
    for statement in function.body:
        value = statement.value if isinstance(statement, ast.Return) else None
        if value is not None and is_input_call(src, value, imports):
            return value  # type: ignore[return-value]
    return None


def input_call(src: Source, call: ast.Call, param: str, scope: Scope) -> InputInfo:
    """parseInputCall: Input()'s keyword arguments that are literals (positional ones are
    not read); a default that is not one counts as None."""
    info = InputInfo()
    for keyword in sorted(call.keywords, key=lambda k: src.start(k.value)):
        if keyword.arg is None:
            continue
        value = keyword.value
        floor = src.start(keyword)
        key = keyword.arg
        if key == "default":
            info.default = resolve_default(src, value, scope, floor) or Lit("none")
        elif key == "default_factory":
            raise SchemaError(
                "DefaultFactoryNotSupported",
                f"parameter '{param}': default_factory is not supported in static schema "
                "generation",
            )
        elif key == "description":
            text = resolve_string(src, value, scope, floor)
            if text is not None:
                info.description = text
        elif key in ("ge", "le"):
            number = parse_number(src, value)
            if number is not None:
                setattr(info, key, number)
        elif key in ("min_length", "max_length"):
            number = parse_number(src, value)
            if number is not None:
                setattr(info, key, _uint64(number))
        elif key in ("regex", "accept"):
            text = None if src.parenthesized(value, floor) else parse_string(src, value)
            if text is not None:
                setattr(info, key, text)
        elif key == "choices":
            items = parse_list(src, value, floor)
            if items is None:
                items = resolve_choices(src, value, scope, floor)
            if items is None:
                raise SchemaError(
                    "ChoicesNotResolvable",
                    f"parameter '{param}': choices expression cannot be statically resolved",
                )
            info.choices = items
        elif key == "deprecated":
            flag = parse_bool(src, value)
            if flag is not None:
                info.deprecated = flag
    return info


def _uint64(number: float) -> int:
    """Go's uint64(float64): the integer part, wrapped (as amd64 converts a negative one)."""
    if number != number or number in (float("inf"), float("-inf")):
        return 0x8000000000000000
    return int(number) % 2**64


def _resolve_reference(ctx: FileContext, node: ast.AST) -> InputInfo | None:
    """`Inputs.prompt` or `Inputs.steps(default=4)`: an Input() a class of the file holds."""
    src = ctx.src
    if isinstance(node, ast.Attribute):
        found = ctx.attributes.get(src.content(node))
        return None if found is None else _copy(found)
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
        return None
    method = ctx.methods.get(src.content(node.func))
    if method is None:
        return None
    params, base = method
    resolved = _copy(base)
    values: dict[str, ast.expr] = {}
    for i, arg in enumerate(node.args):
        if i < len(params):
            values[params[i]] = arg
    for keyword in node.keywords:
        if keyword.arg is not None:
            values[keyword.arg] = keyword.value
    for name, value in values.items():
        floor = src.start(node.func)
        if name == "default":
            parsed = parse_default(src, value, floor)
            if parsed is not None:
                resolved.default = parsed
        elif name == "description":
            text = None if src.parenthesized(value, floor) else parse_string(src, value)
            if text is not None:
                resolved.description = text
        elif name in ("ge", "le"):
            number = parse_number(src, value)
            if number is not None:
                setattr(resolved, name, number)
    return resolved


def _copy(info: InputInfo) -> InputInfo:
    return InputInfo(**vars(info))


# ---- the target ---------------------------------------------------------------------------


def find_target(ctx: FileContext, ref: str) -> tuple[Function, FileContext]:
    method = "train" if ctx.train else "predict"
    for statement in ctx.src.tree.body:
        if isinstance(statement, ast.ClassDef) and statement.name == ref:
            if not ctx.train:
                return _predict_method(ctx, statement, ref)
            for item in statement.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name == method:
                    return item, ctx
            raise SchemaError("MethodNotFound", f"{ref}.{method} not found")
    found = _function(ctx, ref)
    if found is None and ref != method:
        found = _function(ctx, method)
    if found is None:
        raise SchemaError("PredictorNotFound", ref)
    return found, ctx


def _function(ctx: FileContext, name: str) -> Function | None:
    for statement in ctx.src.tree.body:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef) and statement.name == name:
            return statement
    return None


def _predict_method(
    ctx: FileContext, statement: ast.ClassDef, name: str
) -> tuple[Function, FileContext]:
    run, predict = _collect_methods(ctx, statement, name, set())
    if run is not None:
        return run
    if predict is not None:
        if name not in _WARNED:  # once a process: a build reads the signature more than once
            _WARNED.add(name)
            print(
                f"cog: warning: {name}.predict() is deprecated; use run() instead", file=sys.stderr
            )
        return predict
    raise SchemaError("MethodNotFound", f"{name} must define run() or predict()")


Found = tuple[Function, FileContext] | None
_WARNED: set[str] = set()


def _collect_methods(
    ctx: FileContext, statement: ast.ClassDef, name: str, seen: set[str]
) -> tuple[Found, Found]:
    key = f"{id(ctx)}:{name}"
    if key in seen:
        return None, None
    seen.add(key)
    run: Found = None
    predict: Found = None
    for item in statement.body:
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
            if item.name == "run":
                run = (item, ctx)
            elif item.name == "predict":
                predict = (item, ctx)
    for base in statement.bases:
        if not isinstance(base, ast.Name | ast.Attribute):
            continue
        parent = ctx.src.content(base)
        parent_ctx, parent_class, parent_name = ctx, _class(ctx, parent), parent
        if parent_class is None:
            located = _imported_class(ctx, parent)
            if located is None:
                continue
            parent_ctx, parent_class, parent_name = located
        parent_run, parent_predict = _collect_methods(parent_ctx, parent_class, parent_name, seen)
        run = run or parent_run
        predict = predict or parent_predict
    return run, predict


def _class(ctx: FileContext, name: str) -> ast.ClassDef | None:
    for statement in ctx.src.tree.body:
        if isinstance(statement, ast.ClassDef) and statement.name == name:
            return statement
    return None


def _imported_class(ctx: FileContext, parent: str) -> tuple[FileContext, ast.ClassDef, str] | None:
    if ctx.root is None:
        return None
    head, dot, rest = parent.partition(".")
    entry = ctx.imports.get(head if dot else parent)
    if entry is None:
        return None
    module, imported = entry.module, entry.original
    class_name = rest if dot else entry.original
    parent_ctx = _load(ctx, module)
    if parent_ctx is None:
        parent_ctx = _load(ctx, nested_module(module, imported))
    if parent_ctx is None:
        return None
    found = _class(parent_ctx, class_name)
    return None if found is None else (parent_ctx, found, class_name)


def _load(ctx: FileContext, module: str) -> FileContext | None:
    if is_known_external(module) or ctx.root is None:
        return None
    py_path = module_to_file(module, ctx.source_path)
    if not py_path:
        return None
    full = str((ctx.root / py_path).resolve())
    if full in ctx.cache:
        return ctx.cache[full]
    if full in ctx.loading:
        return None
    ctx.loading.add(full)
    try:
        src = parse_file(ctx.root / py_path)
        if src is None:
            return None
        loaded = file_context(src, ctx.root, py_path, ctx.train, ctx.cache, ctx.loading)
        ctx.cache[full] = loaded
        return loaded
    finally:
        ctx.loading.discard(full)


# ---- inputs -------------------------------------------------------------------------------


def extract_inputs(ctx: FileContext, function: Function, method: str) -> dict[str, InputField]:
    src = ctx.src
    args = function.args
    positional = [*args.posonlyargs, *args.args]
    defaults: dict[int, ast.expr] = {}
    for offset, default in enumerate(args.defaults):
        defaults[id(positional[len(positional) - len(args.defaults) + offset])] = default
    for arg, kw_default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        if kw_default is not None:
            defaults[id(arg)] = kw_default
    params: list[tuple[ast.arg, str]] = [(a, "") for a in positional]
    if args.vararg is not None:
        params.append((args.vararg, "*"))
    params += [(a, "") for a in args.kwonlyargs]
    if args.kwarg is not None:
        params.append((args.kwarg, "**"))
    params.sort(key=lambda p: src.start(p[0]))
    skip_self = _first_identifier_is_self(params, defaults)
    inputs: dict[str, InputField] = {}
    order = 0
    seen_self = False
    for arg, star in params:
        given = defaults.get(id(arg))
        if star:
            if arg.annotation is not None:
                raise SchemaError("Parse", "typed_parameter has no identifier")
            continue
        if arg.annotation is None:
            if given is None:
                if skip_self and not seen_self and arg.arg == "self":
                    seen_self = True
                continue
            raise SchemaError(
                "MissingTypeAnnotation", f"parameter '{arg.arg}' on {method} has no type annotation"
            )
        found = _parameter(ctx, arg, given, order)
        inputs[found.name] = found
        order += 1
    return inputs


def _first_identifier_is_self(
    params: list[tuple[ast.arg, str]], defaults: dict[int, ast.expr]
) -> bool:
    for arg, star in params:
        if not star and arg.annotation is None and id(arg) not in defaults:
            return arg.arg == "self"
    return False


def _parameter(ctx: FileContext, arg: ast.arg, default: ast.expr | None, order: int) -> InputField:
    src = ctx.src
    assert arg.annotation is not None
    ann = parse_hint(src, arg.annotation)
    input_type, field_type = resolve_input(ann, ctx.imports, ctx.typed_dicts)
    name = arg.arg
    if default is None:
        found = InputField(name, order, field_type, input_type)
        return _validated(found)
    floor = src.end(arg.annotation)
    if is_input_call(src, default, ctx.imports):
        info = input_call(src, default, name, ctx.scope)  # type: ignore[arg-type]
        return _validated(_with_info(name, order, input_type, field_type, info))
    referenced = _resolve_reference(ctx, default)
    if referenced is not None:
        return _validated(_with_info(name, order, input_type, field_type, referenced))
    value = resolve_default(src, default, ctx.scope, floor)
    if value is not None:
        return _validated(InputField(name, order, field_type, input_type, InputInfo(default=value)))
    raise SchemaError(
        "DefaultNotResolvable",
        f"parameter '{name}': default `{src.content(default)}` cannot be statically resolved",
    )


def _with_info(
    name: str, order: int, input_type: InType, field_type: FieldType, info: InputInfo
) -> InputField:
    if info.accept is not None and field_type.prim not in ("Path", "File"):
        raise SchemaError(
            "AcceptOnNonFileType",
            f"accept is only valid on Path or File inputs (parameter '{name}')",
        )
    return InputField(name, order, field_type, input_type, info)


def _validated(found: InputField) -> InputField:
    info = found.info
    if found.input_type.kind == "union" and (
        info.choices
        or any(
            v is not None for v in (info.ge, info.le, info.min_length, info.max_length, info.regex)
        )
    ):
        raise unsupported("constraints and choices are not supported on union inputs")
    return found


# ---- decorators ---------------------------------------------------------------------------


def _decorator_is(src: Source, imports: Imports, node: ast.expr, name: str) -> bool:
    expr = node.func if isinstance(node, ast.Call) else node
    if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name):
        entry = imports.get(expr.value.id)
        return (
            expr.attr == name
            and entry is not None
            and entry.module == "cog"
            and entry.original == "cog"
        )
    if isinstance(expr, ast.Name):
        entry = imports.get(expr.id)
        return entry is not None and entry.module == "cog" and entry.original == name
    return False


def supports_streaming(ctx: FileContext, function: Function) -> bool:
    return any(_decorator_is(ctx.src, ctx.imports, d, "streaming") for d in function.decorator_list)


def concurrency_max(ctx: FileContext, function: Function) -> int | None:
    src = ctx.src
    for decorator in function.decorator_list:
        if not _decorator_is(src, ctx.imports, decorator, "concurrent"):
            continue
        if not isinstance(decorator, ast.Call) or not (decorator.args or decorator.keywords):
            return 1
        arguments = [*decorator.args, *decorator.keywords]
        keyword = decorator.keywords[0] if decorator.keywords else None
        if len(arguments) != 1 or keyword is None or keyword.arg != "max":
            raise unsupported_concurrent(
                "@concurrent only supports literal integer max=... arguments"
            )
        value = parse_default(src, keyword.value, src.start(keyword))
        if value is None or value.kind != "int":
            raise unsupported_concurrent("@concurrent max must be an integer literal")
        if value.value < 1:
            raise unsupported_concurrent("@concurrent max must be at least 1")
        if value.value >= INT64:
            raise unsupported_concurrent("@concurrent max is too large")
        return int(value.value)
    return None


def unsupported_concurrent(message: str) -> SchemaError:
    return SchemaError("UnsupportedType", message)

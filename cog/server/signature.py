"""Loading a predictor from its reference and describing its signature as plain JSON.

The worker sends this description to the server once; the server builds its validation
models and OpenAPI schema from it, so the server never imports the model's code.

A type is described as {"kind": K, ...}: K is str, int, float, bool, path, file, secret,
url, any, dict (a JSON object; an output's `dict[str, V]` has "values"), list (with
"items"), union (an input's JSON-native members, "variants"), object (an output model: a
`cog.BaseModel`, a pydantic model or a TypedDict, with "fields" and "required"); "nullable"
marks Optional. An output also says whether it is an iterator and whether it concatenates.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import pathlib
import re
import sys
import types
import typing
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from cog.input import MISSING, FieldInfo
from cog.model import BaseModel
from cog.predictor import BasePredictor, BaseRunner
from cog.types import (
    AsyncConcatenateIterator,
    ConcatenateIterator,
    File,
    Path,
    Secret,
    URLFile,
    _OpaqueMarker,
)


class PredictorError(Exception):
    """The predictor cannot be loaded or described: one sentence for the setup logs."""


_SIMPLE: dict[Any, str] = {
    str: "str",
    int: "int",
    float: "float",
    bool: "bool",
    Path: "path",
    pathlib.Path: "path",
    File: "file",
    Secret: "secret",
    URLFile: "url",
    Any: "any",
}


def load(ref: str, root: pathlib.Path | None = None) -> Any:
    """`predict.py:Predictor` -> the object (an instance of a class, or a function)."""
    file, sep, attr = ref.partition(":")
    if not sep or not attr:
        raise PredictorError(f"predictor reference {ref!r} must look like predict.py:Predictor")
    path = (root or pathlib.Path.cwd()) / file
    if not path.is_file():
        raise PredictorError(f"predictor file {path} does not exist")
    name = path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PredictorError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    # The project's root is importable (a predictor in a subdirectory imports its siblings'
    # modules from there, as under Cog, which runs in /src), and the predictor's own folder.
    for folder in (str(root or pathlib.Path.cwd()), str(path.parent)):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    spec.loader.exec_module(module)
    try:
        target = getattr(module, attr)
    except AttributeError:
        raise PredictorError(f"{file} has no {attr!r}") from None
    return target() if inspect.isclass(target) else target


def load_reduced(ref: str, root: pathlib.Path | None = None) -> Any | None:
    """As `load`, from the module reduced to what its signature reads (cog.server.skeleton),
    without importing what the model imports; None when its source cannot be reduced. Its
    methods have no bodies: it is only for describing, never for running."""
    from cog.server.skeleton import reduce

    file, _, attr = ref.partition(":")
    path = (root or pathlib.Path.cwd()) / file
    try:
        source = path.read_text()
    except (OSError, UnicodeDecodeError):
        return None
    reduced = reduce(source, str(path), attr)
    if reduced is None:
        return None
    module = types.ModuleType(path.stem)
    module.__file__ = str(path)
    sys.modules[path.stem] = module  # where typing and pydantic look the module's names up
    exec(compile(reduced, str(path), "exec"), module.__dict__)
    target = getattr(module, attr)
    return target() if inspect.isclass(target) else target


def entry_point(target: Any, method: str) -> Callable[..., Any]:
    """The function to call: `predict`/`run`/`train`, or the target itself if a function."""
    if inspect.isfunction(target):
        return typing.cast(Callable[..., Any], target)
    placeholders = (BaseRunner.run, BasePredictor.predict)  # the SDK's, raising if called
    names = ["train"] if method == "train" else ["run", "predict"]
    for name in names:
        impl = getattr(type(target), name, None)
        if callable(impl) and impl not in placeholders:
            return typing.cast(Callable[..., Any], getattr(target, name))
    raise PredictorError(f"{type(target).__name__} defines none of {', '.join(names)}()")


def _is_union(tpe: Any) -> bool:
    return typing.get_origin(tpe) in (typing.Union, types.UnionType)


def _pydantic_model(tpe: Any) -> bool:
    """A pydantic v2 model class. pydantic is never imported here: a model that subclasses
    one has imported it already."""
    base = getattr(sys.modules.get("pydantic"), "BaseModel", None)
    return (
        inspect.isclass(tpe)
        and base is not None
        and issubclass(tpe, base)
        and isinstance(getattr(tpe, "model_fields", None), dict)
    )


def _model(tpe: Any) -> bool:
    return inspect.isclass(tpe) and (issubclass(tpe, BaseModel) or _pydantic_model(tpe))


def _name(tpe: Any) -> str:
    return str(getattr(tpe, "__name__", tpe))


def describe_type(tpe: Any, where: str) -> dict[str, Any]:
    """An input's type. As Cog: scalars, files, secrets, lists of them, JSON objects (dict,
    TypedDict), `X | None`, and unions of JSON-native members (str, int, float, bool, dict,
    lists of those), optionally with None; a BaseModel is an output type only."""
    origin = typing.get_origin(tpe)
    args = typing.get_args(tpe)
    if origin is typing.Annotated:
        if _opaque(tpe):
            return _opaque_type(args[0])
        return describe_type(args[0], where)
    if _is_union(tpe):
        rest = [a for a in args if a is not type(None)]
        nullable = len(rest) < len(args)
        if len(rest) == 1:
            return {**describe_type(rest[0], where), "nullable": True}
        variants = [describe_type(a, where) for a in rest]
        for variant in variants:
            _check_union_variant(variant, where)
        union: dict[str, Any] = {"kind": "union", "variants": variants}
        return {**union, "nullable": True} if nullable else union
    if origin in (list, typing.List):  # noqa: UP006
        if args and _opaque(args[0]):  # each item an opaque object, whatever its own shape
            return {"kind": "list", "items": {"kind": "dict"}}
        items = describe_type(args[0] if args else Any, where)
        if items.get("nullable") or items["kind"] in ("list", "union"):
            raise PredictorError(
                f"{where}: unsupported type: nested generics like List[Optional[X]] are not "
                "supported"
            )
        return {"kind": "list", "items": items}
    if tpe is dict or origin in (dict, typing.Dict) or typing.is_typeddict(tpe):  # noqa: UP006
        return {"kind": "dict"}  # a JSON object, as Cog types dict, Dict[str, X] and TypedDict
    if tpe in _SIMPLE:
        return {"kind": _SIMPLE[tpe]}
    if inspect.isclass(tpe) and issubclass(tpe, pathlib.PurePath):
        return {"kind": "path"}
    if _model(tpe):
        raise PredictorError(
            f"{where}: unsupported type: {_name(tpe)} (a BaseModel is an output type, not an "
            "input type)"
        )
    raise PredictorError(f"{where}: unsupported type {_name(tpe)!r}")


def _opaque(tpe: Any) -> bool:
    """`Annotated[T, cog.Opaque]`: T is a JSON object the schema does not look into."""
    return typing.get_origin(tpe) is typing.Annotated and any(
        isinstance(meta, _OpaqueMarker) for meta in typing.get_args(tpe)[1:]
    )


def _opaque_type(inner: Any) -> dict[str, Any]:
    """An opaque T as Cog describes it: an object (`{"type": "object"}`), keeping the shape
    around it: `list[T]` is a list of objects, `T | None` may be left out, and so may
    `list[T] | None`. The value passes through as sent, and back as returned."""
    if inner is list or typing.get_origin(inner) in (list, typing.List):  # noqa: UP006
        return {"kind": "list", "items": {"kind": "dict"}}
    args = typing.get_args(inner)
    if _is_union(inner) and len(args) == 2 and type(None) in args:
        (rest,) = [a for a in args if a is not type(None)]
        return {**_opaque_type(rest), "nullable": True}
    return {"kind": "dict"}


_UNION_REFUSED = {"path": "Path", "file": "File", "secret": "Secret", "url": "URLFile"}


def _check_union_variant(variant: dict[str, Any], where: str) -> None:
    """As Cog: a union's members are JSON-native, so a client and the server agree on which
    one a value is; files and secrets would be ambiguous (a URL or a string?)."""
    kind = variant["kind"]
    if kind in _UNION_REFUSED:
        raise PredictorError(
            f"{where}: unsupported type: {_UNION_REFUSED[kind]} is not supported in union inputs"
        )
    if kind == "list":
        _check_union_variant(variant["items"], where)


def describe_output_type(tpe: Any, where: str = "output") -> dict[str, Any]:
    """An output's type, as Cog resolves it: scalars, files, lists (nested too), `dict[str, V]`,
    JSON objects, and models (`cog.BaseModel`, a pydantic model, a TypedDict) whose fields
    may themselves be any of these or `X | None`. An output is never Optional nor a union."""
    origin = typing.get_origin(tpe)
    args = typing.get_args(tpe)
    if origin is typing.Annotated:
        if _opaque(tpe):
            opaque = _opaque_type(args[0])
            if opaque.get("nullable"):
                raise PredictorError(
                    f"{where}: unsupported output type: Optional is not allowed as a return type"
                )
            return opaque
        return describe_output_type(args[0], where)
    if _is_union(tpe):
        if type(None) in args:
            raise PredictorError(
                f"{where}: unsupported output type: Optional is not allowed as a return type"
            )
        raise PredictorError(f"{where}: unsupported type: union types are not supported as output")
    if origin in (list, typing.List) or tpe in (list, typing.List):  # noqa: UP006
        if args and _opaque(args[0]):
            return {"kind": "list", "items": {"kind": "dict"}}
        items = describe_output_type(args[0], where) if args else {"kind": "dict"}
        return {"kind": "list", "items": items}
    if origin in (dict, typing.Dict) and len(args) == 2:  # noqa: UP006
        return {"kind": "dict", "values": describe_output_type(args[1], where)}
    if tpe is dict or origin in (dict, typing.Dict):  # noqa: UP006
        return {"kind": "dict"}
    if tpe in _SIMPLE:
        return {"kind": _SIMPLE[tpe]}
    if inspect.isclass(tpe) and issubclass(tpe, pathlib.PurePath):
        return {"kind": "path"}
    if _model(tpe) or typing.is_typeddict(tpe):
        return _describe_model(tpe, where)
    raise PredictorError(f"{where}: unsupported type {_name(tpe)!r}")


def _describe_model(tpe: Any, where: str) -> dict[str, Any]:
    try:
        hints = typing.get_type_hints(tpe, include_extras=True)
    except Exception as e:
        raise PredictorError(f"{where}: the fields of {_name(tpe)} cannot be read: {e}") from None
    if _pydantic_model(tpe):
        declared = {
            name: (hints.get(name, info.annotation), not info.is_required())
            for name, info in tpe.model_fields.items()
        }
    elif typing.is_typeddict(tpe):
        optional_keys: frozenset[str] = getattr(tpe, "__optional_keys__", frozenset())
        declared = {
            name: (
                hint,
                _qualifier(hint) == "NotRequired"
                or (name in optional_keys and _qualifier(hint) != "Required"),
            )
            for name, hint in hints.items()
        }  # the qualifier decides when the dict's own keys missed it (string annotations)
    else:
        declared = {f.name: (hints[f.name], _has_default(f)) for f in dataclasses.fields(tpe)}
    fields: dict[str, Any] = {}
    required = []
    for name, (hint, has_default) in declared.items():
        while _qualifier(hint):  # a TypedDict's Required[X] / NotRequired[X] is X
            hint = typing.get_args(hint)[0]
        inner = hint
        while typing.get_origin(inner) is typing.Annotated:
            inner = typing.get_args(inner)[0]
        rest = [a for a in typing.get_args(inner) if a is not type(None)]
        if _is_union(inner) and len(rest) == 1:  # Optional[X]: allowed on a field
            fields[name] = {
                **describe_output_type(rest[0], f"{where} field {name!r}"),
                "nullable": True,
            }
        else:
            fields[name] = describe_output_type(hint, f"{where} field {name!r}")
            if not has_default:
                required.append(name)
    return {"kind": "object", "name": _name(tpe), "fields": fields, "required": required}


def _qualifier(hint: Any) -> str | None:
    """ "Required", "NotRequired" or "ReadOnly" when `hint` is one of those wrappers (typing's,
    or typing_extensions' on older Pythons: matched by name, as the SDK imports neither)."""
    name = getattr(typing.get_origin(hint), "_name", None)
    return name if name in ("Required", "NotRequired", "ReadOnly") else None


def _has_default(f: dataclasses.Field[Any]) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def describe_output(tpe: Any) -> dict[str, Any]:
    if tpe is inspect.Signature.empty:
        return {"kind": "any"}
    while typing.get_origin(tpe) is typing.Annotated and not _opaque(tpe):
        tpe = typing.get_args(tpe)[0]  # other metadata says nothing to Cog
    origin = typing.get_origin(tpe) or tpe
    args = typing.get_args(tpe)
    concatenate = inspect.isclass(origin) and issubclass(
        origin, (ConcatenateIterator, AsyncConcatenateIterator)
    )
    if concatenate or origin in (Iterator, AsyncIterator, typing.Iterator, typing.AsyncIterator):
        item = describe_output_type(args[0] if args else Any, "output")
        return {**item, "iterator": True, "concatenate": bool(concatenate)}
    return describe_output_type(tpe, "output")


def _json_default(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_default(v, where) for v in value]
    if isinstance(value, (pathlib.PurePath, Secret)):
        return str(value) if not isinstance(value, Secret) else value.get_secret_value()
    raise PredictorError(f"{where}: default {value!r} cannot be written as JSON")


def describe_inputs(fn: Callable[..., Any]) -> list[dict[str, Any]]:
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as e:
        raise PredictorError(f"the annotations of {fn.__name__}() cannot be read: {e}") from None
    inputs = []
    params = [p for p in inspect.signature(fn).parameters.values() if p.name != "self"]
    for order, param in enumerate(params):
        where = f"input {param.name!r}"
        if param.name not in hints:
            raise PredictorError(f"{where} has no type annotation")
        info = param.default if isinstance(param.default, FieldInfo) else None
        default = info.default if info else param.default
        entry: dict[str, Any] = {
            "name": param.name,
            "order": order,
            "type": describe_type(hints[param.name], where),
        }
        if default is not MISSING and default is not inspect.Parameter.empty:
            entry["default"] = _json_default(default, where)
        if info:
            for key in ("description", "ge", "le", "min_length", "max_length", "regex"):
                if getattr(info, key) is not None:
                    entry[key] = getattr(info, key)
            if info.choices is not None:
                entry["choices"] = _json_default(info.choices, where)
            if info.deprecated:
                entry["deprecated"] = True
            if info.accept is not None:
                kind = entry["type"].get("items", entry["type"])["kind"]
                if kind not in ("path", "file"):
                    raise PredictorError(f"{where}: accept is only valid on Path or File inputs")
                entry["accept"] = info.accept
            _check_default(entry, where)
        inputs.append(entry)
    return inputs


def _check_default(entry: dict[str, Any], where: str) -> None:
    """A default its own constraints refuse is an error at build, in Cog's words (its SDK's
    _inspector checks the same), not a failure of the first prediction that omits it."""
    default = entry.get("default")
    if default is None:
        return
    values = default if isinstance(default, list) else [default]
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    texts = [v for v in values if isinstance(v, str)]
    if "ge" in entry and any(v < entry["ge"] for v in numbers):
        raise PredictorError(f"invalid default for {where}: must be at minimum {entry['ge']}")
    if "le" in entry and any(v > entry["le"] for v in numbers):
        raise PredictorError(f"invalid default for {where}: must be at maximum {entry['le']}")
    if "min_length" in entry and any(len(v) < entry["min_length"] for v in texts):
        raise PredictorError(f"default conflicts with min_length={entry['min_length']} for {where}")
    if "max_length" in entry and any(len(v) > entry["max_length"] for v in texts):
        raise PredictorError(f"default conflicts with max_length={entry['max_length']} for {where}")
    if "regex" in entry and not all(re.match(entry["regex"], v) for v in texts):
        raise PredictorError(f"default not a regex match for {where}")


def describe(target: Any, fn: Callable[..., Any]) -> dict[str, Any]:
    is_async = inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)
    return {
        "inputs": describe_inputs(fn),
        "output": describe_output(
            typing.get_type_hints(fn, include_extras=True).get("return", inspect.Signature.empty)
        ),
        "is_async": is_async,
        "streaming": bool(getattr(fn, "__cog_streaming__", False)),
        "max_concurrency": int(getattr(fn, "__cog_concurrent_max__", 1)),
        "healthcheck": callable(getattr(target, "healthcheck", None)),
    }

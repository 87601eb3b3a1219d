"""Probes whichever `cog` package this interpreter imports and prints what it finds as JSON.

Run by tests/sdk/test_sdk_surface.py twice, with the same interpreter: once as Cog 0.23.1's venv
has it (`python -I sdk_probe.py ...`), once with nothing but the standard library and this
repository's SDK (`python -I -S sdk_probe.py --root REPO ...`), so both answers come from one
Python and differ only by the `cog` they describe. Standard library only.

    surface [MODULE ...]   each public name of each module: its kind, call signature, bases,
                           members, dataclass fields, enum members, value, and what touching
                           it prints or warns; with no modules, the package's public modules
                           (no `_x`, nothing that is not the SDK)
    cases                  runs the cases on stdin ({"prelude", "cases": [{"id", "code"}]}),
                           each in a module of its own that the prelude has filled, and says
                           what came of each: the value of its last expression or what it
                           raised, and the warnings and output it gave
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import enum
import importlib
import inspect
import io
import json
import pathlib
import pkgutil
import re
import sys
import tempfile
import types
import typing
import warnings
from typing import Any

# Modules whose classes are named without their module: the SDK's own (Cog keeps some of its
# types in `coglet`, its native server), and where the standard library keeps generic types.
_BARE = ("cog", "coglet", "builtins", "typing", "collections.abc", "_collections_abc")
# Class attributes every class has or that say nothing a caller can use.
_NOISE = {
    "__dict__",
    "__doc__",
    "__module__",
    "__weakref__",
    "__annotations__",
    "__qualname__",
    "__slots__",
    "__orig_bases__",
    "__parameters__",
    "__abstractmethods__",
    "__dataclass_fields__",
    "__dataclass_params__",
    "__match_args__",
    "__hash__",  # its presence is checked through behaviour (hash of instances)
}


def _bare(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in _BARE)


def type_name(t: Any) -> str:
    """A class as a reader names it: the SDK's and the builtins' by name, others with module."""
    module = getattr(t, "__module__", "") or ""
    name = getattr(t, "__qualname__", None) or getattr(t, "__name__", None) or repr(t)
    return name if _bare(module) else f"{module}.{name}"


def render_type(t: Any) -> str:
    """An annotation, canonically: unions as sorted `A | B | None`, typing's aliases as the
    builtins they stand for, type variables by their bound (their names are private)."""
    if isinstance(t, str):
        return t.replace("typing.", "")
    if t is None or t is type(None):
        return "None"
    if t is Any:
        return "Any"
    if t is Ellipsis:
        return "..."
    if isinstance(t, typing.TypeVar):
        bound = t.__bound__
        return f"TypeVar({render_type(bound)})" if bound is not None else "TypeVar"
    if isinstance(t, typing.ForwardRef):
        return t.__forward_arg__
    if isinstance(t, list):
        return "[" + ", ".join(render_type(a) for a in t) + "]"
    origin = typing.get_origin(t)
    args = typing.get_args(t)
    if origin is typing.Union or origin is types.UnionType:
        members = sorted({render_type(a) for a in args if a is not type(None)})
        return " | ".join(members + (["None"] if type(None) in args else []))
    if origin is typing.Literal:
        return "Literal[" + ", ".join(repr(a) for a in args) + "]"
    if origin is not None:
        inner = ", ".join(render_type(a) for a in args)
        return f"{type_name(origin)}[{inner}]" if args else type_name(origin)
    if isinstance(t, type):
        return type_name(t)
    return re.sub(r"\btyping\.", "", repr(t))


def render_value(v: Any, depth: int = 0) -> Any:
    """A value as JSON that says what it is: Python literals by repr, containers item by item,
    paths and files by type and name, other objects by type and a repr without addresses."""
    if depth > 6:
        return "..."
    if v is None or isinstance(v, (bool, int, float, str, bytes)):
        return repr(v)
    if isinstance(v, enum.Enum):
        return f"{type_name(type(v))}.{v.name}"
    if isinstance(v, BaseException):
        return {"raises": [type_name(type(v)), str(v)]}
    if isinstance(v, (list, tuple)):
        return [render_value(x, depth + 1) for x in v]
    if isinstance(v, (set, frozenset)):
        return sorted(json.dumps(render_value(x, depth + 1)) for x in v)
    if isinstance(v, dict):
        return {str(k): render_value(x, depth + 1) for k, x in v.items()}
    if isinstance(v, type):
        return f"<class {type_name(v)}>"
    if isinstance(v, (io.BytesIO, io.StringIO)):
        return f"{type_name(type(v))}({v.getvalue()!r})"
    if isinstance(v, pathlib.PurePath):
        shown = f"{type_name(type(v))}({str(v)!r})"
        attrs = {
            k: render_value(x, depth + 1)
            for k, x in getattr(v, "__dict__", {}).items()
            if k[0] != "_"
        }
        return {shown: attrs} if attrs else shown
    if inspect.isfunction(v) or inspect.isbuiltin(v) or inspect.ismethod(v):
        return f"<function {v.__name__}>"
    if dataclasses.is_dataclass(v):
        fields = {
            f.name: render_value(getattr(v, f.name), depth + 1) for f in dataclasses.fields(v)
        }
        return {type_name(type(v)): fields}
    return f"{type_name(type(v))}: {re.sub(r'0x[0-9a-f]+', '0x…', repr(v))}"


def signature(fn: Any) -> inspect.Signature | None:
    try:
        return inspect.signature(fn, eval_str=True)
    except Exception:
        try:
            return inspect.signature(fn)
        except (TypeError, ValueError):
            return None


def parameters(fn: Any) -> list[dict[str, Any]] | None:
    """The parameters as data, for whoever makes calls from them: name, kind, annotation,
    whether there is a default."""
    sig = signature(fn)
    if sig is None:
        return None
    return [
        {
            "name": p.name,
            "kind": p.kind.name,
            "annotation": None if p.annotation is p.empty else render_type(p.annotation),
            "required": p.default is p.empty,
        }
        for p in sig.parameters.values()
    ]


def render_signature(fn: Any) -> str | None:
    sig = signature(fn)
    if sig is None:
        return None
    parts: list[str] = []
    star = slash = False
    for p in sig.parameters.values():
        if p.kind is p.POSITIONAL_ONLY:
            slash = True
        elif slash:
            parts.append("/")
            slash = False
        if p.kind is p.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        stars = "*" if p.kind is p.VAR_POSITIONAL else "**" if p.kind is p.VAR_KEYWORD else ""
        text = stars + p.name
        star = star or p.kind is p.VAR_POSITIONAL
        if p.annotation is not p.empty:
            text += f": {render_type(p.annotation)}"
        if p.default is not p.empty:
            text += f" = {render_default(p.default)}"
        parts.append(text)
    if slash:
        parts.append("/")
    out = "(" + ", ".join(parts) + ")"
    if sig.return_annotation is not sig.empty:
        out += f" -> {render_type(sig.return_annotation)}"
    return out


def render_default(v: Any) -> str:
    if inspect.isfunction(v) or isinstance(v, type):
        return type_name(v)
    return re.sub(r"0x[0-9a-f]+", "0x…", repr(v))


def describe_function(fn: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": "function",
        "signature": render_signature(fn),
        "params": parameters(fn),
    }
    if inspect.iscoroutinefunction(fn):
        out["async"] = True
    get_overloads = getattr(typing, "get_overloads", None)
    overloads = get_overloads(fn) if get_overloads else []
    if overloads:
        out["overloads"] = [render_signature(o) for o in overloads]
    return out


def describe_member(raw: Any) -> dict[str, Any]:
    if isinstance(raw, staticmethod):
        return {**describe_function(raw.__func__), "kind": "staticmethod"}
    if isinstance(raw, classmethod):
        return {**describe_function(raw.__func__), "kind": "classmethod"}
    if isinstance(raw, property):
        return {
            "kind": "property",
            "signature": render_signature(raw.fget),
            "settable": bool(raw.fset),
        }
    if inspect.isfunction(raw):
        out = describe_function(raw)
        if getattr(raw, "__isabstractmethod__", False):
            out["abstract"] = True
        return out
    if inspect.isclass(raw):
        return {"kind": "class", "name": type_name(raw)}
    if inspect.isroutine(raw) or inspect.isdatadescriptor(raw):
        return {"kind": type(raw).__name__}
    return {"kind": "attribute", "value": render_value(raw)}


def describe_class(cls: type) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": "class",
        "mro": [type_name(c) for c in cls.__mro__],
        "call": render_signature(cls),
        "params": parameters(cls),
    }
    if type(cls) is not type:
        out["metaclass"] = type_name(type(cls))
    abstract = sorted(getattr(cls, "__abstractmethods__", ()))
    if abstract:
        out["abstract"] = abstract
    if dataclasses.is_dataclass(cls):
        params = cls.__dataclass_params__  # type: ignore[attr-defined]
        try:
            hints = typing.get_type_hints(cls)
        except Exception:
            hints = {}
        out["dataclass"] = {
            "frozen": params.frozen,
            "fields": [
                f"{f.name}: {render_type(hints.get(f.name, f.type))}"
                + ("" if f.default is dataclasses.MISSING else f" = {render_default(f.default)}")
                for f in dataclasses.fields(cls)
            ],
        }
    if issubclass(cls, enum.Enum):
        out["enum"] = {m.name: repr(m.value) for m in cls}
    members: dict[str, Any] = {}
    for name in sorted(dir(cls)):
        dunder = name.startswith("__") and name.endswith("__")
        if (name.startswith("_") and not dunder) or name in _NOISE:
            continue
        owner = next((c for c in cls.__mro__ if name in vars(c)), None)
        if owner is None or not _sdk(owner):
            continue  # what a library's base class brings is named by the class's MRO
        members[name] = describe_member(vars(owner)[name])
    out["members"] = members
    return out


def _sdk(owner: type) -> bool:
    module = owner.__module__ or ""
    return module.split(".")[0] in ("cog", "coglet")


def describe(value: Any) -> dict[str, Any]:
    if inspect.ismodule(value):
        return {"kind": "module", "name": value.__name__}
    if inspect.isclass(value):
        return describe_class(value)
    if inspect.isfunction(value) or inspect.isbuiltin(value):
        return describe_function(value)
    if isinstance(value, typing.TypeVar):
        return {"kind": "typevar", "value": render_type(value)}
    if value is None or isinstance(value, (bool, int, float, str, tuple, list, set, frozenset)):
        return {"kind": "constant", "value": render_value(value)}
    return {"kind": "instance", "type": type_name(type(value)), "value": render_value(value)}


def public_modules() -> list[str]:
    """The package's public modules: what it ships minus private (`_x`) ones and what is not
    the SDK."""
    cog = importlib.import_module("cog")
    found = ["cog"]
    for info in pkgutil.walk_packages(cog.__path__, "cog."):
        parts = info.name.split(".")
        # cog.server: Cog's server entry point; here the command line and its services live
        # under cog/ as well: none of them is the SDK
        if any(p.startswith("_") for p in parts) or parts[1] in (
            "server",
            "cli",
            "project",
            "doctor",
        ):
            continue
        found.append(info.name)
    return sorted(found)


def public_names(module: types.ModuleType) -> tuple[list[str], bool]:
    """Its `__all__`, or else what it defines itself: names without `_` whose value comes from
    this module (classes, functions, type variables) or is a plain constant."""
    declared = getattr(module, "__all__", None)
    if declared is not None:
        return sorted(declared), True
    names = []
    for name, value in vars(module).items():
        if name.startswith("_") or inspect.ismodule(value):
            continue
        home = getattr(value, "__module__", None)
        constant = value is None or isinstance(
            value, (bool, int, float, str, tuple, frozenset, set)
        )
        if home == module.__name__ or (constant and not isinstance(value, type)):
            names.append(name)
    return sorted(names), False


def access(module: types.ModuleType, name: str) -> tuple[Any, dict[str, Any]]:
    """`module.name`, with what the access itself says (a retired name's notice on stderr, its
    warnings), twice: a notice should come once."""
    said: dict[str, Any] = {}
    for attempt in ("first", "again"):
        err = io.StringIO()
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(err):
            warnings.simplefilter("always")
            try:
                value = getattr(module, name)
            except AttributeError as e:
                return None, {"missing": str(e)}
        if err.getvalue() or caught:
            said[attempt] = {
                "stderr": err.getvalue(),
                "warnings": [[type_name(w.category), str(w.message)] for w in caught],
            }
    return value, said


def surface(modules: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in modules or public_modules():
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            out[name] = {"missing": str(e)}
            continue
        names, declared = public_names(module)
        entry: dict[str, Any] = {"all": names if declared else None, "names": {}}
        for attr in names:
            value, said = access(module, attr)
            if "missing" in said:
                entry["names"][attr] = said
                continue
            entry["names"][attr] = describe(value) | ({"on_access": said} if said else {})
        out[name] = entry
    return out


def run_case(code: str, namespace: dict[str, Any]) -> dict[str, Any]:
    """Runs `code` and says what came of it: the value of its last statement if that is an
    expression (else None), or what it raised, with its warnings and output."""
    tree = ast.parse(code)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    assert last is None or isinstance(last, ast.Expr)
    setup = compile(tree, "<case>", "exec")
    expr = compile(ast.Expression(last.value), "<case>", "eval") if last else None
    out = io.StringIO()
    err = io.StringIO()
    result: dict[str, Any] = {}
    with (
        warnings.catch_warnings(record=True) as caught,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        warnings.simplefilter("always")
        try:
            exec(setup, namespace)
            result["value"] = render_value(eval(expr, namespace) if expr else None)
        except BaseException as e:
            result["raises"] = [type_name(type(e)), str(e)]
    if caught:
        result["warnings"] = [[type_name(w.category), str(w.message)] for w in caught]
    if out.getvalue():
        result["stdout"] = out.getvalue()
    if err.getvalue():
        result["stderr"] = err.getvalue()
    text = _ADDRESS.sub("0x…", _TEMPORARY.sub("<tmp>", json.dumps(result, ensure_ascii=False)))
    return dict(json.loads(text))


_ADDRESS = re.compile(r"0x[0-9a-f]{6,}")


# where tempfile puts what a case makes: its names are random
_TEMPORARY = re.compile(re.escape(tempfile.gettempdir()) + r"/tmp[a-z0-9_]{8}(\.[a-z]+)?")


def cases(given: dict[str, Any]) -> dict[str, Any]:
    """Each case in a module of its own (dataclasses look a class's module up), which starts
    with what the prelude defined (once: its classes and functions are shared)."""
    prelude = types.ModuleType("case")
    sys.modules["case"] = prelude
    exec(given["prelude"], prelude.__dict__)
    results = {}
    for item in given["cases"]:
        module = types.ModuleType("case")
        module.__dict__.update(prelude.__dict__)
        sys.modules["case"] = module
        results[item["id"]] = run_case(item["code"], module.__dict__)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", help="import `cog` from this folder (first on sys.path)")
    parser.add_argument("command", choices=("surface", "cases"))
    parser.add_argument("modules", nargs="*")
    args = parser.parse_args()
    if args.root:
        sys.path.insert(0, args.root)
    stdout = sys.stdout
    found = surface(args.modules) if args.command == "surface" else cases(json.load(sys.stdin))
    stdout.write(json.dumps(found, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()

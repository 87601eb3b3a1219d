"""Type annotations as Cog's parser reads them (pkg/schema/python/annotations.go): a name, a
subscript `Outer[args]` or a union `A | B`; string annotations are parsed from their text."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from cog.project.static_schema.errors import SchemaError, unsupported
from cog.project.static_schema.source import Source


@dataclass(frozen=True)
class Ann:
    kind: str  # simple, generic, union
    name: str = ""
    args: tuple[Ann, ...] = ()


def simple(name: str) -> Ann:
    return Ann("simple", name)


_IDENT = re.compile(r"[A-Za-z0-9_]+")


def from_string(text: str) -> Ann | None:
    """parseTypeFromString."""
    s = text.strip()
    if not s:
        return None
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        return from_string(s[1:-1])
    parts = _split_top(s, "|")
    if parts is not None:
        members = []
        for part in parts:
            member = from_string(part.strip())
            if member is None:
                return None
            members.append(member)
        return Ann("union", args=tuple(members)) if len(members) >= 2 else None
    bracket = s.find("[")
    if bracket >= 0 and s.endswith("]"):
        outer = s[:bracket].strip()
        args = []
        for part in _split_top(s[bracket + 1 : -1], ",", always=True) or []:
            arg = from_string(part.strip())
            if arg is None:
                return None
            args.append(arg)
        return Ann("generic", outer, tuple(args)) if args else None
    for part in s.split("."):
        if not part or not _IDENT.fullmatch(part):
            return None
    return simple(s)


def _split_top(s: str, sep: str, always: bool = False) -> list[str] | None:
    depth, start, parts, seen = 0, 0, [], False
    for i, c in enumerate(s):
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
        elif c == sep and depth == 0:
            seen = True
            parts.append(s[start:i])
            start = i + 1
    if not seen and not always:
        return None
    parts.append(s[start:])
    return parts


def parse(src: Source, node: ast.expr) -> Ann:
    """parseTypeAnnotation of the node that follows `:` or `->`. A subscript of a plain name
    is tree-sitter's generic_type and a union its binary `|`; both read as Cog reads them."""
    if isinstance(node, ast.Name):
        return simple(node.id)
    if isinstance(node, ast.Constant) and node.value is None:
        return simple("None")
    if isinstance(node, ast.Attribute):
        return simple(src.content(node))
    if isinstance(node, ast.Subscript):
        if isinstance(node.value, ast.Name):  # tree-sitter's generic_type: read as text
            return _from_text(src, node, "generic_type")
        outer = src.content(node.value)
        items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        args = tuple(parse(src, item) for item in items)
        return Ann("generic", outer, args) if args else simple(outer)
    if isinstance(node, ast.BinOp):
        if not isinstance(node.op, ast.BitOr):
            raise unsupported("non-union binary operator in type annotation")
        members: list[Ann] = []
        for side in (parse(src, node.left), parse(src, node.right)):
            members.extend(side.args if side.kind == "union" else [side])
        return Ann("union", args=tuple(members))
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        text = src.content(node)
        parsed = from_string(text.lstrip("\"'").rstrip("\"'"))
        if parsed is None:
            raise unsupported(f"string annotation: {text}")
        return parsed
    return _from_text(src, node, _node_type(node))


def _from_text(src: Source, node: ast.expr, node_type: str) -> Ann:
    text = src.content(node)
    parsed = from_string(text)
    if parsed is None:
        raise unsupported(f"{node_type}: {text}")
    return parsed


_NODE_TYPES = {
    ast.Call: "call",
    ast.List: "list",
    ast.Tuple: "tuple",
    ast.Dict: "dictionary",
    ast.Set: "set",
    ast.Lambda: "lambda",
    ast.UnaryOp: "unary_operator",
    ast.Compare: "comparison_operator",
    ast.BoolOp: "boolean_operator",
    ast.IfExp: "conditional_expression",
    ast.JoinedStr: "string",
}


def _node_type(node: ast.expr) -> str:
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return "integer"
        if isinstance(value, float):
            return "float"
        if value is Ellipsis:
            return "ellipsis"
        return "string"
    return _NODE_TYPES.get(type(node), type(node).__name__.lower())


__all__ = ["Ann", "SchemaError", "from_string", "parse", "simple"]

"""Literal values as Cog's static generator reads them (pkg/schema/python/literals.go,
module_scope.go): a default, a choice or a constraint is a literal of the source, or a name a
top-level assignment binds to one; anything else is not statically resolvable."""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from typing import Any

from cog.project.static_schema.source import Source

INT64 = 2**63


@dataclass(frozen=True)
class Lit:
    """A parsed literal: kind is none, bool, int, float, str, list, set or dict; `items` holds
    a list's or set's values, `pairs` a dict's."""

    kind: str
    value: Any = None
    items: tuple[Lit, ...] = ()
    pairs: tuple[tuple[Lit, Lit], ...] = ()

    def to_json(self) -> Any:
        if self.kind in ("list", "set"):
            return [item.to_json() for item in self.items]
        if self.kind == "dict":
            out: dict[str, Any] = {}
            for key, value in self.pairs:
                out[key.value if key.kind == "str" else go_print(key.to_json())] = value.to_json()
            return out
        return self.value


def go_print(value: Any) -> str:
    """Go's `fmt.Sprintf("%v", v)` of a JSON-ish value (a dict key that is not a string)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return go_float(value, "g")
    if isinstance(value, list):
        return "[" + " ".join(go_print(v) for v in value) + "]"
    return str(value)


def go_float(value: float, style: str = "json") -> str:
    """A float64 as Go writes it: encoding/json's form (shortest digits, an exponent below
    1e-6 and from 1e21), or `%v`'s (`g`: an exponent below 1e-4 and from 1e21)."""
    if value == 0:
        return "-0" if math.copysign(1, value) < 0 else "0"
    digits, exponent = _shortest(value)
    sign = "-" if value < 0 else ""
    # json: fixed within [1e-6, 1e21); %v: strconv's 'g' with shortest digits (exponent 6)
    fixed = 1e-6 <= abs(value) < 1e21 if style == "json" else -4 <= exponent < 6
    if fixed:
        point = exponent + 1
        if point <= 0:
            text = "0." + "0" * -point + digits
        elif point >= len(digits):
            text = digits + "0" * (point - len(digits))
        else:
            text = digits[:point] + "." + digits[point:]
        return sign + text
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    power = f"{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    if style == "json" and power.startswith("-0"):
        power = "-" + power[2:]
    return f"{sign}{mantissa}e{power}"


def _shortest(value: float) -> tuple[str, int]:
    """The shortest decimal digits that read back as `value`, and the exponent of the first."""
    mantissa, _, exp = f"{abs(value):.17e}".partition("e")
    for precision in range(1, 18):
        candidate = f"{abs(value):.{precision - 1}e}"
        if float(candidate) == abs(value):
            mantissa, _, exp = candidate.partition("e")
            break
    return mantissa.replace(".", "").rstrip("0") or "0", int(exp)


_NUMBER_CHARS = re.compile(r"[0-9A-Za-z_.+\-]+")


def parse_go_int(text: str) -> int | None:
    """strconv.ParseInt(text, 0, 64)."""
    if not _NUMBER_CHARS.fullmatch(text):
        return None
    try:
        number = int(text, 0)
    except ValueError:
        return None
    return number if -INT64 <= number < INT64 else None


def parse_go_float(text: str) -> float | None:
    """strconv.ParseFloat(text, 64): what Python's float() reads of the same text, without
    its leniencies (spaces, unicode digits) and with Go's range error."""
    if not _NUMBER_CHARS.fullmatch(text):
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    if math.isinf(number) and "inf" not in text.lower():
        return None  # out of range: Go reports an error
    return number


def parse_string(src: Source, node: ast.AST) -> str | None:
    """parseStringLiteral: the node's text without its quotes, its escapes as written."""
    text = src.content(node)
    if text.startswith(('"""', "'''")):
        return text[3:-3] if len(text) >= 6 else None
    if text.startswith(('"', "'")):
        return text[1:-1] if len(text) >= 2 else None
    if text.startswith(('r"', "r'")):
        return text[2:-1] if len(text) >= 3 else None
    return None


def parse_number(src: Source, node: ast.AST) -> float | None:
    """parseNumberLiteral: ParseFloat of the node's text, whatever the node."""
    return parse_go_float(src.content(node).strip())


def parse_bool(src: Source, node: ast.AST) -> bool | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, bool):
        return node.value
    return {"True": True, "False": False}.get(src.content(node))


def parse_default(src: Source, node: ast.AST, floor: int) -> Lit | None:
    """parseDefaultValue: a literal None, bool, number, string, list, dict, set, a signed
    number, or a tuple (of what parses in it); `floor` is where the enclosing construct
    starts, so that parentheses around the value (a node of their own) are seen."""
    if src.parenthesized(node, floor):
        return None
    if isinstance(node, ast.Constant):
        value = node.value
        if value is None or isinstance(value, bool):
            return Lit("none" if value is None else "bool", value)
        if isinstance(value, int):
            number = parse_go_int(src.content(node))
            return None if number is None else Lit("int", number)
        if isinstance(value, float):
            real = parse_go_float(src.content(node))
            return None if real is None else Lit("float", real)
        if isinstance(value, str):
            text = parse_string(src, node)
            return None if text is None else Lit("str", text)
        return None
    start = src.start(node)
    if isinstance(node, ast.List | ast.Set):
        if has_comment(src, node):
            return None
        items = parse_items(src, node.elts, start)
        kind = "list" if isinstance(node, ast.List) else "set"
        return None if items is None else Lit(kind, items=items)
    if isinstance(node, ast.Dict):
        pairs = []
        for key, item in zip(node.keys, node.values, strict=True):
            if key is None:  # `**other`: not a pair
                continue
            k, v = parse_default(src, key, start), parse_default(src, item, start)
            if k is not None and v is not None:
                pairs.append((k, v))
        return Lit("dict", pairs=tuple(pairs))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd | ast.Invert):
        text = src.content(node).strip()
        number = parse_go_int(text)
        if number is not None:
            return Lit("int", number)
        real = parse_go_float(text)
        return None if real is None else Lit("float", real)
    if isinstance(node, ast.Tuple):
        parsed = (parse_default(src, item, start) for item in node.elts)
        return Lit("list", items=tuple(p for p in parsed if p is not None))
    return None


def parse_items(src: Source, elements: list[ast.expr], floor: int) -> tuple[Lit, ...] | None:
    """A list's or set's elements, each a literal; a comment among them (a node of its own
    in tree-sitter) is not one."""
    items = []
    for element in elements:
        value = parse_default(src, element, floor)
        if value is None:
            return None
        items.append(value)
    return tuple(items)


def parse_list(src: Source, node: ast.AST, floor: int) -> tuple[Lit, ...] | None:
    if not isinstance(node, ast.List) or src.parenthesized(node, floor):
        return None
    if has_comment(src, node):
        return None
    return parse_items(src, node.elts, src.start(node))


def has_comment(src: Source, node: ast.AST) -> bool:
    """A `#` comment inside the node's brackets, outside its strings."""
    segment = src.text[src.start(node) : src.end(node)]
    if b"#" not in segment:
        return False
    import io
    import tokenize

    try:
        tokens = list(tokenize.tokenize(io.BytesIO(segment).readline))
    except (tokenize.TokenError, SyntaxError):
        return False
    return any(t.type == tokenize.COMMENT for t in tokens)


Scope = dict[str, Lit]


def module_scope(src: Source) -> Scope:
    """collectModuleScope: each top-level `NAME = literal` (the last one wins)."""
    scope: Scope = {}
    for statement in src.tree.body:
        target: ast.expr | None = None
        value: ast.expr | None = None
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target, value = statement.targets[0], statement.value
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            target, value = statement.target, statement.value
        if not isinstance(target, ast.Name) or value is None:
            continue
        if isinstance(target, ast.Name) and src.parenthesized(target, src.start(statement) - 1):
            continue
        parsed = parse_default(src, value, src.end(target))
        if parsed is not None:
            scope[target.id] = parsed
    return scope


def resolve_string(src: Source, node: ast.AST, scope: Scope, floor: int) -> str | None:
    if not src.parenthesized(node, floor):
        text = parse_string(src, node)
        if text is not None:
            return text
    if isinstance(node, ast.Name) and not src.parenthesized(node, floor):
        found = scope.get(node.id)
        if found is not None and found.kind == "str":
            return str(found.value)
    return None


def resolve_default(src: Source, node: ast.AST, scope: Scope, floor: int) -> Lit | None:
    value = parse_default(src, node, floor)
    if value is not None:
        return value
    if isinstance(node, ast.Name) and not src.parenthesized(node, floor):
        return scope.get(node.id)
    return None


def resolve_choices(src: Source, node: ast.AST, scope: Scope, floor: int) -> tuple[Lit, ...] | None:
    """resolveChoicesExpr: a list literal, a name bound to one, `list(D.keys())` or
    `list(D.values())` of a dict bound at the top level, or `+` of those."""
    if src.parenthesized(node, floor):
        return None
    if isinstance(node, ast.List):
        return parse_list(src, node, floor)
    if isinstance(node, ast.Name):
        found = scope.get(node.id)
        return found.items if found is not None and found.kind == "list" else None
    if isinstance(node, ast.Call):
        return _choices_call(src, node, scope)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        start = src.start(node)
        left = resolve_choices(src, node.left, scope, start - 1)
        right = resolve_choices(src, node.right, scope, src.end(node.left))
        return None if left is None or right is None else left + right
    return None


def _choices_call(src: Source, node: ast.Call, scope: Scope) -> tuple[Lit, ...] | None:
    if src.content(node.func) != "list":
        return None
    arguments = [*node.args, *(k.value for k in node.keywords)]
    if not arguments:
        return None
    first = min(arguments, key=src.start)
    if not isinstance(first, ast.Call) or src.parenthesized(first, src.end(node.func)):
        return None
    inner = first.func
    if not isinstance(inner, ast.Attribute) or not isinstance(inner.value, ast.Name):
        return None
    found = scope.get(inner.value.id)
    if found is None or found.kind != "dict":
        return None
    if inner.attr == "keys":
        return tuple(k for k, _ in found.pairs)
    if inner.attr == "values":
        return tuple(v for _, v in found.pairs)
    return None

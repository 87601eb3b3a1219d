"""A predictor module reduced to what its signature reads, when its source alone says what
that is: so `cog build` describes the signature without importing torch on every edit.

Reading a signature by importing the model runs everything the model imports. Most
signatures read only `cog`, `typing`, literal values and classes of the same file. The
reduced module keeps, verbatim, the statements that bind what the predictor reads: imports of
a few known modules, assignments, classes (their fields, and their predict/run/train and
healthcheck methods with the bodies emptied), in source order. A name it reads that a left-out
statement binds or might change (a helper's import, a function, a loop, a local module's
type), or that two statements bind, makes `reduce` return None: the module is imported.
"""

from __future__ import annotations

import ast
import builtins
import copy
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

# Modules whose import costs little and sets up nothing a signature depends on.
KNOWN_MODULES = frozenset(
    {"__future__", "abc", "cog", "collections.abc", "dataclasses", "enum", "pathlib"}
    | {"pydantic", "types", "typing", "typing_extensions"}
)
KEPT_METHODS = frozenset({"predict", "run", "train", "healthcheck"})
_NESTED_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


class _Unsure(Exception):
    """The source alone does not say what the signature reads."""


def reduce(source: str, filename: str, attr: str) -> str | None:
    """The reduced module's source for the predictor named `attr`, or None when the module
    itself must be imported to describe it."""
    try:
        tree = ast.parse(source, filename)
        module = _Scope.of(tree.body, in_class=False, target=attr)
        chosen, _, _, _ = module.plan([attr], outermost=True)
    except (_Unsure, SyntaxError, RecursionError, ValueError):
        return None
    body = module.always + [module.kept[i].node for i in sorted(chosen)]
    return ast.unparse(ast.Module(body=body, type_ignores=[]))


@dataclass
class _Kept:
    node: ast.stmt  # as it goes into the reduced module
    binds: set[str]
    reads: set[str]  # names that must be bound (here or around) or be builtins
    maybe: set[str] = field(default_factory=set)  # names a class binds: the module's too, if any
    root: bool = False  # kept whatever the predictor reads
    calls: set[str] = field(default_factory=set)  # names its expressions call
    defines: bool = False  # a class or a bodiless function: calling it would not be the same


@dataclass
class _Scope:
    """A module's or a class body's statements: those kept, and the names that statements
    left out bind or may change."""

    kept: list[_Kept] = field(default_factory=list)
    unsure: set[str] = field(default_factory=set)
    always: list[ast.stmt] = field(default_factory=list)  # the docstring, __future__ imports

    @classmethod
    def of(cls, body: list[ast.stmt], in_class: bool, target: str = "") -> _Scope:
        scope = cls()
        for index, node in enumerate(body):
            if (index == 0 and _is_docstring(node)) or _is_future(node):
                scope.always.append(node)
                continue
            kept = _keep(node, in_class, target)
            if kept is None:
                scope.unsure |= _touched(node)
                continue
            # A class keeps all it can (a model's fields and config); a module, its imports
            # of known modules, so one that fails fails here too.
            kept.root = in_class or isinstance(node, ast.Import | ast.ImportFrom)
            scope.kept.append(kept)
        seen: set[str] = set()
        for kept in scope.kept:
            scope.unsure |= kept.binds & seen  # bound twice: which one wins depends on order
            seen |= kept.binds
        return scope

    def plan(
        self, wanted: Iterable[str], outermost: bool
    ) -> tuple[set[int], set[str], set[str], set[str]]:
        """Which kept statements the reduced body holds (those that bind `wanted`, the roots,
        and what their reads need); the reads left for the scope around: those it must bind,
        and those it binds only if it has them (this scope binds them too); and the names
        the chosen statements call."""
        chosen = {i for i, k in enumerate(self.kept) if k.root}
        pending = [(name, True) for name in wanted]
        for i in chosen:
            pending += [(n, True) for n in self.kept[i].reads]
            pending += [(n, False) for n in self.kept[i].maybe]
        required: set[str] = set()
        optional: set[str] = set()
        while pending:
            name, needed = pending.pop()
            if name in self.unsure:
                raise _Unsure(name)
            found = [i for i, k in enumerate(self.kept) if name in k.binds]
            if not outermost:  # a class body also sees the module's names
                (optional if found or not needed else required).add(name)
            elif needed and not found and not hasattr(builtins, name):
                raise _Unsure(name)
            for i in found:
                if i not in chosen:
                    chosen.add(i)
                    pending += [(n, True) for n in self.kept[i].reads]
                    pending += [(n, False) for n in self.kept[i].maybe]
        calls = {name for i in chosen for name in self.kept[i].calls}
        if any(self.kept[i].defines and self.kept[i].binds & calls for i in chosen):
            raise _Unsure("a call")  # what the dropped methods or body would do is unknown
        return chosen, required, optional - required, calls


def _keep(node: ast.stmt, in_class: bool, target: str) -> _Kept | None:
    """The statement as the reduced module keeps it, or None when it is left out. Functions
    are kept bodiless: a class's methods that say what it serves, and the module's `target`
    (a function predictor); any other function is left out, as what it returns is unknown."""
    if isinstance(node, ast.ImportFrom):
        if node.level or not _known(node.module) or any(a.name == "*" for a in node.names):
            return None
        return _Kept(node, {a.asname or a.name for a in node.names}, set())
    if isinstance(node, ast.Import):
        if not all(_known(a.name) for a in node.names):
            return None
        return _Kept(node, {a.asname or a.name.split(".")[0] for a in node.names}, set())
    if isinstance(node, ast.Assign):
        if not all(isinstance(t, ast.Name) for t in node.targets) or _binds_more(node.value):
            return None
        binds = {t.id for t in node.targets if isinstance(t, ast.Name)}
        return _Kept(node, binds, _reads(node.value), calls=_calls(node.value))
    if isinstance(node, ast.AnnAssign):
        if not isinstance(node.target, ast.Name) or _binds_more(node):
            return None
        reads = _annotation_reads(node.annotation)
        reads |= _reads(node.value)
        return _Kept(node, {node.target.id}, reads, calls=_calls(node.value))
    if isinstance(node, ast.ClassDef):
        if _binds_more(node, body=False) or _hooks(node):
            return None
        inner = _Scope.of(node.body, in_class=True)
        try:
            chosen, required, optional, calls = inner.plan([], outermost=False)
        except _Unsure:
            return None  # its fields or methods read what is left out: so is the class
        body = inner.always + [inner.kept[i].node for i in sorted(chosen)]
        reduced = copy.copy(node)  # its name, bases and decorators as written
        reduced.body = body or [ast.Pass()]
        head = [*node.bases, *(k.value for k in node.keywords), *node.decorator_list]
        reads, calls = _reads(*head) | required, _calls(*head) | calls
        return _Kept(reduced, {node.name}, reads, optional, calls=calls, defines=True)
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        if node.name not in (KEPT_METHODS if in_class else {target}):
            return None
        if _binds_more(node, body=False):
            return None
        a = node.args
        arguments = [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]
        annotations = [x.annotation for x in arguments if x is not None] + [node.returns]
        values = [*node.decorator_list, *a.defaults, *a.kw_defaults]
        reads = _reads(*values) | _annotation_reads(*annotations)
        stub = copy.copy(node)  # its signature and decorators as written, no body
        stub.body = [ast.Expr(ast.Constant(...))]
        calls = _calls(*values)
        return _Kept(stub, {node.name}, reads, calls=calls, defines=True)
    if isinstance(node, ast.Pass) or _is_docstring(node):
        return _Kept(node, set(), set())
    return None


# Methods that act on a class or its subclasses as they are made, or on attribute lookups:
# a class defining one is not kept, since its emptied form would not act the same.
_HOOKS = frozenset(
    {"__init_subclass__", "__class_getitem__", "__set_name__", "__new__", "__call__"}
    | {"__getattr__", "__getattribute__", "__get__", "__set__", "__prepare__"}
)


def _hooks(node: ast.ClassDef) -> bool:
    return any(
        isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name in _HOOKS
        for n in node.body
    )


def _known(module: str | None) -> bool:
    return module is not None and any(
        module == known or module.startswith(known + ".") for known in KNOWN_MODULES
    )


def _is_docstring(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def _is_future(node: ast.stmt) -> bool:
    return isinstance(node, ast.ImportFrom) and node.module == "__future__"


def _outside_nested(node: ast.AST, body: bool = True) -> Iterator[ast.AST]:
    """`node` and what is under it, but not the inside of functions, lambdas and classes
    under it (their names are their own); with `body` false, not its own body either."""
    yield node
    for name, value in ast.iter_fields(node):
        if not body and name == "body":
            continue
        children = value if isinstance(value, list) else [value]
        for child in children:
            if isinstance(child, _NESTED_SCOPES):
                yield child  # its name and head, not its inside
                for part in (*child.decorator_list,) if not isinstance(child, ast.Lambda) else ():
                    yield from _outside_nested(part)
            elif isinstance(child, ast.AST):
                yield from _outside_nested(child)


def _binds_more(node: ast.AST, body: bool = True) -> bool:
    """Whether an expression binds a name of its own (`:=`) or holds a nested scope whose
    reads a reduced module could not follow (a lambda)."""
    return any(isinstance(n, ast.NamedExpr | ast.Lambda) for n in _outside_nested(node, body))


def _touched(node: ast.stmt) -> set[str]:
    """The names a left-out statement binds or may change: what it stores, deletes, defines
    or imports, the objects it sets attributes or items of, and for a bare expression (a
    call) every name it reads."""
    if isinstance(node, _NESTED_SCOPES):
        return {node.name}
    found: set[str] = set()
    for n in _outside_nested(node):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store | ast.Del):
            found.add(n.id)
        elif isinstance(n, ast.Attribute | ast.Subscript) and isinstance(
            n.ctx, ast.Store | ast.Del
        ):
            found |= {m.id for m in ast.walk(n) if isinstance(m, ast.Name)}
        elif isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found.add(n.name)
        elif isinstance(n, ast.Import | ast.ImportFrom):
            for alias in n.names:
                found.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(n, ast.Global | ast.Nonlocal):
            found.update(n.names)
    if isinstance(node, ast.Expr | ast.AugAssign | ast.Delete):
        found |= _reads(node)
    return found


def _reads(*nodes: ast.AST | None) -> set[str]:
    """The names the expressions read."""
    found: set[str] = set()
    for node in nodes:
        if node is not None:
            found |= {
                n.id
                for n in _outside_nested(node)
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
            }
    return found


def _calls(*nodes: ast.AST | None) -> set[str]:
    """The names the expressions call (`f(...)`, `f.g(...)`: f)."""
    found: set[str] = set()
    for node in nodes:
        for n in _outside_nested(node) if node is not None else ():
            if isinstance(n, ast.Call):
                func = n.func
                while isinstance(func, ast.Attribute | ast.Call | ast.Subscript):
                    func = func.value if not isinstance(func, ast.Call) else func.func
                if isinstance(func, ast.Name):
                    found.add(func.id)
    return found


def _annotation_reads(*annotations: ast.expr | None) -> set[str]:
    """The names annotations read, those written as text ("Output", list["Output"]) too:
    typing resolves them from the module when the signature is read."""
    found = _reads(*annotations)
    for annotation in annotations:
        for n in ast.walk(annotation) if annotation is not None else ():
            if isinstance(n, ast.Constant) and isinstance(n.value, str):
                try:
                    parsed = ast.parse(n.value.strip(), mode="eval")
                except SyntaxError:
                    continue  # not a type: typing fails on it alike in both modules
                found |= _annotation_reads(parsed.body)
    return found

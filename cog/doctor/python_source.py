"""Python source for `cog doctor`: a module parsed with `ast`, node positions as byte offsets,
and byte-range edits that leave every other byte of the file as it was."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Edit:
    """Replace source[start:end] with `text` (a deletion when it is empty)."""

    start: int
    end: int
    text: bytes = b""


def apply_edits(source: bytes, edits: Iterable[Edit]) -> bytes:
    """The source with the edits made; overlapping edits keep the one that starts first."""
    out = bytearray()
    pos = 0
    for edit in sorted(edits, key=lambda e: (e.start, e.end)):
        if edit.start < pos:
            continue
        out += source[pos : edit.start]
        out += edit.text
        pos = edit.end
    out += source[pos:]
    return bytes(out)


@dataclass(frozen=True)
class Imported:
    """A name bound by `from MODULE import ORIGINAL [as LOCAL]`."""

    module: str
    original: str


@dataclass
class PythonFile:
    """A parsed module: its bytes, its syntax tree and what its top-level imports bind."""

    path: str  # relative to the project
    source: bytes
    tree: ast.Module
    _line_starts: list[int] = field(default_factory=list, repr=False)

    @classmethod
    def parse(cls, path: str, source: bytes) -> PythonFile:
        """Raises SyntaxError (or ValueError for null bytes) when it is not Python."""
        tree = ast.parse(source, filename=path)
        starts = [0]
        for match in re.finditer(rb"\n", source):
            starts.append(match.end())
        return cls(path, source, tree, starts)

    def offset(self, lineno: int, col: int) -> int:
        """The byte offset of an `ast` position (1-based line, UTF-8 byte column)."""
        return self._line_starts[lineno - 1] + col

    def span(self, node: ast.AST) -> tuple[int, int]:
        start = self.offset(node.lineno, node.col_offset)  # type: ignore[attr-defined]
        end = self.offset(node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]
        return start, end

    def text(self, node: ast.AST) -> str:
        start, end = self.span(node)
        return self.source[start:end].decode()

    def line_of(self, offset: int) -> int:
        return self.source.count(b"\n", 0, offset) + 1

    def whole_lines(self, node: ast.AST, tidy: bool = False) -> Edit:
        """A deletion of the lines the node occupies, newline included; `tidy` also takes one
        blank line after them when one precedes them, so no extra gap is left."""
        start, end = self.span(node)
        start, end = self.start_of_line(start), self.end_of_line(end)
        blank_before = start >= 2 and self.source[start - 2 : start] == b"\n\n"
        if tidy and (start == 0 or blank_before) and self.source[end : end + 1] == b"\n":
            end += 1
        return Edit(start, end)

    def start_of_line(self, pos: int) -> int:
        return self.source.rfind(b"\n", 0, pos) + 1

    def end_of_line(self, pos: int) -> int:
        newline = self.source.find(b"\n", pos)
        return len(self.source) if newline < 0 else newline + 1

    def name_span(self, node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> Edit:
        """Where the name after `class`/`def` is (ast gives only the statement's start)."""
        start, end = self.span(node)
        keyword = rb"class" if isinstance(node, ast.ClassDef) else rb"def"
        pattern = re.compile(rb"\b" + keyword + rb"\s+(" + re.escape(node.name.encode()) + rb")\b")
        match = pattern.search(self.source, start, end)
        assert match is not None, "a definition's name follows its keyword"
        return Edit(match.start(1), match.end(1))

    def alias_name_span(self, alias: ast.alias) -> Edit:
        """Where the imported name of `NAME [as LOCAL]` is."""
        start, _ = self.span(alias)
        return Edit(start, start + len(alias.name.encode()))

    def top_classes(self) -> Iterator[ast.ClassDef]:
        for stmt in self.tree.body:
            if isinstance(stmt, ast.ClassDef):
                yield stmt

    def top_class(self, name: str) -> ast.ClassDef | None:
        return next((c for c in self.top_classes() if c.name == name), None)

    def imported_names(self) -> dict[str, Imported]:
        """Local name -> what it is, for the module's top-level `from … import …`."""
        bound: dict[str, Imported] = {}
        for stmt in self.tree.body:
            if isinstance(stmt, ast.ImportFrom) and stmt.module and not stmt.level:
                for alias in stmt.names:
                    bound[alias.asname or alias.name] = Imported(stmt.module, alias.name)
        return bound


def methods(cls: ast.ClassDef, name: str) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [
        stmt
        for stmt in cls.body
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name == name
    ]


def names_in(node: ast.AST) -> set[str]:
    """Every identifier a node mentions: names, attributes, keywords, definitions."""
    found: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            found.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            found.add(sub.attr)
        elif isinstance(sub, ast.keyword) and sub.arg:
            found.add(sub.arg)
        elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.add(sub.name)
    return found


def loaded_names(statements: Iterable[ast.stmt]) -> set[str]:
    """The bare names that statements other than imports refer to."""
    found: set[str] = set()
    for stmt in statements:
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            continue
        found |= {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name)}
    return found


def import_from_line(module: str, names: list[str]) -> bytes:
    return f"from {module} import {', '.join(names)}".encode()


def alias_text(alias: ast.alias) -> str:
    return alias.name if alias.asname is None else f"{alias.name} as {alias.asname}"


def drop_from_import(
    pf: PythonFile, stmt: ast.ImportFrom, drop: Callable[[ast.alias], bool]
) -> Edit | None:
    """An edit that removes the names `drop` chooses from the statement (the whole line when
    no name is left, else the statement rewritten on one line); None when it drops none."""
    kept = [alias_text(a) for a in stmt.names if not drop(a)]
    if len(kept) == len(stmt.names):
        return None
    if not kept:
        return pf.whole_lines(stmt)
    start, end = pf.span(stmt)
    return Edit(start, end, import_from_line(stmt.module or "", kept))

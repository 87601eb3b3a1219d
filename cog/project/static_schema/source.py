"""A Python file as Cog's parser sees it: its syntax tree (`ast`) and the exact text of each
node, since Cog reads most values from the text of tree-sitter nodes rather than from their
meaning (a string's quotes are cut off, its escapes are kept)."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field


@dataclass
class Source:
    text: bytes
    tree: ast.Module
    _line_starts: list[int] = field(default_factory=list)

    @classmethod
    def parse(cls, text: bytes, filename: str) -> Source:
        tree = ast.parse(text, filename)
        starts = [0]
        for i, byte in enumerate(text):
            if byte == 0x0A:
                starts.append(i + 1)
        return cls(text, tree, starts)

    def start(self, node: ast.AST) -> int:
        line: int = getattr(node, "lineno")  # noqa: B009 (any node with a position)
        column: int = getattr(node, "col_offset")  # noqa: B009
        return self._line_starts[line - 1] + column

    def end(self, node: ast.AST) -> int:
        line: int = getattr(node, "end_lineno")  # noqa: B009
        column: int = getattr(node, "end_col_offset")  # noqa: B009
        return self._line_starts[line - 1] + column

    def content(self, node: ast.AST) -> str:
        return self.text[self.start(node) : self.end(node)].decode("utf-8", "replace")

    def parenthesized(self, node: ast.AST, floor: int) -> bool:
        """Whether `node` stands in parentheses of its own that open after offset `floor`
        (tree-sitter keeps those as a node of their own, which no literal rule accepts)."""
        i = self.start(node) - 1
        while i > floor and self.text[i : i + 1] in (b" ", b"\t", b"\n", b"\r", b"\\"):
            i -= 1
        return i > floor and self.text[i : i + 1] == b"("


def body_statements(body: list[ast.stmt]) -> list[ast.stmt]:
    return list(body)


def unwrap_class(node: ast.stmt) -> ast.ClassDef | None:
    return node if isinstance(node, ast.ClassDef) else None


def unwrap_function(node: ast.AST) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    return node if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) else None

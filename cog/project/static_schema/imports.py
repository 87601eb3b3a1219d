"""Which module each top-level name comes from (pkg/schema/python/imports.go and the
ImportContext of pkg/schema/types.go): only imports at the top of the module count."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from cog.project.static_schema.source import Source

TYPING = ("typing", "typing_extensions")


@dataclass(frozen=True)
class Entry:
    module: str
    original: str


@dataclass
class Imports:
    names: dict[str, Entry] = field(default_factory=dict)

    @classmethod
    def collect(cls, src: Source) -> Imports:
        found = cls()
        for statement in src.tree.body:
            if isinstance(statement, ast.ImportFrom):
                module = "." * statement.level + (statement.module or "")
                if statement.module == "__future__" and not statement.level:
                    continue  # tree-sitter reads these as a statement of their own
                for alias in statement.names:
                    if alias.name != "*":
                        found.names[alias.asname or alias.name] = Entry(module, alias.name)
            elif isinstance(statement, ast.Import):
                for alias in statement.names:
                    found.names[alias.asname or alias.name] = Entry(alias.name, alias.name)
        for builtin in ("str", "int", "float", "bool", "list", "dict", "set", "None"):
            found.names.setdefault(builtin, Entry("builtins", builtin))
        return found

    def get(self, name: str) -> Entry | None:
        return self.names.get(name)

    def is_base_model(self, name: str) -> bool:
        e = self.names.get(name)
        return (
            e is not None
            and e.module in ("cog", "pydantic", "pydantic.v1")
            and (e.original == "BaseModel")
        )

    def is_typed_dict(self, name: str) -> bool:
        e = self.names.get(name)
        return e is not None and e.module in TYPING and e.original == "TypedDict"

    def resolve_qualified(self, name: str) -> tuple[str, Entry | None, bool]:
        """`alias.Type` → ("Type", the alias's entry or None, True); a plain name → not."""
        head, dot, rest = name.partition(".")
        if not dot:
            return name, None, False
        return rest, self.names.get(head), True

    def is_opaque(self, name: str) -> bool:
        resolved, entry, qualified = self.resolve_qualified(name)
        if qualified:
            return resolved == "Opaque" and entry is not None and entry.module == "cog"
        e = self.names.get(name)
        return e is not None and e.module == "cog" and e.original == "Opaque"

    def is_annotated(self, name: str) -> bool:
        resolved, entry, qualified = self.resolve_qualified(name)
        if qualified:
            return (
                resolved == "Annotated"
                and entry is not None
                and entry.module in TYPING
                and entry.original == entry.module
            )
        e = self.names.get(name)
        return e is not None and e.module in TYPING and e.original == "Annotated"

    def is_field_qualifier(self, name: str) -> bool:
        e = self.names.get(name)
        return e is not None and e.module in TYPING and e.original in ("Required", "NotRequired")

    def container_name(self, name: str) -> str | None:
        """opaqueContainerName: `list`, or typing's List/Optional/Union, however imported."""
        resolved, entry, qualified = self.resolve_qualified(name)
        if qualified:
            if (
                entry is not None
                and entry.module in TYPING
                and entry.original == entry.module
                and resolved in ("List", "Optional", "Union")
            ):
                return resolved
            return None
        e = self.names.get(name)
        if e is not None:
            if e.module == "builtins" and e.original == "list":
                return "list"
            if e.module in TYPING and e.original in ("List", "Optional", "Union"):
                return e.original
            return None
        return "list" if name == "list" else None

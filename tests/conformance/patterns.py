"""Allow-list keys: an item's id where `*` stands for any text (and nothing else is special,
so ids such as `-i list[str]: …` need no escaping)."""

from __future__ import annotations

import re


def matches(item: str, pattern: str) -> bool:
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), item, re.S) is not None


def reason(table: dict[str, str], item: str) -> str:
    """The reason the first matching key gives ("as KEY" borrows KEY's); "" where none."""
    found = next((r for p, r in table.items() if matches(item, p)), "")
    while found.startswith("as "):
        found = table[found.removeprefix("as ")]
    return found


def unused(tables: list[dict[str, str]], items: list[str]) -> list[str]:
    """The keys that match none of `items`."""
    return [p for t in tables for p in t if not any(matches(i, p) for i in items)]

"""Debian control-file stanzas (Release, Packages, a .deb's control).

python-debian's Deb822 does this too, but parsing bookworm's 50 MB `Packages` index with it
takes about 5 s against 0.8 s here; resolution reads whole indexes, so this one loop earns its
place. Relations and versions are parsed and compared with python-debian.
"""

from __future__ import annotations

from collections.abc import Iterator


def stanzas(text: str) -> Iterator[dict[str, str]]:
    """Each paragraph as a dict; continuation lines are joined with newlines, keys as written."""
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in block.split("\n"):
            if not line or line.startswith("#"):
                continue
            if line[0] in " \t":
                if key:
                    fields[key] += "\n" + line[1:]
            else:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields:
            yield fields

"""`Coder`: a model's own encoding of a custom input or output type to JSON and back.

Cog 0.23.1 keeps the registry for models that define coders; its build-time schema generator
and coglet no longer consult it, and neither does this runtime.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any


class Coder:
    """Subclass it with `factory` (a coder for a type, or None), `encode` and `decode`, and
    `Coder.register` the subclass."""

    _coders: set[type[Coder]] = set()

    @staticmethod
    def register(coder: type[Coder]) -> None:
        Coder._coders.add(coder)

    @staticmethod
    def lookup(tpe: type | Any) -> Coder | None:
        """A coder for `tpe` from the first registered class whose factory makes one."""
        for cls in Coder._coders:
            found = cls.factory(tpe)
            if found is not None:
                return found
        return None

    @staticmethod
    @abstractmethod
    def factory(tpe: type[Any]) -> Coder | None:
        """A coder for `tpe` if this class handles it, else None."""

    @abstractmethod
    def encode(self, x: Any) -> dict[str, Any]:
        """The value as a JSON object."""

    @abstractmethod
    def decode(self, x: dict[str, Any]) -> Any:
        """The value back from its JSON object."""

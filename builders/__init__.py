"""How to build: the realiser, the sandbox, and one module per builder kind."""

from builders.base import BuildContext, Builder
from builders.errors import BuildCancelled, BuildError, SandboxUnavailable
from builders.realise import Realiser, default_builders, realise

__all__ = [
    "BuildCancelled",
    "BuildContext",
    "BuildError",
    "Builder",
    "Realiser",
    "SandboxUnavailable",
    "default_builders",
    "realise",
]

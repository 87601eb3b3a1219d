from __future__ import annotations

from store.errors import CogError


class BuildError(CogError):
    """A derivation could not be built; the message names it and why."""


class BuildCancelled(BuildError):
    pass


class SandboxUnavailable(BuildError):
    hint = "install bubblewrap (`apt-get install bubblewrap`), or pass --no-sandbox (impure)"

"""Image references as Docker writes them: HOST[:PORT]/NAME[:TAG][@sha256:DIGEST], with Docker
Hub's defaults for a bare name."""

from __future__ import annotations

import re
from dataclasses import dataclass

from store.errors import RegistryError

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_HOST = re.compile(r"^(?:localhost|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9a-fA-F:]+\])(?::\d+)?$")


@dataclass(frozen=True)
class Reference:
    host: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        bad = RegistryError(
            f"{text!r} is not a valid image reference",
            hint="write it as HOST[:PORT]/NAME[:TAG][@sha256:DIGEST], e.g. r8.im/you/model",
        )
        rest, _, digest = text.partition("@")
        host, slash, path = rest.partition("/")
        if not slash or not ("." in host or ":" in host or host == "localhost"):
            host, path = "docker.io", rest
            if "/" not in path:
                path = f"library/{path}"
        name, colon, tag = path.rpartition(":") if ":" in path else (path, "", "")
        if (
            not _HOST.match(host)
            or not _REPOSITORY.match(name)
            or (colon and not _TAG.match(tag))
            or (digest and not _DIGEST.match(digest))
            or (text.count("@") > 1)
        ):
            raise bad
        return cls(host, name, tag or None, digest or None)

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest when given, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def insecure(self) -> bool:
        """Plain HTTP for registries on this machine, as Docker does; TLS for all others."""
        bare = self.host.rsplit(":", 1)[0] if not self.host.startswith("[") else self.host
        return bare in ("localhost", "127.0.0.1", "[::1]")

    def with_tag(self, tag: str | None) -> Reference:
        return Reference(self.host, self.repository, tag, None)

    def __str__(self) -> str:
        text = f"{self.host}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

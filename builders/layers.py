"""A project's layers, as the builders see them: the root layers, the environments, the code
and weights, and the build.run steps (cog.project.plan makes them from cog.yaml and cog.lock)."""

from __future__ import annotations

from dataclasses import dataclass, field

from derivations.hashing import output_path
from derivations.model import Derivation
from store.paths import StorePath


@dataclass
class Layers:
    base: Derivation
    python_layer: Derivation
    system: Derivation
    python: Derivation | None
    model_env: Derivation
    runtime_env: Derivation
    code: StorePath
    weights: dict[str, StorePath] = field(default_factory=dict)  # /src-relative path -> store
    steps: tuple[Derivation, ...] = ()  # build.run, each a layer for `/` over the ones before
    ca_cert: Derivation | None = None  # COG_CA_CERT's, between the system packages and steps
    tools: Derivation | None = None  # Cog's tools (apt, curl, git …), below the system packages

    @property
    def roots(self) -> tuple[Derivation, ...]:
        """The layers at `/`, lowest first: base, Python, Cog's tools, system packages,
        COG_CA_CERT's, then the steps."""
        tools = (self.tools,) if self.tools is not None else ()
        extra = (self.ca_cert,) if self.ca_cert is not None else ()
        return (self.base, self.python_layer, *tools, self.system, *extra, *self.steps)

    @property
    def derivations(self) -> list[Derivation]:
        found = [*self.roots, self.model_env, self.runtime_env]
        return found + ([self.python] if self.python is not None else [])

    def paths(self) -> dict[str, StorePath]:
        named = {
            "rootfs-base": output_path(self.base),
            "rootfs-python": output_path(self.python_layer),
            "rootfs-system": output_path(self.system),
            "model-env": output_path(self.model_env),
            "runtime-env": output_path(self.runtime_env),
            "code": self.code,
        }
        if self.python is not None:
            named["python"] = output_path(self.python)
        for rel, path in self.weights.items():
            named[f"weights:{rel}"] = path
        for layer in (self.tools, self.ca_cert, *self.steps):
            if layer is not None:
                named[layer.name] = output_path(layer)
        return named

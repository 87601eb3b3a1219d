"""The builder interface: a builder reads its inputs and writes one output; the store decides
where that output lives and when it becomes valid."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, ValidationError

from builders.errors import BuildCancelled, BuildError
from derivations.model import Derivation, DrvInput, FixedOutput, SrcInput
from store.db import PathInfo
from store.paths import StorePath


class Args(BaseModel):
    """A builder's arguments as it declares them (a subclass per builder): what its
    derivations carry, typed, and checked before it runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)


A = TypeVar("A", bound=Args)


class StoreView(Protocol):
    """What a builder may ask of the store: it reads, and never adds, registers or deletes
    (the realiser alone decides when an output becomes valid)."""

    @property
    def root(self) -> Path: ...
    def info(self, path: StorePath) -> PathInfo: ...
    def real_path(self, path: StorePath) -> Path: ...


@dataclass
class BuildContext:
    drv: Derivation
    out: Path  # where the builder writes its output (a file or directory; absent at start)
    out_path: StorePath  # the output's final store path
    inputs: dict[str, Path]  # input role -> physical path
    input_paths: dict[str, StorePath]  # input role -> store path
    closure: list[StorePath]  # every path the inputs refer to, transitively
    store: StoreView
    scratch: Path  # an empty private directory, removed after the build
    log: TextIO
    cancel: threading.Event
    sandbox: bool = True  # False: --no-sandbox
    # Bytes done of a total (a layer compressed, a file downloaded): the reporter shows them
    # with an ETA on a terminal. Called often; the reporter keeps it cheap.
    progress: Callable[[int, int], None] = lambda done, total: None

    def args(self, shape: type[A]) -> A:
        """The derivation's args as `shape`; args this builder version does not describe (a
        .drv from another cog, edited by hand) fail here, in one sentence."""
        try:
            return shape.model_validate(self.drv.args)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "args"
            raise BuildError(
                f"{self.drv.name}: its args do not fit the {self.drv.builder} builder "
                f"({where}: {first['msg']})",
                hint="regenerate the derivation with this version of cog",
            ) from None

    def layers(self) -> list[Path]:
        """The inputs named `layer-NN`, lowest first: root layers to stack."""
        return [self.inputs[r] for r in sorted(r for r in self.inputs if r.startswith("layer-"))]

    def check_cancelled(self) -> None:
        if self.cancel.is_set():
            raise BuildCancelled(f"building {self.drv.name} was cancelled")

    def say(self, line: str) -> None:
        self.log.write(line.rstrip("\n") + "\n")
        self.log.flush()


class Builder(Protocol):
    kind: str
    version: str  # must equal the derivation's builder_version
    runs_foreign_code: bool  # True: must run under the sandbox

    def build(self, ctx: BuildContext) -> None: ...


def derive(
    builder: type[Builder],
    name: str,
    *,
    inputs: Mapping[str, DrvInput | SrcInput] | None = None,
    args: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    sha256: str | None = None,
) -> Derivation:
    """A derivation that `builder` builds: its kind and version go into the derivation (so a
    builder whose bytes change, and bumps its version, changes every hash of its kind); with
    `sha256`, a fixed-output derivation whose single output must hash to it."""
    return Derivation(
        name=name,
        builder=builder.kind,
        builder_version=builder.version,
        inputs=dict(inputs or {}),
        args=dict(args or {}),
        env=dict(env or {}),
        fixed_output=FixedOutput(sha256=sha256) if sha256 is not None else None,
    )


@runtime_checkable
class ChecksAhead(Protocol):
    """A builder that can tell, before anything is built, that some of its derivations cannot
    succeed (a fetch whose every host does not exist): the error comes in a second, not after
    the builds the plan puts before it."""

    def check_ahead(self, drvs: Sequence[Derivation]) -> None: ...

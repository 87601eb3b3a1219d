"""The builder interface: a builder reads its inputs and writes one output; the store decides
where that output lives and when it becomes valid."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO

from builders.errors import BuildCancelled
from derivations.model import Derivation
from store.local import Store
from store.paths import StorePath


@dataclass
class BuildContext:
    drv: Derivation
    out: Path  # where the builder writes its output (a file or directory; absent at start)
    out_path: StorePath  # the output's final store path
    inputs: dict[str, Path]  # input role -> physical path
    input_paths: dict[str, StorePath]  # input role -> store path
    closure: list[StorePath]  # every path the inputs refer to, transitively
    store: Store
    scratch: Path  # an empty private directory, removed after the build
    log: TextIO
    cancel: threading.Event
    sandbox: bool = True  # False: --no-sandbox

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

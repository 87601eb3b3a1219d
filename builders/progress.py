"""Progress reporting for the realiser: live (rich) on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
from typing import Protocol, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class Reporter(Protocol):
    def plan(self, to_build: int, total: int) -> None: ...
    def started(self, name: str) -> None: ...
    def finished(self, name: str, seconds: float) -> None: ...
    def substituted(self, name: str) -> None: ...
    def fetched(self, name: str) -> None: ...
    def failed(self, name: str, error: str, log: str) -> None: ...
    def close(self) -> None: ...


class SilentReporter:
    """Says nothing: for a build whose failure is expected and retold (a build.run step's
    offline try, at `cog lock`)."""

    def plan(self, to_build: int, total: int) -> None:
        pass

    def started(self, name: str) -> None:
        pass

    def finished(self, name: str, seconds: float) -> None:
        pass

    def substituted(self, name: str) -> None:
        pass

    def fetched(self, name: str) -> None:
        pass

    def failed(self, name: str, error: str, log: str) -> None:
        pass

    def close(self) -> None:
        pass


class PlainReporter:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def plan(self, to_build: int, total: int) -> None:
        self._line(f"{to_build} of {total} derivations to build")

    def started(self, name: str) -> None:
        self._line(f"building {name}")

    def finished(self, name: str, seconds: float) -> None:
        self._line(f"built {name} ({seconds:.1f}s)")

    def substituted(self, name: str) -> None:
        self._line(f"{name} was built by another process")

    def fetched(self, name: str) -> None:
        self._line(f"fetched {name} from a binary cache")

    def failed(self, name: str, error: str, log: str) -> None:
        self._line(f"failed {name}: {error} (log: {log})")

    def close(self) -> None:
        pass


class RichReporter:
    def __init__(self) -> None:
        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]building"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.task = self.progress.add_task("", total=0)
        self.running: list[str] = []

    def _describe(self) -> None:
        self.progress.update(self.task, description=", ".join(self.running[:3]))

    def plan(self, to_build: int, total: int) -> None:
        self.progress.update(self.task, total=to_build)
        if to_build:
            self.progress.start()

    def started(self, name: str) -> None:
        self.running.append(name)
        self._describe()

    def finished(self, name: str, seconds: float) -> None:
        self.running.remove(name)
        self.progress.advance(self.task)
        self.console.print(f"built {name} [dim]({seconds:.1f}s)[/]")
        self._describe()

    def substituted(self, name: str) -> None:
        self.progress.advance(self.task)  # never `started`: nothing to take off the list

    def fetched(self, name: str) -> None:  # never planned as a build: no advance
        self.console.print(f"fetched {name} [dim](binary cache)[/]")

    def failed(self, name: str, error: str, log: str) -> None:
        self.console.print(f"[red]failed[/] {name}: {error} [dim](log: {log})[/]")

    def close(self) -> None:
        self.progress.stop()


def default_reporter() -> Reporter:
    return RichReporter() if sys.stderr.isatty() else PlainReporter()

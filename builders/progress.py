"""Progress reporting for the realiser: live (rich) on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import threading
import time
from typing import TYPE_CHECKING, Protocol, TextIO

from rich.filesize import decimal

if TYPE_CHECKING:
    from rich.progress import TaskID

# Below this, a build's bytes are not worth a bar of their own.
PROGRESS_FLOOR = 64 << 20
# Plain output (a CI log) says how a long build goes at most this often.
PLAIN_EVERY = 30.0


class Reporter(Protocol):
    def plan(self, to_build: int, total: int) -> None: ...
    def started(self, name: str) -> None: ...
    def finished(self, name: str, seconds: float) -> None: ...
    def substituted(self, name: str) -> None: ...
    def fetched(self, name: str) -> None: ...
    def failed(self, name: str, error: str, log: str) -> None: ...
    def progress(self, name: str, done: int, total: int) -> None: ...
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

    def progress(self, name: str, done: int, total: int) -> None:
        pass

    def close(self) -> None:
        pass


def amount(done: int, total: int) -> str:
    return f"{decimal(done)} of {decimal(total)}"


class PlainReporter:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self._began: dict[str, tuple[float, float]] = {}  # name -> (first report, last line)

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

    def progress(self, name: str, done: int, total: int) -> None:
        """A line now and then for a long build: how far, and about how long is left."""
        if total < PROGRESS_FLOOR:
            return
        now = time.monotonic()
        began, said = self._began.setdefault(name, (now, now))
        if now - said < PLAIN_EVERY or not done:
            return
        self._began[name] = (began, now)
        left = (total - done) * (now - began) / done
        self._line(f"  {name}: {amount(done, total)}, about {left:.0f}s left")

    def close(self) -> None:
        pass


class RichReporter:
    def __init__(self) -> None:
        # Imported here: only a terminal shows live bars, and rich's console is ~50 ms of every
        # command's start.
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(stderr=True)
        self.bars = Progress(
            TextColumn("[bold]{task.fields[label]}"),
            BarColumn(),
            TextColumn("{task.fields[amount]}"),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.task = self.bars.add_task("", total=0, label="building", amount="")
        self.running: list[str] = []
        self.bytes: dict[str, TaskID] = {}  # a bar of its own for each build with many bytes
        self.lock = threading.Lock()  # builders report from their threads

    def _describe(self) -> None:
        self.bars.update(self.task, description=", ".join(self.running[:3]))

    def plan(self, to_build: int, total: int) -> None:
        self.total = to_build
        self.bars.update(self.task, total=to_build, amount=f"0/{to_build}")
        if to_build:
            self.bars.start()

    def _advance(self) -> None:
        self.bars.advance(self.task)
        done = int(self.bars.tasks[0].completed)
        self.bars.update(self.task, amount=f"{done}/{self.total}")

    def _drop_bar(self, name: str) -> None:
        with self.lock:
            task = self.bytes.pop(name, None)
        if task is not None:
            self.bars.remove_task(task)

    def started(self, name: str) -> None:
        self.running.append(name)
        self._describe()

    def finished(self, name: str, seconds: float) -> None:
        self.running.remove(name)
        self._drop_bar(name)
        self._advance()
        self.console.print(f"built {name} [dim]({seconds:.1f}s)[/]")
        self._describe()

    def substituted(self, name: str) -> None:
        self._advance()  # never `started`: nothing to take off the list

    def fetched(self, name: str) -> None:  # never planned as a build: no advance
        self.console.print(f"fetched {name} [dim](binary cache)[/]")

    def failed(self, name: str, error: str, log: str) -> None:
        self._drop_bar(name)
        self.console.print(f"[red]failed[/] {name}: {error} [dim](log: {log})[/]")

    def progress(self, name: str, done: int, total: int) -> None:
        """Bytes and time left, live, for a build with many (a layer being compressed)."""
        if total < PROGRESS_FLOOR:
            return
        with self.lock:
            task = self.bytes.get(name)
            if task is None:
                task = self.bars.add_task(name, total=total, label="  ", amount="")
                self.bytes[name] = task
        self.bars.update(task, completed=done, total=total, amount=amount(done, total))

    def close(self) -> None:
        self.bars.stop()


def default_reporter() -> Reporter:
    return RichReporter() if sys.stderr.isatty() else PlainReporter()

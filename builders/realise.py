"""The realiser: builds a derivation graph into the store under trio.

Each derivation whose outputs are not valid yet becomes a task in one nursery; a task waits for
its inputs, takes a job slot (`--jobs`), takes its outputs' file locks (so another process never
builds the same thing at the same time), checks again, and runs its builder in a worker thread.
The first failure or a Ctrl-C cancels the nursery: builders see their cancel flag, subprocesses
are killed, temp dirs are removed, and nothing partial is ever registered.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import trio

from builders.base import BuildContext, Builder
from builders.command import CommandBuilder
from builders.errors import BuildCancelled, BuildError, SandboxUnavailable
from builders.fetch import FetchBuilder
from builders.image import ImageBuilder, LayerBuilder
from builders.image_rootfs import ImageRootfsBuilder
from builders.oci_pull import OciBlobBuilder, OciLayoutBuilder
from builders.progress import PlainReporter, Reporter
from builders.pyenv import BinaryBuilder, EnvBuilder
from builders.rootfs import RootfsBuilder
from builders.rootview import ViewBuilder
from builders.run_step import RunStepBuilder, nar_sha256
from builders.sandbox import sandbox_works
from builders.sdist import SdistBuilder
from builders.sdk import PyWheelBuilder
from builders.unpack import UnpackBuilder
from builders.wheel import WheelBuilder
from derivations.hashing import drv_path, output_path, output_paths
from derivations.model import Derivation, DrvInput
from derivations.store_io import write_drv
from store.errors import HashMismatch, StoreError, leaves, no_space
from store.hashing import file_sha256
from store.local import Store
from store.locks import FileLock
from store.paths import StorePath

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

T = TypeVar("T")


def default_builders() -> dict[str, Builder]:
    builders: tuple[Builder, ...] = (
        FetchBuilder(),
        UnpackBuilder(),
        CommandBuilder(),
        RootfsBuilder(),
        WheelBuilder(),
        EnvBuilder(),
        BinaryBuilder(),
        PyWheelBuilder(),
        SdistBuilder(),
        ViewBuilder(),
        ImageBuilder(),
        LayerBuilder(),
        ImageRootfsBuilder(),
        OciBlobBuilder(),
        OciLayoutBuilder(),
        RunStepBuilder(),  # with no secrets: `run_step.with_secrets` gives them
    )
    return {b.kind: b for b in builders}


@dataclass(eq=False)
class _Node:
    drv: Derivation
    path: StorePath  # the .drv
    outputs: dict[str, StorePath]
    deps: list[_Node] = field(default_factory=list)
    done: trio.Event = field(default_factory=trio.Event)


async def run_cancellable(fn: Callable[[threading.Event], T]) -> T:
    """Runs `fn(cancel)` in a thread; cancelling the caller sets `cancel` and waits for `fn`."""
    cancel = threading.Event()
    box: list[T] = []

    async def watch() -> None:
        try:
            await trio.sleep_forever()
        finally:
            cancel.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        try:
            box.append(await trio.to_thread.run_sync(fn, cancel))
        except BuildCancelled:
            if cancel.is_set():  # we asked for it: surface the caller's own cancellation
                await trio.lowlevel.checkpoint()
            raise
        finally:
            nursery.cancel_scope.cancel()
    return box[0]


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error worth reporting out of a nursery's group: an interrupt, else a build error."""
    flat = leaves(group)
    for kind in (KeyboardInterrupt, StoreError):
        for e in flat:
            if isinstance(e, kind):
                return e
    return flat[0]


class Realiser:
    def __init__(
        self,
        store: Store,
        builders: Mapping[str, Builder] | None = None,
        jobs: int | None = None,
        sandbox: bool = True,
        reporter: Reporter | None = None,
    ) -> None:
        self.store = store
        self.builders = dict(builders) if builders is not None else default_builders()
        self.jobs = max(1, jobs or os.cpu_count() or 1)
        self.sandbox = sandbox
        self.reporter = reporter or PlainReporter()
        self.built: list[StorePath] = []  # .drv paths this realiser ran a builder for

    # --- planning -----------------------------------------------------------------------------

    def _graph(self, targets: Sequence[Derivation]) -> tuple[list[_Node], dict[StorePath, _Node]]:
        """The nodes the targets need. As in Nix, a node whose outputs are valid needs none of
        its inputs (its closure is valid with it), so the walk stops there: after a gc that
        kept an image, its .debs and wheel files are not fetched again."""
        nodes: dict[StorePath, _Node] = {}

        def visit(drv: Derivation) -> _Node:
            path = drv_path(drv)
            node = nodes.get(path)
            if node is None:
                node = _Node(drv, path, output_paths(drv))
                nodes[path] = node
                if not self._valid(node):
                    inputs = drv.inputs.values()
                    deps = {visit(i.drv) for i in inputs if isinstance(i, DrvInput)}
                    node.deps = sorted(deps, key=lambda n: n.path)
            return node

        return [visit(t) for t in targets], nodes

    def _preflight(self, pending: list[_Node]) -> None:
        for node in pending:
            builder = self.builders.get(node.drv.builder)
            if builder is None:
                raise BuildError(
                    f"{node.path} needs a builder {node.drv.builder!r}, which this cog lacks"
                )
            if builder.version != node.drv.builder_version:
                raise BuildError(
                    f"{node.path} needs the {builder.kind} builder version "
                    f"{node.drv.builder_version}, this cog has {builder.version}",
                    hint="regenerate the derivation with this version of cog",
                )
            if node.drv.outputs != ("out",):
                raise BuildError(
                    f"{node.path} declares outputs {', '.join(node.drv.outputs)}; builders "
                    "produce one output, 'out', for now"
                )
            if builder.runs_foreign_code and self.sandbox and not sandbox_works():
                raise SandboxUnavailable(
                    f"{node.drv.name} runs foreign code and must be sandboxed, but bubblewrap is "
                    "missing or cannot create namespaces here"
                )

    def _valid(self, node: _Node) -> bool:
        return all(self.store.is_valid(p) for p in node.outputs.values())

    # --- running ------------------------------------------------------------------------------

    async def realise(self, targets: Sequence[Derivation]) -> list[dict[str, StorePath]]:
        """Builds what is missing; returns each target's output paths."""
        roots, nodes = self._graph(targets)
        gc_lock = FileLock(self.store.meta / "gc.lock", shared=True)
        await trio.to_thread.run_sync(gc_lock.acquire)
        try:
            for root in roots:
                write_drv(self.store, root.drv)
            pending = [n for n in nodes.values() if not self._valid(n)]
            self._preflight(pending)
            for n in nodes.values():
                if n not in pending:
                    n.done.set()
            self.reporter.plan(len(pending), len(nodes))
            limiter = trio.CapacityLimiter(self.jobs)
            try:
                async with trio.open_nursery() as nursery:
                    for node in pending:
                        nursery.start_soon(self._run, node, limiter)
            except BaseExceptionGroup as group:
                raise _first_error(group) from None
        finally:
            gc_lock.release()
            self.reporter.close()
        return [n.outputs for n in roots]

    async def _lock(self, lock: FileLock) -> None:
        delay = 0.01
        while not lock.acquire(blocking=False):
            await trio.sleep(delay)
            delay = min(delay * 2, 0.25)

    async def _run(self, node: _Node, limiter: trio.CapacityLimiter) -> None:
        for dep in node.deps:
            await dep.done.wait()
        async with limiter:
            locks = [self.store.output_lock(p) for p in sorted(node.outputs.values())]
            held: list[FileLock] = []
            try:
                for lock in locks:
                    await self._lock(lock)
                    held.append(lock)
                if self._valid(node):
                    self.reporter.substituted(node.drv.name)
                else:
                    await self._build(node)
            finally:
                for lock in held:
                    lock.release()
        node.done.set()

    async def _build(self, node: _Node) -> None:
        log = self.store.logs / f"{node.path.base}.log"
        self.reporter.started(node.drv.name)
        start = time.monotonic()
        began = time.time()
        try:
            await run_cancellable(lambda cancel: self._build_sync(node, log, cancel))
        except BaseExceptionGroup as group:  # run_cancellable's nursery wraps the builder's error
            failure = self._failure(group)
            if failure is None:  # cancelled, interrupted, or a bug: as it is
                raise
            raise self._explained(node, log, began, failure) from None
        except (StoreError, OSError) as e:
            raise self._explained(node, log, began, e) from None
        self.built.append(node.path)
        self.reporter.finished(node.drv.name, time.monotonic() - start)

    @staticmethod
    def _failure(group: BaseExceptionGroup[BaseException]) -> StoreError | OSError | None:
        """The builder's own error, when that is all the group holds."""
        found = leaves(group)
        if len(found) != 1 or isinstance(found[0], BuildCancelled):
            return None
        return found[0] if isinstance(found[0], (StoreError, OSError)) else None

    def _explained(
        self, node: _Node, log: Path, began: float, error: StoreError | OSError
    ) -> StoreError:
        """The error to raise for a failed build, reported: a full disk as such; a builder's
        failure with the end of its log (the why) and the full log's path."""
        name = node.drv.name
        full = no_space(error, self.store.root, during=f"building {name}")
        explained: StoreError
        if full is not None:
            explained = BuildError(str(full), hint=full.hint)
        elif isinstance(error, (BuildError, OSError)):
            tail = self._log_tail(log, began)
            explained = (
                error
                if isinstance(error, BuildError)
                else BuildError(f"building {name} failed: {error}")
            )
            if tail:
                explained.args = (f"{explained}\n{tail}",)
                seen = f"see the full log: {log}"
                explained.hint = f"{explained.hint}; {seen}" if explained.hint else seen
        else:  # a hash mismatch and the like: already precise
            explained = error
        self.reporter.failed(name, str(explained).split("\n", 1)[0], str(log))
        return explained

    @staticmethod
    def _log_tail(log: Path, since: float, lines: int = 15, width: int = 300) -> str:
        """The last non-empty lines of this build's log, indented and each cut to `width`;
        "" when it has none (or is a previous build's)."""
        window = 64 << 10
        try:
            with open(log, "rb") as f:
                if os.fstat(f.fileno()).st_mtime < since - 1:
                    return ""
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - window))
                data = f.read()
        except OSError:
            return ""
        text = data.decode(errors="replace").replace("\r", "\n")
        found = [line.rstrip() for line in text.split("\n") if line.strip()]
        if size > window:
            found = found[1:]  # the first may be the end of a cut line
        return "\n".join(
            f"    {line[:width]}{' …' if len(line) > width else ''}" for line in found[-lines:]
        )

    def _build_sync(self, node: _Node, log_path: Path, cancel: threading.Event) -> None:
        drv = node.drv
        builder = self.builders[drv.builder]
        input_paths = {
            role: output_path(i.drv, i.output)
            if isinstance(i, DrvInput)
            else StorePath.parse(i.path)
            for role, i in drv.inputs.items()
        }
        closure = self.store.closure(input_paths.values())
        with self.store.temp_dir("build-") as tmp, open(log_path, "w") as log:
            scratch = tmp / "scratch"
            scratch.mkdir()
            ctx = BuildContext(
                drv=drv,
                out=tmp / "out",
                out_path=node.outputs["out"],
                inputs={r: self.store.real_path(p) for r, p in input_paths.items()},
                input_paths=input_paths,
                closure=closure,
                store=self.store,
                scratch=scratch,
                log=log,
                cancel=cancel,
                sandbox=self.sandbox,
            )
            builder.build(ctx)
            ctx.check_cancelled()
            if not os.path.lexists(ctx.out):
                raise BuildError(f"the builder of {drv.name} produced no output")
            ca = None
            if drv.fixed_output is not None:
                ca = f"fixed:sha256:{drv.fixed_output.sha256}"
                actual = _file_sha256(ctx.out)
                if actual != drv.fixed_output.sha256:
                    raise HashMismatch(
                        f"{drv.name} is fixed-output with sha256 {drv.fixed_output.sha256}, but "
                        f"its builder produced {actual}"
                    )
            self.store.install(
                ctx.out,
                node.outputs["out"],
                scan=() if drv.fixed_output is not None else closure,
                deriver=str(node.path),
                ca=ca,
            )


def _file_sha256(path: Path) -> str:
    if path.is_dir() and not path.is_symlink():  # a tree (a build.run step): its archive's
        return nar_sha256(path)
    if path.is_symlink() or not path.is_file():
        return "(not a regular file)"
    return file_sha256(path)


def realise(
    store: Store, targets: Sequence[Derivation], **kwargs: object
) -> list[dict[str, StorePath]]:
    """Synchronous entry point (runs its own trio loop)."""
    realiser = Realiser(store, **kwargs)  # type: ignore[arg-type]
    return trio.run(realiser.realise, targets)

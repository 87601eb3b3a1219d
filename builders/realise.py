"""The realiser: builds a derivation graph into the store under trio.

Planning asks, level by level, which derivations are valid here, which a binary cache holds
(one batch of lookups per level; store.cache.Substituter) and which must be built; only the
inputs of what must be built are looked at further, as in Nix. Work is started on demand: a
node to build first wants its inputs (substituted or built), takes a job slot (`--jobs`),
takes its outputs' file locks (so another process never builds the same thing at the same
time), checks again, and runs its builder in a worker thread. A cached node whose fetch fails
(untrusted, tampered, unreachable) is built instead. The first failure or a Ctrl-C cancels
the nursery: builders see their cancel flag, subprocesses are killed, temp dirs are removed,
and nothing partial is ever registered.
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

from builders.base import BuildContext, Builder, ChecksAhead
from builders.errors import BuildCancelled, BuildError, SandboxUnavailable
from builders.progress import PlainReporter, Reporter
from builders.registry import Builders
from builders.sandbox.jail import sandbox_works
from derivations.errors import DerivationError
from derivations.hashing import drv_path, output_path, output_paths
from derivations.model import Derivation, DrvInput, SrcInput
from derivations.store_io import write_drv
from store.archive import fixed_output_sha256
from store.cache import Substituter
from store.errors import CogError, HashMismatch, leaves, no_space
from store.local import Store
from store.locks import FileLock
from store.paths import StorePath

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

T = TypeVar("T")


def default_builders() -> Builders:
    return Builders()


@dataclass(eq=False)
class _Node:
    drv: Derivation
    path: StorePath  # the .drv
    outputs: dict[str, StorePath]
    state: str = ""  # "valid" here, "cached" in a binary cache, or "build"
    deps: list[_Node] | None = None  # known once the node must be built
    started: bool = False
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
    for kind in (KeyboardInterrupt, CogError):
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
        substituter: Substituter | None = None,
    ) -> None:
        self.store = store
        self.builders = builders if builders is not None else Builders()
        self.jobs = max(1, jobs or os.cpu_count() or 1)
        self.sandbox = sandbox
        self.reporter = reporter or PlainReporter()
        self.substituter = substituter
        self.built: list[StorePath] = []  # .drv paths this realiser ran a builder for
        self.substituted: list[StorePath] = []  # .drv paths whose outputs came from a cache
        self.nodes: dict[StorePath, _Node] = {}

    # --- planning -----------------------------------------------------------------------------

    def _node(self, drv: Derivation) -> _Node:
        path = drv_path(drv)
        node = self.nodes.get(path)
        if node is None:
            node = self.nodes[path] = _Node(drv, path, output_paths(drv))
        return node

    def _classify(self, nodes: Sequence[_Node]) -> None:
        """Sets each new node's state: valid here, in a cache (asked in one batch), or to build."""
        fresh = [n for n in nodes if not n.state]
        for node in fresh:
            if all(self.store.is_valid(p) for p in node.outputs.values()):
                node.state = "valid"
                node.done.set()
        unknown = [n for n in fresh if not n.state]
        found: set[StorePath] = set()
        if self.substituter is not None and unknown:
            for node in unknown:
                if node.drv.fixed_output is not None:
                    ca = f"fixed:sha256:{node.drv.fixed_output.sha256}"
                    self.substituter.expected_ca[node.outputs["out"]] = ca
            found = self.substituter.query(p for n in unknown for p in n.outputs.values())
        for node in unknown:
            node.state = "cached" if set(node.outputs.values()) <= found else "build"

    def _expand(self, nodes: Sequence[_Node]) -> list[_Node]:
        """The inputs of nodes that must be built, level by level (as in Nix, a node that is
        valid or in a cache needs none of its inputs: after a gc that kept an image, its .debs
        and wheel files are not fetched again); returns the nodes newly found to build."""
        frontier = [n for n in nodes if n.state == "build" and n.deps is None]
        found: list[_Node] = []
        while frontier:
            fresh: list[_Node] = []
            for node in frontier:
                inputs = [i.drv for i in node.drv.inputs.values() if isinstance(i, DrvInput)]
                deps = {self._node(d) for d in inputs}
                node.deps = sorted(deps, key=lambda n: n.path)
                fresh += [d for d in node.deps if not d.state]
            fresh = list(dict.fromkeys(fresh))
            self._classify(fresh)
            frontier = [n for n in fresh if n.state == "build"]
            found += frontier
        return found

    def _preflight(self, pending: Sequence[_Node]) -> None:
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

    def _check_ahead(self, pending: Sequence[_Node]) -> None:
        """Each builder that can see a failure coming looks over its share of the plan."""
        shares: dict[str, list[Derivation]] = {}
        for node in pending:
            shares.setdefault(node.drv.builder, []).append(node.drv)
        for kind, drvs in sorted(shares.items()):
            builder = self.builders.get(kind)
            if isinstance(builder, ChecksAhead):
                builder.check_ahead(drvs)

    def _valid(self, node: _Node) -> bool:
        return all(self.store.is_valid(p) for p in node.outputs.values())

    # --- running ------------------------------------------------------------------------------

    async def realise(
        self, targets: Sequence[Derivation], fetch: bool = True
    ) -> list[dict[str, StorePath]]:
        """Builds (or substitutes) what is missing; returns each target's output paths. With
        `fetch` false, a target a cache holds stays there (its path info is the
        substituter's): only what a build here needs is fetched."""
        self.nodes = {}  # a fresh plan per call: what is valid may have changed
        roots = [self._node(t) for t in targets]
        gc_lock = FileLock(self.store.meta / "gc.lock", shared=True)
        await trio.to_thread.run_sync(gc_lock.acquire)
        try:
            for root in roots:
                try:
                    write_drv(self.store, root.drv)
                except DerivationError:
                    if self.substituter is None:
                        raise
                    # Its sources are left in a cache: a .drv is written only with its inputs.
            await trio.to_thread.run_sync(self._classify, roots)
            await trio.to_thread.run_sync(self._expand, roots)
            pending = [n for n in self.nodes.values() if n.state == "build"]
            self._preflight(pending)
            await trio.to_thread.run_sync(self._check_ahead, pending)
            self.reporter.plan(len(pending), len(self.nodes))
            self._limiter = trio.CapacityLimiter(self.jobs)
            self._downloads = trio.CapacityLimiter(max(4, self.jobs))
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    for root in roots:
                        if root.state != "cached" or fetch:
                            self._want(root)
            except BaseExceptionGroup as group:
                raise _first_error(group) from None
        finally:
            gc_lock.release()
            self.reporter.close()
        return [n.outputs for n in roots]

    def _want(self, node: _Node) -> None:
        """Starts making `node`'s outputs valid here, once."""
        if not node.started and node.state != "valid":
            node.started = True
            self._nursery.start_soon(self._run, node)

    async def _lock(self, lock: FileLock) -> None:
        delay = 0.01
        while not lock.acquire(blocking=False):
            await trio.sleep(delay)
            delay = min(delay * 2, 0.25)

    async def _substitute(self, node: _Node) -> bool:
        substituter = self.substituter
        assert substituter is not None
        async with self._downloads:
            for path in node.outputs.values():
                fetched = await trio.to_thread.run_sync(substituter.fetch, self.store, path)
                if not fetched:
                    return False
        self.substituted.append(node.path)
        self.reporter.fetched(node.drv.name)
        return True

    def _fetch_sources(self, node: _Node) -> None:
        """A node's source inputs (store paths it names directly) must be here to build it:
        those left in a cache are fetched now."""
        for inp in node.drv.inputs.values():
            if isinstance(inp, SrcInput):
                path = StorePath.parse(inp.path)
                if self.store.is_valid(path):
                    continue
                if self.substituter is None or not self.substituter.fetch(self.store, path):
                    raise DerivationError(
                        f"{node.drv.name} needs {path}, which is not in the store"
                    )

    async def _run(self, node: _Node) -> None:
        if node.state == "cached":
            if await self._substitute(node):
                node.done.set()
                return
            node.state = "build"  # the cache could not give it after all: build it here
            self._preflight([node, *await trio.to_thread.run_sync(self._expand, [node])])
        for dep in node.deps or []:
            self._want(dep)
        for dep in node.deps or []:
            await dep.done.wait()
        await trio.to_thread.run_sync(self._fetch_sources, node)
        async with self._limiter:
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
        except (CogError, OSError) as e:
            raise self._explained(node, log, began, e) from None
        self.built.append(node.path)
        self.reporter.finished(node.drv.name, time.monotonic() - start)

    @staticmethod
    def _failure(group: BaseExceptionGroup[BaseException]) -> CogError | OSError | None:
        """The builder's own error, when that is all the group holds."""
        found = leaves(group)
        if len(found) != 1 or isinstance(found[0], BuildCancelled):
            return None
        return found[0] if isinstance(found[0], (CogError, OSError)) else None

    def _explained(
        self, node: _Node, log: Path, began: float, error: CogError | OSError
    ) -> CogError:
        """The error to raise for a failed build, reported: a full disk as such; a builder's
        failure with the end of its log (the why) and the full log's path."""
        name = node.drv.name
        full = no_space(error, self.store.root, during=f"building {name}")
        explained: CogError
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
                progress=lambda done, total: self.reporter.progress(drv.name, done, total),
            )
            builder.build(ctx)
            ctx.check_cancelled()
            if not os.path.lexists(ctx.out):
                raise BuildError(f"the builder of {drv.name} produced no output")
            ca = None
            if drv.fixed_output is not None:
                ca = f"fixed:sha256:{drv.fixed_output.sha256}"
                actual = fixed_output_sha256(ctx.out)
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


def realise(
    store: Store, targets: Sequence[Derivation], fetch: bool = True, **kwargs: object
) -> list[dict[str, StorePath]]:
    """Synchronous entry point (runs its own trio loop)."""
    realiser = Realiser(store, **kwargs)  # type: ignore[arg-type]
    return trio.run(realiser.realise, targets, fetch)

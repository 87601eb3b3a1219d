"""The project's root for the package code that locking runs, as the build would make it.

Under Cog, pip runs after apt: an sdist whose metadata hook looks for a system package's
headers or pkg-config file (manimpango's `pangocairo >= 1.30.0 is required`) finds what
`system_packages` installed. So when the lock must build an sdist's metadata, uv and the
backend's hooks run over the root its sdists are built on (builders.sdist.build_root: the
base, Debian's Python, the toolchain and the system packages the lock just pinned), with the
project's interpreter. The layers are realised into the store as the build realises them (the
build then finds them there), and a private view of them, with the mount points the tools
need, lives only as long as the lock.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from builders.progress import default_reporter
from builders.realise import realise
from builders.rootview import add_mount_points, merge_view, view_derivation
from builders.sandbox.jail import ProjectRootTool
from builders.sdist import build_root
from builders.userland import standalone_python, userland
from cuda_channels.channel import Channel
from derivations.apt import DebPin, RootPins
from derivations.buildreqs import HookRoot
from derivations.hashing import output_path
from derivations.model import DrvInput
from store.local import Store


@dataclass(frozen=True)
class LockRoots:
    """What locking asks of the store a build realises into (derivations.lock.ProjectRoots)."""

    store: Store
    jobs: int | None = None

    def interpreter_in_store(self, channel: Channel, python_version: str, arch: str) -> bool:
        """Whether the standalone interpreter (unpacked, or its archive) is in the store, so
        nothing needs to fetch it."""
        unpacked = standalone_python(channel, python_version, arch)
        fetched = [i.drv for i in unpacked.inputs.values() if isinstance(i, DrvInput)]
        return any(self.store.is_valid(output_path(d)) for d in (unpacked, *fetched))

    @contextlib.contextmanager
    def hook_root(
        self,
        channel: Channel,
        arch: str,
        python_version: str,
        pins: RootPins,
        toolchain: tuple[DebPin, ...],
    ) -> Iterator[HookRoot]:
        land = userland(channel, arch, python_version, pins)
        if toolchain:
            root = build_root(land, toolchain, arch)
        else:  # a channel without one: its sdists are refused once they are known
            root = view_derivation("hook-root", list(land.root_layers))
        targets = [root, *([land.python] if land.python is not None else [])]
        realise(self.store, targets, jobs=self.jobs, reporter=default_reporter())
        store = []
        if land.python is not None:
            closure = self.store.closure([output_path(land.python)])
            store = [(self.store.real_path(p), str(p)) for p in closure]
        with self.store.temp_dir("hook-root-") as tmp:
            # Hard links into the store, bound read-only: the root's files are never written.
            view = merge_view([self.store.real_path(output_path(root))], Path(tmp) / "root")
            add_mount_points(view)
            # uv's cache while it runs packages' code: this lock's alone, never the shared one.
            cache = Path(tmp) / "uv-cache"
            cache.mkdir()
            yield HookRoot(ProjectRootTool(view, store, cache), land.interpreter)

"""The project's managed weights: import (sources into the store, an OCI artifact each, pushed
to the model's repository, recorded in weights.lock) and pull (the files weights.lock names, back
from the registry into the store). A command calls these steps in order and prints between them.

Files are added and rooted under one hold of the store's writing lock (`weights_cache.keep`), and
weights.lock is written last, after every push: a crash anywhere leaves the old lock, valid store
paths, and temp dirs the next command removes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from cog.project.weights_cache import keep, locate
from cog.project.weights_repository import weight_repository
from cog.project.weights_sources import (
    Plan,
    WeightsError,
    fingerprint,
    managed_weights,
    plan_weight,
)
from derivations.config import CogConfig, Weight, load_config
from derivations.weights_artifact import Artifact, build_artifact, envelope_format
from derivations.weights_lock import LOCK_NAME, LockEntry, LockFile, WeightsLock, load_lock
from store.local import Store
from store.oci import Layout, digest_of
from store.push import KnownBlobs, push
from store.reference import Reference
from store.registry import Registry
from store.weight_files import add_file
from store.weight_layers import unpack_layer, write_layout


class ProjectWeights:
    """The managed weights of the project at `project`, in `store`."""

    def __init__(self, store: Store, project: Path, config: CogConfig | None = None) -> None:
        self.store = store
        self.project = project
        self.config = config if config is not None else load_config(project)
        self.lock_path = project / LOCK_NAME
        self._pending: list[LockEntry] = []  # built this run, not yet in weights.lock

    def declared(self) -> list[Weight]:
        weights = managed_weights(self.config)
        if not weights:
            raise WeightsError(
                "no weights defined in cog.yaml",
                hint="add weights: entries with a name, a target and a source: {uri: file://…}",
            )
        return weights

    def repository(self) -> Reference:
        return weight_repository(self.config)

    def registry(self) -> Registry:
        repo = self.repository()
        return Registry.shared(repo.host, repo.insecure)

    def reachable(self) -> None:
        """Fails, with what to do, where the model's registry does not answer or accept us."""
        self.registry().ping()

    def lock(self, required: bool = True) -> WeightsLock:
        return load_lock(self.lock_path, required)

    # --- import ----------------------------------------------------------------------------

    def plan(self, names: Sequence[str], allowed: Sequence[Path] = ()) -> list[Plan]:
        """The weights named (all by default), their sources read and hashed, each with its
        entry in weights.lock to say what changed."""
        weights = self.declared()
        lock = self.lock(required=False)
        plans = [plan_weight(self.project, w, allowed) for w in _select(weights, names)]
        for plan in plans:
            fingerprint(plan)
            plan.old = lock.find(plan.name)
        return plans

    def build(self, plan: Plan) -> Artifact:
        """The plan's files into the store (those it lacks), then the weight's artifact."""
        with self.store.writing():
            files: list[tuple[LockFile, Path]] = []
            for f in plan.files:
                real = locate(self.store, f.digest, f.size)
                if real is None:
                    try:
                        real = self.store.real_path(add_file(self.store, f.real, f.size, f.digest))
                    except OSError as e:
                        raise WeightsError(f"cannot read {f.real}: {e.strerror}") from None
                files.append((LockFile(f.path, f.size, f.digest, ""), real))
            artifact = build_artifact(plan.name, plan.target, plan.locked_sources, files)
            self._pending.append(artifact.entry)
            keep(self.store, self.project, [*self.lock(required=False).weights, *self._pending])
        return artifact

    def push(self, artifact: Artifact, say: Callable[[str], None]) -> str:
        """Pushes the artifact, tagged by name and set digest; returns `repo@digest`."""
        repo = self.repository()
        known = KnownBlobs(self.store.meta / "registries", repo.host)
        with self.store.temp_dir("weights-") as scratch:
            write_layout(
                scratch / "layout", artifact.manifest, artifact.config_blob, artifact.parts
            )
            layout = Layout.open(scratch / "layout")
            result = push(
                layout,
                repo.with_tag(artifact.tag),
                known,
                jobs=4,
                say=say,
                registry=self.registry(),
            )
        if result.digest != artifact.entry.digest:
            raise WeightsError(
                f"the registry stored weight {artifact.entry.name!r} as {result.digest}"
            )
        return f"{repo}@{result.digest}"

    def record(self, artifacts: list[Artifact]) -> WeightsLock:
        """weights.lock with each imported entry (an unchanged one keeps its import time), in
        cog.yaml's order, without the weights cog.yaml no longer has; rooted, then saved."""
        lock = self.lock(required=False)
        imported = {a.entry.name: a.entry for a in artifacts}
        entries = []
        for weight in self.declared():
            name = weight.name or ""
            old, new = lock.find(name), imported.get(name)
            if new is not None and old is not None and old.same_content(new):
                new = old
            chosen = new or old
            if chosen is not None:
                entries.append(chosen)
        lock.weights = entries
        lock.envelope_format = envelope_format()
        lock.save(self.lock_path)
        with self.store.writing():
            keep(self.store, self.project, lock.weights)
        self._pending = []
        return lock

    # --- pull ------------------------------------------------------------------------------

    def pulled(self, names: Sequence[str]) -> list[LockEntry]:
        """The entries of weights.lock to pull: those named, else all."""
        self.declared()
        lock = self.lock()
        if not names:
            return lock.weights
        unknown = [n for n in dict.fromkeys(names) if lock.find(n) is None]
        if unknown:
            raise WeightsError(
                f"unknown weight(s): {', '.join(unknown)}",
                hint=f"{LOCK_NAME} has: {', '.join(e.name for e in lock.weights) or 'none'}",
            )
        return [e for n in dict.fromkeys(names) if (e := lock.find(n)) is not None]

    def missing(self, entry: LockEntry) -> list[LockFile]:
        """The entry's files the store lacks (after taking in what the old cache has)."""
        with self.store.writing():
            lacking = [f for f in entry.files if locate(self.store, f.digest, f.size) is None]
            keep(self.store, self.project, self.lock().weights)
        return lacking

    def layers(self, entry: LockEntry, missing: list[LockFile]) -> list[tuple[str, int]]:
        """The (digest, size) of each layer that holds a missing file, from the weight's
        manifest in the registry, which must be the one weights.lock names."""
        repo = self.repository()
        data, _ = self.registry().get_manifest(repo.repository, entry.digest)
        if digest_of(data) != entry.digest:
            raise WeightsError(
                f"the registry sent a manifest for {entry.name!r} that is not {entry.digest}"
            )
        try:
            listed = {str(d["digest"]): int(d.get("size", 0)) for d in json.loads(data)["layers"]}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise WeightsError(
                f"the manifest of weight {entry.name!r} is not a weight artifact"
            ) from None
        wanted = []
        for layer in sorted({f.layer for f in missing}):
            if layer not in listed:
                raise WeightsError(
                    f"the manifest of weight {entry.name!r} has no layer {layer[7:19]}",
                    hint="import the weights again",
                )
            wanted.append((layer, listed[layer]))
        return wanted

    def fetch_layer(self, entry: LockEntry, layer: str, size: int) -> Iterator[LockFile]:
        """Downloads one layer and stores its files; yields each as it is in the store (and
        rooted, under the same hold of the writing lock)."""
        repo = self.repository()
        wanted = {f.path: f for f in entry.files if f.layer == layer}
        with self.store.temp_dir("weights-pull-") as scratch:
            blob = scratch / "layer"
            self.registry().fetch_blob(repo.repository, layer, size, blob)
            with self.store.writing():
                sizes = {path: (f.size, f.digest) for path, f in wanted.items()}
                try:
                    for path in unpack_layer(self.store, blob, layer, sizes):
                        yield wanted[path]
                finally:
                    keep(self.store, self.project, self.lock().weights)


def _select(weights: list[Weight], names: Sequence[str]) -> list[Weight]:
    if not names:
        return weights
    by_name = {w.name: w for w in weights}
    unknown = [n for n in dict.fromkeys(names) if n not in by_name]
    if unknown:
        raise WeightsError(
            f"weight(s) not found in cog.yaml: {', '.join(unknown)}",
            hint=f"the weights are: {', '.join(str(w.name) for w in weights)}",
        )
    return [by_name[n] for n in dict.fromkeys(names)]

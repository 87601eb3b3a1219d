"""`cog weights status`: each managed weight as it stands across cog.yaml, weights.lock and the
model's registry, with Cog's statuses and in Cog's order (cog.yaml's weights, then those only
weights.lock has):

- ready: weights.lock matches cog.yaml and the registry has every layer;
- incomplete: it matches, but the registry lacks a layer (or did not answer for it);
- stale: cog.yaml's target or sources (URI, include, exclude) changed since the import;
- pending: never imported;
- orphaned: in weights.lock, no longer in cog.yaml.

Nothing is read from the sources: `cog weights import` is what tells whether their files changed.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from cog.project.errors import warn
from cog.project.weights import ProjectWeights
from derivations.config import Weight
from derivations.weights_lock import LOCK_NAME, LockEntry, WeightsLock, WeightsLockError
from store.errors import CogError

# HEAD requests at once, as Cog's statusCheckConcurrency.
_CHECKS = 8


@dataclass
class LayerStatus:
    digest: str
    size: int
    status: str  # ready or missing


@dataclass
class WeightStatus:
    name: str
    target: str
    status: str
    entry: LockEntry | None  # None while pending
    layers: list[LayerStatus] = field(default_factory=list)


def weights_status(weights: ProjectWeights) -> list[WeightStatus]:
    declared = weights.declared()
    repo = weights.repository()
    lock = _lock(weights)
    results = []
    for weight in declared:
        name = weight.name or ""
        entry = lock.find(name)
        status = "pending" if entry is None else "stale" if _stale(weight, entry) else ""
        results.append(WeightStatus(name, weight.target or "", status, entry))
    names = {w.name for w in declared}
    for entry in lock.weights:
        if entry.name not in names:
            results.append(WeightStatus(entry.name, entry.target, "orphaned", entry))
    to_check = [r for r in results if r.status == "" and r.entry is not None]
    if to_check:
        registry = weights.registry()

        def present(digest: str) -> bool:
            try:
                return registry.blob_exists(repo.repository, digest)
            except CogError:  # as Cog: a layer the registry does not answer for is missing
                return False

        with ThreadPoolExecutor(_CHECKS) as pool:
            for result in to_check:
                assert result.entry is not None
                layers = result.entry.layers
                found = list(pool.map(present, [layer.digest for layer in layers]))
                result.layers = [
                    LayerStatus(layer.digest, layer.size, "ready" if ok else "missing")
                    for layer, ok in zip(layers, found, strict=True)
                ]
                result.status = "ready" if all(found) else "incomplete"
    return results


def _lock(weights: ProjectWeights) -> WeightsLock:
    """weights.lock, or none: a missing one is a project not imported yet, and a broken one
    is said and read as none, as Cog does."""
    try:
        return weights.lock(required=False)
    except WeightsLockError as e:
        warn(f"Failed to load {LOCK_NAME}: {e}")
        return WeightsLock()


def _stale(weight: Weight, entry: LockEntry) -> bool:
    """Whether cog.yaml asks for other than what weights.lock records (globs compared as
    sets, their order in cog.yaml being no part of what is asked)."""
    sources = () if isinstance(weight.source, str) else weight.source
    declared = [
        (s.uri, sorted(p.strip() for p in s.include), sorted(p.strip() for p in s.exclude))
        for s in sources
    ]
    locked = [(s.uri, list(s.include), list(s.exclude)) for s in entry.sources]
    return weight.target != entry.target or declared != locked

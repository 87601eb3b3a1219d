"""Pushing a project: its image built and sent to a registry (layers a binary cache on that
registry holds are mounted, never uploaded), or, in Cog's model mode, a bundle: the image and
the weights `cog weights import` pushed, tied by an OCI index at the model's tag."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cog.project.build import build_image
from cog.project.errors import UsageError
from cog.project.options import BuildOptions
from cog.project.weights_repository import model_reference
from derivations.config import CogConfig, load_config
from derivations.weights_artifact import (
    ARTIFACT_TYPE,
    NAME_ANNOTATION,
    SET_DIGEST_ANNOTATION,
    SIZE_ANNOTATION,
)
from derivations.weights_lock import LOCK_NAME, LockEntry, load_lock
from store.cache import OciCache, Substituter, cached_layout
from store.errors import StoreError
from store.local import Store
from store.oci import INDEX, MANIFEST, Layout, digest_of
from store.paths import StorePath
from store.push import KnownBlobs, PushResult, push
from store.reference import Reference
from store.registry import Registry


def push_project(
    store: Store, project: Path, image: str | None, options: BuildOptions, uploads: int
) -> str:
    """`cog push`: the project's image built and pushed to `image` (default: cog.yaml's
    image), or in Cog's model mode (a model reference from cog.yaml or COG_MODEL*) pushed
    as a bundle with its weights; returns what was pushed, as REPOSITORY@DIGEST."""
    # Without cog.yaml, an image named here is pushed as far as the registry's answer (the
    # build then says there is no cog.yaml); a model ref comes from cog.yaml or COG_MODEL*.
    config = load_config(project) if (project / "cog.yaml").is_file() or not image else None
    model = model_reference(config) if config is not None else None
    if config is not None and model is not None:  # Cog's model mode: a bundle
        if image:
            raise UsageError(
                "positional image argument not supported with 'model' config",
                hint="use COG_MODEL to override the full reference, COG_MODEL_TAG just the tag",
            )
        if config.image:
            raise UsageError(
                "'image' in cog.yaml cannot be combined with COG_MODEL* env vars",
                hint="remove 'image' from cog.yaml (use 'model' instead), or unset COG_MODEL, "
                "COG_MODEL_REGISTRY, COG_MODEL_REPO, COG_MODEL_TAG",
            )
        return _push_bundle(store, project, config, model, options, uploads)
    target = image or (config.image if config is not None else None)
    if not target:
        raise UsageError(
            "there is no image name to push to",
            hint="run `cog push HOST/NAME[:TAG]`, or set image: in cog.yaml",
        )
    ref = Reference.parse(target)
    if ref.digest:
        raise UsageError(f"cannot push to a digest ({target})", hint="push to a tag instead")
    registry = Registry(ref.host, ref.insecure)
    registry.ping()  # a wrong host or missing credentials fail now, not after the build
    print(f"pushing {ref.with_tag(ref.tag or 'latest')}", file=sys.stderr)
    result = _push_image(store, project, options, uploads, ref, registry)
    return f"{ref.with_tag(None)}@{result.digest}"


def _push_image(
    store: Store,
    project: Path,
    options: BuildOptions,
    uploads: int,
    ref: Reference,
    registry: Registry,
) -> PushResult:
    """Builds the project's image and pushes it to `ref`, layers a cache holds mounted."""
    image = build_image(store, project, options, fetch=not options.caches.any)
    path, caches = image.path, image.caches
    known = KnownBlobs(store.meta / "registries", ref.host)
    # Layers a binary cache on this registry holds are mounted from it, never uploaded.
    mount_from = next(
        (c.repository for c in caches.every if isinstance(c, OciCache) and c.ref.host == ref.host),
        None,
    )
    send = functools.partial(
        push,
        ref=ref,
        known=known,
        jobs=uploads,
        say=lambda line: print(line, file=sys.stderr),
        registry=registry,
        mount_from=mount_from,
    )
    result = None
    if not store.is_valid(path) and caches.substituter is not None:
        result = _push_from_cache(store, caches.substituter, path, send)
    if result is None:
        if not store.is_valid(path):  # the cache could not serve it after all: fetch it
            path = build_image(store, project, options).path
        result = send(Layout.open(store.real_path(path)))
    print(
        f"{len(result.uploaded)} blobs uploaded ({result.bytes_uploaded / 2**20:.1f} MiB), "
        f"{len(result.mounted)} mounted, {len(result.present)} already there",
        file=sys.stderr,
    )
    return result


def _push_bundle(
    store: Store,
    project: Path,
    config: CogConfig,
    model: Reference,
    options: BuildOptions,
    uploads: int,
) -> str:
    """Cog's model mode: the image at `cog-image.TAG` and the weights `cog weights import`
    pushed, tied by an OCI index at the model's tag (`model` with its weights)."""
    if model.digest or not model.tag:
        raise UsageError(f"cannot push to a digest ({model})", hint="push to a tag instead")
    registry = Registry(model.host, model.insecure)
    registry.ping()
    repository = model.with_tag(None)
    weights = []  # checked before the build: a missing weight fails in seconds
    if config.weights:
        for entry in load_lock(project / LOCK_NAME).weights:
            found = registry.find_manifest(model.repository, entry.digest)
            if found is None or digest_of(found) != entry.digest:
                raise UsageError(
                    f"weight {entry.name!r} is not in the registry ({repository}@{entry.digest})",
                    hint="run 'cog weights import' to push the weights first",
                )
            weights.append((entry, len(found)))
    print(f"\nPushing to {model}...", file=sys.stderr)
    image = _push_image(
        store, project, options, uploads, model.with_tag(f"cog-image.{model.tag}"), registry
    )
    index = bundle_index(image, weights)
    digest = registry.put_manifest(model.repository, model.tag, index, INDEX)
    rows = [("image", "", image.digest), *(("weight", e.name, e.digest) for e, _ in weights)]
    width = max((len(e.name) for e, _ in weights), default=0)
    print(f"\n  {'model':<6}  {repository}@{digest}", file=sys.stderr)
    for i, (kind, name, child) in enumerate(rows):
        branch = "└─" if i == len(rows) - 1 else "├─"
        named = f"{name:<{width}}  " if kind == "weight" else ""
        print(f"  {branch} {kind:<6}  {named}{repository}@{child}", file=sys.stderr)
    return f"{repository}@{digest}"


def bundle_index(image: PushResult, weights: list[tuple[LockEntry, int]]) -> bytes:
    """The OCI index of a model: its image (linux/amd64), then each weight manifest as an
    artifact (platform unknown/unknown) with its name, set digest and size annotated."""
    entries: list[dict[str, Any]] = [
        {
            "mediaType": image.media_type,
            "size": image.size,
            "digest": image.digest,
            "platform": {"architecture": "amd64", "os": "linux"},
        }
    ]
    for entry, size in weights:
        annotations = {NAME_ANNOTATION: entry.name, SET_DIGEST_ANNOTATION: entry.set_digest}
        if entry.size > 0:
            annotations[SIZE_ANNOTATION] = str(entry.size)
        entries.append(
            {
                "mediaType": MANIFEST,
                "size": size,
                "digest": entry.digest,
                "annotations": annotations,
                "platform": {"architecture": "unknown", "os": "unknown"},
                "artifactType": ARTIFACT_TYPE,
            }
        )
    index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": entries}
    return json.dumps(index, separators=(",", ":")).encode()


def _push_from_cache(
    store: Store,
    substituter: Substituter,
    path: StorePath,
    send: Callable[[Layout], PushResult],
) -> PushResult | None:
    """Pushes an image that stays in a binary cache: its manifest and config come from the
    cache, its layers are mounted from the cache's repository. None (and one line) when a
    layer cannot be had that way; the caller then fetches the image and pushes it."""
    with store.temp_dir("cached-image-") as where:
        try:
            layout = cached_layout(substituter, path, where)
            return send(layout)
        except (StoreError, OSError) as e:
            print(
                f"the cached image cannot be pushed by mounting ({e}); fetching it", file=sys.stderr
            )
            return None

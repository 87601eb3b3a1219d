"""The model's reference in Cog's model mode, and the repository its weights are pushed to.

`cog push` names the model's image and index with the same reference (`model_reference`)."""

from __future__ import annotations

import os
import re
import time

from cog.project.weights_sources import WeightsError
from derivations.config import CogConfig
from store.errors import RegistryError
from store.reference import Reference

TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


def weight_repository(config: CogConfig) -> Reference:
    """`registry/repo` for the weights: the model's reference without its tag."""
    if config.image and not config.model:
        raise WeightsError(
            "weight commands require 'model' in cog.yaml, not 'image'",
            hint="rename 'image' to 'model' in cog.yaml",
        )
    ref = model_reference(config)
    if ref is None:
        raise WeightsError(
            "weight commands require a model ref",
            hint="set 'model' in cog.yaml, or export COG_MODEL / COG_MODEL_REPO",
        )
    return Reference(ref.host, ref.repository)


def model_reference(config: CogConfig) -> Reference | None:
    """The model's `registry/repo:tag`, as Cog resolves it: COG_MODEL whole (a timestamp tag
    where it names none); else cog.yaml's `model:` with COG_MODEL_REGISTRY (host),
    COG_MODEL_REPO (path) and COG_MODEL_TAG (else a timestamp) over it. None where no
    repository is named (an image-mode project)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    full = os.environ.get("COG_MODEL", "")
    if full:
        try:
            ref = Reference.parse(full)
        except RegistryError as e:
            raise WeightsError(f"COG_MODEL: {e}", hint=e.hint) from None
        return ref if ref.tag or ref.digest else ref.with_tag(stamp)
    registry = os.environ.get("COG_MODEL_REGISTRY", "")
    if any(c in registry for c in "/@"):
        raise WeightsError(
            f"COG_MODEL_REGISTRY {registry!r} must be a bare host (no path, tag or digest)"
        )
    repo = os.environ.get("COG_MODEL_REPO", "")
    if any(c in repo for c in ":@"):
        raise WeightsError(f"COG_MODEL_REPO {repo!r} must be a bare repository path")
    tag = os.environ.get("COG_MODEL_TAG", "")
    if tag.startswith("cog-"):
        raise WeightsError(f"COG_MODEL_TAG {tag!r}: 'cog-' is a reserved prefix; choose another")
    if tag and not TAG.match(tag):
        raise WeightsError(f"COG_MODEL_TAG {tag!r} is not a valid tag")
    base_host, base_repo = "", ""
    if config.model:
        first, slash, rest = config.model.partition("/")
        if slash and ("." in first or ":" in first or first == "localhost"):
            base_host, base_repo = first, rest
        else:
            base_repo = config.model
    host = registry or base_host or "r8.im"
    path = repo or base_repo
    if not path:
        return None
    try:
        return Reference.parse(f"{host}/{path}:{tag or stamp}")
    except RegistryError:
        raise WeightsError(
            f"{host}/{path} is not a valid model repository",
            hint="check 'model' in cog.yaml and COG_MODEL_REGISTRY / COG_MODEL_REPO",
        ) from None

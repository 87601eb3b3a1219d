"""Building a project: every layer of its plan realised (`build`), then its image
(`build_image`), kept alive by GC roots under `.cog/` and published to the caches."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from builders.image import image_derivation, layer_blobs, layers_env
from builders.progress import default_reporter
from builders.realise import realise
from builders.run_step import check_secrets, secrets_to_build, with_secrets
from cog.project.build_schema import schema_label
from cog.project.caches import Caches
from cog.project.errors import UsageError
from cog.project.lock import Plan, plan_build
from cog.project.options import BuildOptions
from derivations import lock as locking
from derivations.config import CogConfig, load_config
from derivations.model import Derivation
from store.cache import PathInfos
from store.local import Store
from store.oci import Layout
from store.paths import StorePath


@dataclass(frozen=True)
class Image:
    """A built image: the plan it came from, its store path (not valid here when it stayed
    in a binary cache), and the caches the build used."""

    plan: Plan
    path: StorePath
    caches: Caches


def build(
    store: Store,
    project: Path,
    options: BuildOptions,
    caches: Caches | None = None,
    fetch: bool = True,
) -> Plan:
    """Realises every layer of the project's plan; with `fetch` false, layers a binary cache
    holds stay there."""
    check_project_state(project)
    plan = plan_build(store, project, options)
    check_secrets(secrets_to_build(store, plan.layers.steps), plan.secrets)
    realise(
        store,
        plan.layers.derivations,
        fetch,
        jobs=options.jobs,
        reporter=default_reporter(),
        builders=with_secrets(plan.secrets),
        substituter=(caches or Caches.open(options.caches)).substituter,
    )
    roots = project / ".cog" / "roots"
    roots.mkdir(parents=True, exist_ok=True)
    for name, path in plan.layers.paths().items():
        if store.is_valid(path):  # (a path left in a cache has nothing here to keep alive)
            store.add_indirect_root(roots / name.replace(":", "-").replace("/", "-"), path)
    return plan


def build_image(store: Store, project: Path, options: BuildOptions, fetch: bool = True) -> Image:
    """Builds every layer and the image; keeps a GC root to it at .cog/image, and publishes
    its closure to the caches. With `fetch` false, an image a cache holds stays there (the
    path is then not valid here), and so does whatever it alone needs. The image is a second
    realisation: how its layers are grouped depends on the sizes of the built paths."""
    config = load_config(project)  # cheap, so what cannot be an image fails before building
    if not config.predict and not config.train:
        raise UsageError(
            "cog.yaml says no predictor: there is no run: (or predict:) to build an image of",
            hint="add run: predict.py:Predictor (cog exec needs none)",
        )
    schema_label(project, config, _cog_version())  # as Cog: a refused signature builds nothing
    caches = Caches.open(options.caches)
    fetch = fetch or bool(config.build.gpu)  # the image's GPU settings read the environment
    plan = build(store, project, options, caches, fetch)
    infos = PathInfos(store, caches.substituter)
    for name, path in plan.layers.paths().items():
        info = infos.info(path)
        print(f"{name:<16} {path}  {info.nar_size / 2**20:8.1f} MiB")
    image = image_of(store, plan, options, infos)
    [outputs] = realise(
        store,
        [image],
        fetch,
        jobs=options.jobs,
        reporter=default_reporter(),
        substituter=caches.substituter,
    )
    path = outputs["out"]
    print(f"image            {path}")
    if store.is_valid(path):
        store.add_indirect_root(project / ".cog" / "image", path)
        # The image's closure, and the root layers it holds only as compressed blobs.
        built = [p for p in plan.layers.paths().values() if store.is_valid(p)]
        finder = layer_blobs(store, plan.layers.roots)
        caches.publish(store, [*built, path], jobs=options.jobs or 4, find_blob=finder)
        print(f"digest           {Layout.open(store.real_path(path)).manifest_digest}")
    return Image(plan, path, caches)


def image_of(store: Store, plan: Plan, options: BuildOptions, infos: PathInfos) -> Derivation:
    """The image derivation, with Cog's labels; `infos` plans its layers, so an image of paths
    that stay in a binary cache can be planned here."""
    config, lock = plan.config, plan.lock
    recorded = config.model_dump(mode="json", exclude_defaults=True)
    if lock.cuda is not None:  # as Cog's label: the config completed with the CUDA chosen
        recorded["build"] |= {"cuda": lock.cuda.version, "cudnn": lock.cuda.cudnn}
    lock_bytes = (plan.project / locking.LOCK_FILE).read_bytes()
    schema = schema_label(plan.project, config, _cog_version())
    labels = {
        "run.cog.version": _cog_version(),
        "run.cog.config": json.dumps(recorded, sort_keys=True),
        "run.cog.pip_freeze": "".join(  # as `pip freeze` lists them: never pip itself
            f"{p.name}=={p.version}\n" for p in lock.python_packages if p.name != "pip"
        ),
        "run.cog.lock": "sha256:" + hashlib.sha256(lock_bytes).hexdigest(),
        "org.opencontainers.image.created": "1970-01-01T00:00:00Z",
    }
    if schema is not None:  # the builder still imports the model, but keeps this label
        labels["run.cog.openapi_schema"] = schema
    env = dict(config.env) | runtime_env(config)
    arch = lock.platform.arch
    env |= layers_env(store, config, plan.layers, arch)
    return image_derivation(
        infos,
        "image",
        plan.layers,
        labels,
        env,
        arch,
        config.predict,
        options.max_layers,
        options.compression,
    )


def runtime_env(config: CogConfig) -> dict[str, str]:
    """What Cog's Dockerfile passes the runtime of cog.yaml (cogEnvVars), so that it need not
    read cog.yaml: the predictor, the trainer and concurrency.max."""
    env = {}
    if config.predict:
        env["COG_PREDICT_TYPE_STUB"] = config.predict
    if config.train:
        env["COG_TRAIN_TYPE_STUB"] = config.train
    return env | concurrency_env(config)


def concurrency_env(config: CogConfig) -> dict[str, str]:
    """COG_MAX_CONCURRENCY, when cog.yaml sets concurrency.max."""
    if config.concurrency is None or config.concurrency.max <= 0:
        return {}
    return {"COG_MAX_CONCURRENCY": str(config.concurrency.max)}


def _cog_version() -> str:
    import cog

    return cog.__version__


def check_project_state(project: Path) -> None:
    """`.cog` holds links that cog replaces; through a link they would land somewhere else."""
    for state in (project / ".cog", project / ".cog" / "roots"):
        if state.is_symlink():
            raise UsageError(
                f"{state} is a link (to {os.readlink(state)}); cog will not write through it",
                hint=f"remove the link ({state}), cog recreates it as a directory",
            )

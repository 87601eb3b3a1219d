"""The image: an OCI image layout in the store, assembled from store paths without Docker.

Layers, in order: the root layers at `/` (base, Python, system packages, build.run steps),
then one layer per store path of the environments' closure at `/cog/store/…` (sorted by path;
small paths are grouped only beyond the layer budget), then the code at `/src`, then each
weight at its place under `/src`, uncompressed.

Each compressed layer is a derivation of its own (`oci-layer`): its blob is made once per store
path and compression, and shared by every image that has that path, so a code edit rebuilds
only the code layer, the config and the manifest. Blobs are compressed deterministically (gzip:
no name, mtime 0, one level, this zlib; or zstd on request: one thread, one level, this
libzstd), and a store path's layer is its canonical layer form, whose SHA-256 (the diff_id)
the store already knows. The image's layout lists the layer blobs (and the weight files) as
described parts (store.oci) instead of copying them. The config follows Cog's contract
(`WorkingDir /src`, port 5000, a `CMD` that starts the runtime, `run.cog.*` labels) with
`created` fixed.

/src is a real directory of the image: what the build.run steps wrote there (their root
layers), with the code layer over it, as Cog copies the project in after its steps ran. The
build reads the predictor's signature from the same /src, writable (an overlay over the root
view's /src and the code, thrown away after), so a predictor that writes beside its code when
imported builds as under Cog.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from builders.base import Args, BuildContext, derive
from builders.ca_cert import ENV as CA_CERT_ENV
from builders.errors import BuildError
from builders.launch import model_environment, server_command
from builders.layers import Layers
from builders.rootview import view_derivation
from builders.sandbox.jail import build_env, build_jail, read_result, run_command, run_logged
from builders.sandbox.overlay import writable_dir
from builders.wheel import site_packages
from derivations.config import CogConfig
from derivations.hashing import output_path
from derivations.model import Derivation, DrvInput, SrcInput
from store.archive import hash_tree, read_chunks, tree_parts, trees_stream
from store.cache import PathInfos
from store.compress import COMPRESSORS, LAYER_GZIP, LAYER_TAR, LAYER_ZSTD, CompressedBlob
from store.local import Store
from store.oci import CONFIG, EXTERNAL, MANIFEST, digest_of, write_index
from store.paths import StorePath

MAX_LAYERS = 100
ALONE = 16 << 20  # a store path whose layer is this large is never grouped
EPOCH = "1970-01-01T00:00:00Z"


def nvidia_env(store: Store, built: Layers, python: str, arch: str) -> dict[str, str]:
    """What Cog's GPU images set (its Dockerfile's preamble and the nvidia/cuda base image's
    NVIDIA_VISIBLE_DEVICES), with the library directories of the NVIDIA wheels in the model's
    environment first: libraries that load CUDA by name (onnxruntime-gpu, cupy, TensorFlow)
    find them there, as torch finds them by its own paths. The driver comes from the host, at
    /usr/local/nvidia/lib64."""
    model_env = output_path(built.model_env)
    site = site_packages(python)
    dirs = set()
    for path in store.closure([model_env]):
        for lib in (store.real_path(path) / site / "nvidia").glob("*/lib"):
            dirs.add(f"{model_env}/{site}/nvidia/{lib.parent.name}/lib")
    triplet = {"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}.get(arch, arch)
    system = f"/usr/lib/{triplet}:/usr/local/nvidia/lib64:/usr/local/nvidia/bin"
    return {
        "LD_LIBRARY_PATH": ":".join([*sorted(dirs), system]),
        "NVIDIA_DRIVER_CAPABILITIES": "all",
        "NVIDIA_VISIBLE_DEVICES": "all",
    }


def layers_env(store: Store, config: CogConfig, built: Layers, arch: str) -> dict[str, str]:
    """What the project's layers ask of its environment, in the image and in a native run:
    NVIDIA's for a GPU image, the CA bundle's names for COG_CA_CERT's layer."""
    gpu = config.build.gpu
    env = nvidia_env(store, built, config.build.python_version, arch) if gpu else {}
    return env | (CA_CERT_ENV if built.ca_cert is not None else {})


def layer_derivation(
    trees: Sequence[tuple[DrvInput | SrcInput, str]], compression: str, expect_store_form: bool
) -> Derivation:
    """One compressed layer blob: the trees at their prefixes. With `expect_store_form` (one
    store path at its layer prefix), the diff_id must be the SHA-256 the store recorded."""
    return derive(
        LayerBuilder,
        "oci-layer",
        inputs={f"tree-{i:03d}": tree for i, (tree, _) in enumerate(trees)},
        args={
            "prefixes": [prefix for _, prefix in trees],
            "compression": compression,
            "expect_store_form": expect_store_form,
        },
    )


def layer_blobs(store: Store, roots: Sequence[Derivation]) -> Callable[[StorePath], Path | None]:
    """For publishing to a binary cache (store.cache.BlobFinder): the gzip blob already made
    for a path, when there is one here: its own image layer (the bytes a cache holds for
    it), or for a root layer (base, Python, system, build.run steps) the image's layer of
    that tree at `/`, so the cache does not hold the tree twice."""
    root_layers = {
        output_path(d): output_path(layer_derivation([(d.dep(), "")], "gzip", False)) for d in roots
    }

    def find(path: StorePath) -> Path | None:
        layer = root_layers.get(path) or output_path(
            layer_derivation([(SrcInput(path=str(path)), path.layer_prefix)], "gzip", True)
        )
        return store.real_path(layer) / "blob" if store.is_valid(layer) else None

    return find


def image_derivation(
    store: Store | PathInfos,
    name: str,
    built: Layers,
    labels: dict[str, str],
    env: dict[str, str],
    arch: str,
    predictor: str | None = None,
    max_layers: int = MAX_LAYERS,
    compression: str = "gzip",
    static_schema: bool = False,
) -> Derivation:
    """The image of built (realised) layers; the closure of its environments is read from
    `store` to plan the layers. `static_schema`: the schema label as Cog's static generator
    writes it (runtime.openapi.static_rules)."""
    roots = list(built.roots)  # base, Python, system packages, then the build.run steps
    root_paths = {output_path(d) for d in roots}
    wanted = [output_path(built.model_env), output_path(built.runtime_env)]
    if built.python is not None:
        wanted.append(output_path(built.python))
    closure = [p for p in store.closure(wanted) if p not in root_paths]
    weights = sorted(built.weights.items())
    layers = [layer_derivation([(d.dep(), "")], compression, False) for d in roots]
    budget = max_layers - len(roots) - 1 - len(weights)
    for group in plan_layers({p: store.info(p).tar_size for p in closure}, budget):
        trees = [(SrcInput(path=str(p)), p.layer_prefix) for p in group]
        layers.append(layer_derivation(trees, compression, len(group) == 1))
    layers.append(layer_derivation([(SrcInput(path=str(built.code)), "src")], compression, False))
    for rel, path in weights:  # uncompressed, and described rather than copied
        layers.append(layer_derivation([(SrcInput(path=str(path)), f"src/{rel}")], "none", False))
    inputs: dict[str, DrvInput | SrcInput] = {
        f"layer-{i:03d}": layer.dep() for i, layer in enumerate(layers)
    }
    inputs |= {
        "root-view": view_derivation("image-root", roots).dep(),
        "model-env": built.model_env.dep(),
        "runtime-env": built.runtime_env.dep(),
        "code": SrcInput(path=str(built.code)),
    }
    model_env, runtime_env = output_path(built.model_env), output_path(built.runtime_env)
    config_env = model_environment(model_env, env)
    return derive(
        ImageBuilder,
        name,
        inputs=inputs,
        args={
            "arch": arch,
            "env": [f"{k}={v}" for k, v in sorted(config_env.items())],
            "cmd": server_command(model_env, runtime_env),
            "labels": dict(sorted(labels.items())),
            "predictor": predictor,
            **({"static_schema": True} if static_schema else {}),
        },
    )


class LayerArgs(Args):
    prefixes: tuple[str, ...]  # where each tree-NNN input goes in the layer
    compression: Literal["gzip", "zstd", "none"]
    expect_store_form: bool  # one store path at its own prefix: diff_id is the store's hash


class ImageArgs(Args):
    arch: str
    env: tuple[str, ...]
    cmd: tuple[str, ...]
    labels: dict[str, str]
    predictor: str | None = None  # the signature is read from it for the schema label
    static_schema: bool = False


class LayerBuilder:
    kind = "oci-layer"
    version = f"1-{COMPRESSORS}"  # the compressors are part of the bytes
    runs_foreign_code = False

    def build(self, ctx: BuildContext) -> None:
        args = ctx.args(LayerArgs)
        roles = sorted(r for r in ctx.inputs if r.startswith("tree-"))
        trees = [(ctx.inputs[r], prefix) for r, prefix in zip(roles, args.prefixes, strict=True)]
        ctx.out.mkdir()
        store_form = args.expect_store_form and ctx.store.info(ctx.input_paths[roles[0]]).tar_sha256
        if not store_form:  # (a path in its store form is checked by its diff_id, below)
            _check_registered(ctx, roles)
        compression = args.compression
        if compression == "none":  # a weight: its parts, not a copy of its bytes
            [(tree, prefix)] = trees
            digest, size, parts = _described_blob(tree, prefix, ctx.store.root)
            (ctx.out / "parts.json").write_text(json.dumps(parts, indent=1) + "\n")
            diff_id = digest
        else:
            total = sum(ctx.store.info(ctx.input_paths[r]).tar_size for r in roles)
            done = 0
            with CompressedBlob(ctx.out / "blob", compression) as blob:
                for chunk in trees_stream(trees):
                    blob.feed(chunk)
                    done += len(chunk)
                    ctx.progress(min(done, total), total)
                digest, size, diff_id = blob.finish()
        if store_form and diff_id != f"sha256:{store_form}":
            # The path's own layer form: its diff_id is the store's layer hash.
            raise BuildError(
                f"{ctx.input_paths[roles[0]]} changed after it was registered (its layer's "
                f"diff_id is {diff_id}, the store registered sha256:{store_form}): it is not "
                "layered",
                hint="run `cog store verify --repair`, then build again",
            )
        media_type = {"gzip": LAYER_GZIP, "zstd": LAYER_ZSTD, "none": LAYER_TAR}[compression]
        descriptor = {"mediaType": media_type, "digest": digest, "size": size, "diff_id": diff_id}
        (ctx.out / "descriptor.json").write_text(json.dumps(descriptor, sort_keys=True) + "\n")


def _check_registered(ctx: BuildContext, roles: Sequence[str]) -> None:
    """Each input tree still holds the bytes the store registered for it: what a layer ships
    is never other bytes (a path changed on disk after it was registered is refused)."""
    for role in roles:
        path = ctx.input_paths[role]
        found = hash_tree(ctx.inputs[role], layer_hash=False).nar_hash
        if found != ctx.store.info(path).nar_hash:
            raise BuildError(
                f"{path} changed after it was registered: it is not layered",
                hint="run `cog store verify --repair`, then build again",
            )


def _described_blob(tree: Path, prefix: str, store_dir: Path) -> tuple[str, int, list[Any]]:
    """An uncompressed layer described as parts (tar metadata inline, file contents by their
    store location) rather than written: a weight's bytes stay in its own store path only."""
    digest, size, parts = hashlib.sha256(), 0, list[dict[str, Any]]()
    for part in tree_parts([(tree, prefix)]):
        if isinstance(part, bytes):
            digest.update(part)
            parts.append({"bytes": base64.b64encode(part).decode()})
            size += len(part)
        else:
            for chunk in read_chunks(part, part.size):
                digest.update(chunk)
            parts.append({"file": os.path.relpath(part.path, store_dir), "size": part.size})
            size += part.size
    return f"sha256:{digest.hexdigest()}", size, parts


def plan_layers(sizes: dict[StorePath, int], budget: int) -> list[list[StorePath]]:
    """The closure's store paths as layers: one each while they fit in `budget`; beyond it, the
    large ones alone and the small ones in hash buckets. A path's bucket depends only on its
    own hash and the bucket count, so one new package changes one grouped layer, not all."""
    paths = sorted(sizes)
    if len(paths) <= budget:
        return [[p] for p in paths]
    alone = [p for p in paths if sizes[p] >= ALONE]
    buckets = budget - len(alone)
    if buckets < 1:
        raise BuildError(
            f"the image needs {len(alone)} layers for its large store paths alone, more than "
            f"its budget of {budget} allows",
            hint="raise --max-layers",
        )
    groups: dict[int, list[StorePath]] = {}
    for p in paths:
        if sizes[p] < ALONE:
            bucket = int(hashlib.sha256(p.hash.encode()).hexdigest()[:8], 16) % buckets
            groups.setdefault(bucket, []).append(p)
    return sorted([[p] for p in alone] + list(groups.values()))


def _json_blob(blobs: Path, document: dict[str, Any]) -> tuple[str, int]:
    data = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    digest = digest_of(data)
    (blobs / digest.split(":")[1]).write_bytes(data)
    return digest, len(data)


# The module reduced to what its signature reads first (no torch to import on every edit);
# the module itself when it cannot be reduced, or when the reduced one fails in any way.
_DESCRIBE = (
    "import json, sys\n"
    "from pathlib import Path\n"
    "from cog.server import signature as s\n"
    "try:\n"
    "    target = s.load_reduced(sys.argv[1], Path(sys.argv[2]))\n"
    "    found = None if target is None else s.describe(target, s.entry_point(target, 'predict'))\n"
    "except Exception:\n"
    "    found = None\n"
    "try:\n"
    "    if found is None:\n"
    "        target = s.load(sys.argv[1], Path(sys.argv[2]))\n"
    "        found = s.describe(target, s.entry_point(target, 'predict'))\n"
    "except s.PredictorError as e:\n"
    "    Path('/build/refused.txt').write_text(str(e))\n"
    "    sys.exit(3)\n"
    "Path('/build/signature.json').write_text(json.dumps(found))\n"
)
_RESULTS = ("/build/signature.json", "/build/openapi.json")


class ImageBuilder:
    kind = "oci-image"
    version = "4"
    runs_foreign_code = True  # the model's code is imported to describe its signature

    def _openapi(self, ctx: BuildContext, args: ImageArgs) -> str | None:
        """The `run.cog.openapi_schema` label: the predictor's signature, as the server would
        serve it, read by importing the model in the sandbox (as `cog build` does)."""
        ref = args.predictor
        if not ref:
            return None
        # The model's code runs here: it sees no output, and what it leaves is read as a file.
        try:
            self._describe(ctx, ref)
        except BuildError:
            refused = ctx.scratch / "build" / "refused.txt"
            if not refused.is_file():  # the model's code failed otherwise: the log says how
                raise
            reason = read_result(ctx, "refused.txt").decode(errors="replace")
            raise BuildError(
                f"the predictor's signature is refused: {reason}",
                hint=f"fix {ref} and build again",
            ) from None
        # The image's own server turns that into the document it will serve (`-I`: nothing the
        # model left in /build is on its import path).
        runtime = f"{ctx.input_paths['runtime-env']}/bin/python"
        static = ["--static"] if args.static_schema else []
        argv = [runtime, "-I", "-m", "runtime.openapi", *_RESULTS, *static]
        run_command(ctx, argv, rootfs=ctx.inputs["root-view"], output=False)
        try:
            document = json.loads(read_result(ctx, "openapi.json"))
        except ValueError:
            raise BuildError("the predictor's signature could not be read back") from None
        return json.dumps(document, sort_keys=True, separators=(",", ":"))

    def _describe(self, ctx: BuildContext, ref: str) -> None:
        """Runs _DESCRIBE on the predictor at /src, working there as the image's server does:
        /src holds the root view's /src (what the steps wrote) with the code over it, writable
        in the build's scratch (builders.sandbox.overlay.writable_dir), never in the store.
        Without the sandbox the host imports it from the code's store path."""
        python = f"{ctx.input_paths['model-env']}/bin/python"
        if not ctx.sandbox:
            run_command(
                ctx, [python, "-c", _DESCRIBE, ref, str(ctx.input_paths["code"])], None, False
            )
            return
        lowers = [ctx.inputs["root-view"] / "src", ctx.inputs["code"]]
        prefix, mounts = writable_dir(lowers, "/src", ctx.scratch / "src")
        env = build_env(ctx, str(ctx.out_path))
        jail = build_jail(ctx, env, ctx.inputs["root-view"], output=False)
        jail = dataclasses.replace(
            jail, mounts=[*jail.mounts, *mounts], chdir="/src", prefix=prefix
        )
        code = run_logged(ctx, jail.argv([python, "-c", _DESCRIBE, ref, "/src"]), env)
        if code != 0:
            raise BuildError(f"the builder of {ctx.drv.name} exited with status {code}")

    def build(self, ctx: BuildContext) -> None:
        out = ctx.out
        args = ctx.args(ImageArgs)
        schema = self._openapi(ctx, args)
        out.mkdir()  # made after the model's code ran, and never shown to it
        labels = dict(args.labels)
        if schema is not None:  # Cog's static one, when the project gave it, is kept
            labels.setdefault("run.cog.openapi_schema", schema)
        blobs = out / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        layers: list[dict[str, Any]] = []
        diff_ids: list[str] = []
        described: dict[str, list[Any]] = {}
        for role in sorted(r for r in ctx.inputs if r.startswith("layer-")):
            layer = ctx.inputs[role]
            descriptor = json.loads((layer / "descriptor.json").read_text())
            parts = layer / "parts.json"
            described[descriptor["digest"]] = (
                json.loads(parts.read_text())
                if parts.exists()
                else [{"file": f"{layer.name}/blob", "size": int(descriptor["size"])}]
            )
            layers.append({k: descriptor[k] for k in ("mediaType", "digest", "size")})
            diff_ids.append(descriptor["diff_id"])
        (out / EXTERNAL).write_text(json.dumps(described, sort_keys=True, indent=1) + "\n")
        config = {
            "architecture": args.arch,
            "os": "linux",
            "created": EPOCH,
            "config": {
                "Env": list(args.env),
                "Cmd": list(args.cmd),
                "WorkingDir": "/src",
                "ExposedPorts": {"5000/tcp": {}},
                "Labels": dict(sorted(labels.items())),
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": EPOCH, "created_by": "cog-hermetic"} for _ in layers],
        }
        config_digest, config_size = _json_blob(blobs, config)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"mediaType": CONFIG, "digest": config_digest, "size": config_size},
            "layers": layers,
        }
        manifest_digest, manifest_size = _json_blob(blobs, manifest)
        write_index(out, MANIFEST, manifest_digest, manifest_size)
        ctx.say(f"image {manifest_digest}: {len(layers)} layers")

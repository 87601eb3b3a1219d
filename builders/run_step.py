"""`build.run` steps as layer derivations.

Each command runs with `sh -c`, as root, in bubblewrap over the model's root layers (base,
Python, system packages, then the earlier steps) with its environment (model-env) in
/cog/store, as Cog runs its `RUN` lines after pip install. The root is writable through an
overlay mount whose lower layers are the store paths themselves, read-only to the kernel, so
a command can never write into the store (a view of hard links could be written through);
where overlay mounts are not available it is a private copy. What the command added or
changed under `/`, outside the mount points, becomes the step's output: a tree for `/`,
stacked after the system layer in images and native runs. A store layer has no whiteouts,
so deletions of lower files are ignored (the log says so).

The root holds apt, dpkg and the tools of Cog's images, and the model's Python has pip
(builders.root_site): what `apt-get install` or `pip install` installs lands in the step's
layer, where the model finds it. What those tools leave that differs from run to run or is
of no use in an image (apt's lists and caches, logs, dpkg's backups and locks, pip's cache,
bytecode stamped with a time) is not kept (`NOT_KEPT`), and the environment fixes what the
rest depends on (SOURCE_DATE_EPOCH, hash seeds), so the same packages give the same layer.

A step that needs the network is fixed-output: `cog lock` saw it fail offline and succeed
online, and pinned the SHA-256 of its output's canonical archive; it runs with the host's
network and its output must hash to that pin. Secrets (`mounts: [{type: secret}]`) are bound
read-only at their target for their step only. They are this builder's own configuration
(`RunStepBuilder(secrets)`), never part of a derivation, so a secret changes no hash.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from builders.base import Args, BuildContext, derive
from builders.build_secrets import Secrets, secret_file
from builders.ca_cert import trusted_by
from builders.errors import BuildError, SandboxUnavailable
from builders.launch import BASE_PATH
from builders.progress import SilentReporter
from builders.realise import Realiser, realise
from builders.registry import Builders
from builders.rootfs import relative_target
from builders.rootview import merge_view
from builders.sandbox.jail import Jail, run_logged, sandbox_works
from builders.sandbox.network import OwnNetwork, network_binds
from builders.sandbox.overlay import writable_root
from derivations.ca_cert import joined
from derivations.config import CogConfig, ConfigError, RunItem
from derivations.hashing import drv_path, output_path
from derivations.lock import Secret, Step, StepPin, step_input
from derivations.model import Derivation, DrvInput
from derivations.store_io import write_drv
from store.archive import is_store_reference, tree_sha256
from store.local import Store
from store.paths import STORE_DIR, StorePath

KIND = "run-step"
# What a command leaves at the sandbox's mount points is not part of its layer. /src is kept:
# as in Cog, whose steps run before the project is copied in, what a step writes there is in
# the image beside the code.
EXCLUDED = (
    *("proc", "dev", "sys", "tmp", "run", "cog", "build"),
    *("etc/hosts", "etc/resolv.conf", "etc/hostname"),
)
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# What apt, dpkg, pip and the tools leave that is not kept in a step's layer (fnmatch patterns
# of paths under /; a directory's whole tree): indexes, caches and logs as Cog's images drop
# them, backups and locks, and files that hold the time they were made.
NOT_KEPT = (
    *("var/cache/apt", "var/lib/apt/lists", "var/log", "var/cache/ldconfig"),
    *("var/lib/dpkg/*-old", "var/lib/dpkg/lock*", "var/lib/dpkg/triggers/Lock"),
    *("var/cache/debconf/*-old", "root/.cache/pip", "root/.wget-hsts"),
)


# --- what cog.yaml asks for ---------------------------------------------------------------------


def check_steps(config: CogConfig) -> None:
    """Cog's rules for `run:` items, checked before anything is locked."""
    for item in config.build.steps:
        if "\n" in item.command.strip():
            raise ConfigError(
                "cog.yaml: one of the commands in build.run contains a new line, which won't "
                f"work: {item.command.strip()!r}",
                hint="make each command its own list item, prefixed with '-'",
            )
        for mount in item.mounts:
            if not mount.target.startswith("/") or mount.id == "":
                raise ConfigError(
                    f"cog.yaml: build.run secret {mount.id!r} needs an id and an absolute "
                    f"target, not {mount.target!r}",
                    hint="e.g. mounts: [{type: secret, id: token, target: /run/secrets/token}]",
                )


def secret_ids(config: CogConfig) -> list[str]:
    return sorted({m.id for item in config.build.steps for m in item.mounts})


def check_secrets(needed: Iterable[str], secrets: Secrets) -> None:
    """Every secret a step to be run mounts must be given, said before anything is built."""
    missing = sorted(set(needed) - set(secrets))
    if missing:
        raise ConfigError(
            f"cog.yaml's build.run mounts the secret {missing[0]!r}, but no --secret "
            f"id={missing[0]},src=FILE was given",
            hint=f"pass --secret id={missing[0]},src=FILE",
        )


def secrets_to_build(store: Store, steps: Sequence[Derivation]) -> list[str]:
    """The secrets mounted by the steps not built yet (a built step needs none)."""
    return sorted(
        {m["id"] for s in steps if not store.is_valid(output_path(s)) for m in s.args["secrets"]}
    )


# --- derivations ---------------------------------------------------------------------------------


def step_env(model_env: Derivation, config: CogConfig) -> dict[str, str]:
    """The environment of Cog's image at `RUN` time, plus what keeps outputs reproducible."""
    return {
        **config.env,
        "PATH": f"{output_path(model_env)}/bin:{BASE_PATH}",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "DEBIAN_FRONTEND": "noninteractive",
        "SOURCE_DATE_EPOCH": "0",  # and so pip's and py3compile's bytecode is hash-based
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",  # an import's .pyc records the time it was made
        "PERL_HASH_SEED": "0",  # debconf's databases are written in Perl's hash order
        "PERL_PERTURB_KEYS": "0",
        "TZ": "UTC",
        "PIP_NO_CACHE_DIR": "1",
        "PIP_ROOT_USER_ACTION": "ignore",  # root is the sandbox's only user, as in Docker
    }


def step_derivation(
    index: int,
    item: RunItem,
    below: Sequence[Derivation],
    model_env: Derivation,
    env: Mapping[str, str],
    sha256: str | None = None,
    network: bool | None = None,
) -> Derivation:
    """Step `index` (from 1) over the layers `below` (lowest first); with `sha256`, the
    fixed-output step that runs with the network."""
    inputs: dict[str, DrvInput] = {f"layer-{i:02d}": d.dep() for i, d in enumerate(below)}
    inputs["model-env"] = model_env.dep()
    record = step_input(item)
    return derive(
        RunStepBuilder,
        f"run-{index}",
        inputs=inputs,
        args={
            "command": record.command,
            "secrets": [secret.model_dump() for secret in record.secrets or ()],
            "network": sha256 is not None if network is None else network,
        },
        env=dict(env),
        sha256=sha256 or None,  # an empty pin declares no hash
    )


def step_derivations(
    roots: Sequence[Derivation],
    model_env: Derivation,
    config: CogConfig,
    pins: Sequence[StepPin],
) -> list[Derivation]:
    """The steps stacked over `roots`, as cog.lock pins them."""
    below, steps = list(roots), []
    env = step_env(model_env, config)
    for index, item in enumerate(config.build.steps, 1):
        pin = pins[index - 1] if index <= len(pins) else None
        if pin is None or not _pins(pin, item):
            raise ConfigError(
                f"cog.lock does not pin build.run step {index} ({item.command.strip()})",
                hint="run `cog lock`",
            )
        step = step_derivation(index, item, below, model_env, env, pin.sha256)
        steps.append(step)
        below.append(step)
    return steps


def _pins(pin: Step, item: RunItem) -> bool:
    """Whether `pin` is for this step as cog.yaml now asks for it."""
    want = step_input(item)
    return (pin.command, pin.secrets) == (want.command, want.secrets)


# --- the builder ---------------------------------------------------------------------------------


class RunStepArgs(Args):
    command: str
    secrets: tuple[Secret, ...] = ()  # as cog.lock records them
    network: bool = False  # a fixed-output step: its result is pinned by sha256


class RunStepBuilder:
    kind = KIND
    version = "2"  # 2: what a step writes under /src is part of its layer
    runs_foreign_code = True

    def __init__(self, secrets: Secrets | None = None) -> None:
        self.secrets = dict(secrets or {})

    def build(self, ctx: BuildContext) -> None:
        args = ctx.args(RunStepArgs)
        command = args.command
        if not ctx.sandbox:
            raise BuildError(
                f"the build.run step `{command}` needs the sandbox; --no-sandbox cannot run it"
            )
        if not sandbox_works():
            raise SandboxUnavailable(
                f"the build.run step `{command}` must be sandboxed, but bubblewrap is missing "
                "or cannot create namespaces here"
            )
        layers = ctx.layers()
        binds = self._binds(args, ctx.scratch)
        ctx.say(f"$ {command}")
        scratch = ctx.scratch
        overlay = writable_root(layers, scratch)
        if overlay is not None:
            prefix, top, lowers, merged = overlay.prefix, overlay.upper, layers, overlay.merged
        else:  # a private copy of the merged layers (a copy, never their hard links)
            ctx.say("(no overlay mounts here: the step runs over a copy of its layers)")
            view = merge_view(layers, scratch / "view")
            merged = scratch / "root"
            shutil.copytree(view, merged, symlinks=True)
            prefix, top, lowers = [], merged, [view]
        bundle = self._ca_bundle(args, layers)
        if bundle is not None:  # a file the step may replace (update-ca-certificates does)
            where = top / CA_BUNDLE.lstrip("/")
            where.parent.mkdir(parents=True, exist_ok=True)
            where.unlink(missing_ok=True)
            where.write_bytes(bundle)
        jail = self._jail(ctx, merged, args, binds, prefix)
        argv = jail.argv(["/bin/sh", "-c", command])
        code = _run(ctx, argv, jail.network)
        if code != 0:
            raise BuildError(f"the build.run step `{command}` failed with exit status {code}")
        skip = {t.lstrip("/") for _, t in binds}
        lent = {CA_BUNDLE.lstrip("/"): bundle} if bundle is not None else {}
        _diff(top, lowers, ctx.out, skip, ctx, lent)
        fixed = ctx.drv.fixed_output
        if fixed is not None and (actual := tree_sha256(ctx.out)) != fixed.sha256:
            raise BuildError(
                f"the build.run step `{command}` needs the network and its result changed "
                f"since cog.lock pinned it (sha256 {fixed.sha256}, now {actual})",
                hint="if the change is expected, run `cog lock --upgrade` to pin it again",
            )

    def _binds(self, args: RunStepArgs, scratch: Path) -> list[tuple[str, str]]:
        """Host files shown read-only in the step: its secrets."""
        binds = []
        for mount in args.secrets:
            source = self.secrets.get(mount.id)
            if source is None:
                raise BuildError(
                    f"the build.run step `{args.command}` mounts the secret {mount.id!r}, but "
                    f"no --secret id={mount.id},src=FILE was given",
                    hint=f"pass --secret id={mount.id},src=FILE",
                )
            binds.append((str(secret_file(mount.id, source, scratch)), mount.target))
        return binds

    @staticmethod
    def _ca_bundle(args: RunStepArgs, layers: Sequence[Path]) -> bytes | None:
        """For a network step, the CA bundle SSL_CERT_FILE names (a corporate proxy's) joined
        to the image's own (which holds COG_CA_CERT's), lent to the step in place of the
        image's own; never kept in its layer unless the step made another."""
        bundle = os.environ.get("SSL_CERT_FILE")
        if not (args.network and bundle and os.path.isfile(bundle)):
            return None
        return joined(Path(bundle).read_text(), trusted_by(layers)).encode()

    def _jail(
        self,
        ctx: BuildContext,
        root: Path,
        args: RunStepArgs,
        binds: Sequence[tuple[str, str]],
        prefix: Sequence[str],
    ) -> Jail:
        mounts = ["--bind", str(root), "/", "--proc", "/proc", "--dev", "/dev"]
        mounts += ["--perms", "1777", "--tmpfs", "/tmp", "--tmpfs", "/run", "--tmpfs", STORE_DIR]
        model_env = ctx.input_paths.get("model-env")
        for path in ctx.closure:
            if path == model_env:
                mounts += ["--bind", str(_scratch_copy(ctx, "model-env")), str(path)]
            else:
                mounts += ["--ro-bind", str(ctx.store.real_path(path)), str(path)]
        mounts += ["--remount-ro", STORE_DIR]
        network = OwnNetwork() if args.network else False
        if network:
            mounts += network_binds(ctx.scratch, OwnNetwork.NAMESERVER)
        for source, target in binds:
            mounts += ["--ro-bind", source, target]
        return Jail(mounts, ctx.drv.env, network=network, prefix=prefix)


def _scratch_copy(ctx: BuildContext, role: str) -> Path:
    """A writable copy of the input `role` (its links kept as links), for the step alone.

    The model's environment is shown so: `pip install --upgrade` of a package that
    requirements installed removes the old one's scripts from the environment's bin/ before
    it installs the new one under /usr/local (builders.root_site), which wins on sys.path.
    What it changes there is thrown away with the copy; the store path never changes."""
    copy = ctx.scratch / f"writable-{role}"
    shutil.copytree(ctx.inputs[role], copy, symlinks=True)
    return copy


def _run(ctx: BuildContext, argv: list[str], network: bool | OwnNetwork) -> int:
    """Runs `argv` (unshare, then bwrap) with only PATH from the host, its own network
    attached once it has started."""
    own = network if isinstance(network, OwnNetwork) else None
    return run_logged(ctx, argv, {"PATH": os.environ.get("PATH", BASE_PATH)}, network=own)


# --- the step's result ---------------------------------------------------------------------------


def _below(layers: Sequence[Path], rel: str) -> os.stat_result | None:
    """What the layers had at `rel` (the top one that has it), found without following a link:
    a link of a layer may lead anywhere on this host."""
    for layer in reversed(layers):
        path, found = layer, True
        for part in rel.split("/") if rel else []:
            try:
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    found = False
                    break
            except OSError:
                found = False
                break
            path = path / part
        if found and os.path.lexists(path):
            return os.lstat(path)
    return None


def _lower_path(layers: Sequence[Path], rel: str) -> Path | None:
    for layer in reversed(layers):
        if _below([layer], rel) is not None:
            return layer / rel
    return None


def _same_file(path: Path, other: Path) -> bool:
    with open(path, "rb") as a, open(other, "rb") as b:
        while True:
            x, y = a.read(1 << 20), b.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def _not_kept(rel: str, path: Path) -> bool:
    """Whether `rel` (at `path`) is left out of the layer: NOT_KEPT, or bytecode that records
    its source's modification time (every file of a layer has time 0, so it is stale)."""
    if any(fnmatch.fnmatchcase(rel, pattern) for pattern in NOT_KEPT):
        return True
    if not rel.endswith(".pyc") or "/__pycache__/" not in f"/{rel}":
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as f:
        header = f.read(8)
    return len(header) == 8 and int.from_bytes(header[4:8], "little") & 1 == 0


def _diff(
    top: Path,
    layers: Sequence[Path],
    out: Path,
    skip: set[str],
    ctx: BuildContext,
    lent: Mapping[str, bytes] | None = None,
) -> None:
    """Copies into `out` what `top` (the overlay's upper dir, or the whole copy) holds that
    the layers did not: new or changed files and links, new directories, and the directories
    that lead to them. Links are made relative (they cannot leave the root). A file `lent`
    to the step (path -> the bytes it was given) is left out while it still holds them."""
    lent = lent or {}
    mount_points = {"/".join(t.split("/")[:i]) for t in skip for i in range(1, t.count("/") + 1)}

    def visit(rel: str) -> list[tuple[str, os.stat_result]]:
        path = top / rel if rel else top
        st = os.lstat(path)
        was = _below(layers, rel)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            found: list[tuple[str, os.stat_result]] = []
            for name in sorted(os.listdir(path)):
                child = f"{rel}/{name}" if rel else name
                if child in skip or any(child == e or child.startswith(e + "/") for e in EXCLUDED):
                    continue
                if _not_kept(child, path / name):
                    continue
                found += visit(child)
            fresh = was is None or not stat.S_ISDIR(was.st_mode)
            keep = found or not rel or (fresh and rel not in mount_points)
            return [(rel, st), *found] if keep else []
        if stat.S_ISLNK(mode):
            lower = _lower_path(layers, rel)
            if was is not None and stat.S_ISLNK(was.st_mode) and lower is not None:
                return [] if os.readlink(lower) == os.readlink(path) else [(rel, st)]
            return [(rel, st)]
        if stat.S_ISREG(mode):
            if rel in lent and st.st_size == len(lent[rel]) and path.read_bytes() == lent[rel]:
                return []
            lower = _lower_path(layers, rel)
            if (
                was is not None
                and lower is not None
                and stat.S_ISREG(was.st_mode)
                and was.st_size == st.st_size
                and bool(was.st_mode & 0o111) == bool(mode & 0o111)
                and _same_file(path, lower)
            ):
                return []
            return [(rel, st)]
        if stat.S_ISCHR(mode) and st.st_rdev == 0:  # an overlay whiteout: a deletion
            ctx.say(f"note: ignored the deletion of /{rel} (a layer cannot delete)")
        else:
            ctx.say(f"note: left out /{rel}: not a file, directory or link")
        return []

    for rel, st in visit(""):
        source, target = top / rel, out / rel
        if stat.S_ISDIR(st.st_mode):
            target.mkdir()
            if st.st_mode & stat.S_ISVTX and st.st_mode & 0o002:
                os.chmod(target, 0o1777)  # a sticky, world-writable place such as /var/tmp
        elif stat.S_ISLNK(st.st_mode):
            link = os.readlink(source)
            os.symlink(link if is_store_reference(link) else relative_target(rel, link), target)
        else:
            fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as src, open(target, "xb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.chmod(target, 0o755 if st.st_mode & 0o111 else 0o644)


# --- cog lock: which steps need the network ---------------------------------------------------


def with_secrets(secrets: Secrets) -> Builders:
    """The realiser's builders, the run-step one holding the build's secrets."""
    return Builders({KIND: RunStepBuilder(secrets)})


def pin_steps(
    store: Store,
    roots: Sequence[Derivation],
    model_env: Derivation,
    config: CogConfig,
    previous: Sequence[StepPin],
    secrets: Secrets,
    upgrade: bool = False,
    **realise_args: Any,
) -> list[StepPin]:
    """cog.lock's `run` pins: each step tried offline and, when that fails, with the network
    (then fixed-output, its result's hash pinned). Pins of the unchanged steps at the start
    are kept (all are tried again on `upgrade`); the others are tried, each over the ones
    before it, which are built first."""
    items, env = config.build.steps, step_env(model_env, config)
    kept = 0
    while not upgrade and kept < min(len(items), len(previous)):
        old = previous[kept]
        if not _pins(old, items[kept]):
            break
        kept += 1
    pins = list(previous[:kept])
    below = list(roots)
    for index, (item, pin) in enumerate(zip(items, pins, strict=False), 1):
        below.append(step_derivation(index, item, below, model_env, env, pin.sha256))
    if kept == len(items):
        return pins
    steps_below = below[len(roots) :]
    tried = [m.id for item in items[kept:] for m in item.mounts]
    check_secrets([*secrets_to_build(store, steps_below), *tried], secrets)
    builders = with_secrets(secrets)
    realise(store, [*below, model_env], builders=builders, **realise_args)
    for index, item in enumerate(items[kept:], kept + 1):
        pin = _probe(store, index, item, below, model_env, env, builders, realise_args)
        pins.append(pin)
        below.append(step_derivation(index, item, below, model_env, env, pin.sha256))
    return pins


def _probe(
    store: Store,
    index: int,
    item: RunItem,
    below: Sequence[Derivation],
    model_env: Derivation,
    env: Mapping[str, str],
    builders: Builders,
    realise_args: dict[str, Any],
) -> StepPin:
    pin = step_input(item)
    offline = step_derivation(index, item, below, model_env, env)
    try:
        realise(
            store, [offline], builders=builders, **(realise_args | {"reporter": SilentReporter()})
        )
        return StepPin(command=pin.command, secrets=pin.secrets, network=False)
    except BuildError:
        print(
            f"build.run step {index} fails without the network; running it with the network "
            f"to pin its result: {pin.command}",
            file=sys.stderr,
        )
    online = step_derivation(index, item, below, model_env, env, network=True)
    step_builder = builders[KIND]
    assert isinstance(step_builder, RunStepBuilder)
    sha256 = _build_online(
        store,
        online,
        step_builder,
        lambda sha: step_derivation(index, item, below, model_env, env, sha),
    )
    return StepPin(command=pin.command, secrets=pin.secrets, network=True, sha256=sha256)


_NOT_FOUND = re.compile(
    r"\b(?:sh: \d+|bash(?:: line \d+)?): ([\w.+-]+): (?:command )?not found$", re.MULTILINE
)


def _missing_command(output: str) -> str | None:
    """The program a shell said it could not find (`sh: 1: curl: not found`), if any."""
    found = _NOT_FOUND.findall(output)
    return found[-1] if found else None


def _build_online(
    store: Store, drv: Derivation, builder: RunStepBuilder, pinned: Callable[[str], Derivation]
) -> str:
    """Runs a step with the network, outside the realiser (its hash is what is being learnt),
    and installs its result as the fixed-output path that hash names."""
    input_paths = {
        r: output_path(i.drv, i.output) for r, i in drv.inputs.items() if isinstance(i, DrvInput)
    }
    log_path = store.logs / f"{drv_path(drv).base}.log"
    began = time.time()
    with store.writing(), store.temp_dir("build-") as tmp, open(log_path, "w") as log:
        scratch = tmp / "scratch"
        scratch.mkdir()
        ctx = BuildContext(
            drv=drv,
            out=tmp / "out",
            out_path=output_path(drv),
            inputs={r: store.real_path(p) for r, p in input_paths.items()},
            input_paths=input_paths,
            closure=store.closure(input_paths.values()),
            store=store,
            scratch=scratch,
            log=log,
            cancel=threading.Event(),
        )
        try:
            builder.build(ctx)
        except BuildError as e:
            log.flush()
            tail = Realiser._log_tail(log_path, began)
            missing = _missing_command(tail)
            raise BuildError(
                f"build.run step {drv.name.removeprefix('run-')} failed offline and with the "
                f"network: {drv.args['command']}\n{tail}",
                hint=(
                    f"{missing} is not in the image: add the Debian package that has it to "
                    "build.system_packages, or install it in an earlier step (`apt-get update "
                    f"&& apt-get install -y PACKAGE`); see the full log: {log_path}"
                    if missing
                    else f"see the full log: {log_path}"
                ),
            ) from e
        sha256 = tree_sha256(ctx.out)
        fixed = pinned(sha256)
        write_drv(store, fixed)
        path: StorePath = output_path(fixed)
        with store.output_lock(path):
            if not store.is_valid(path):
                store.install(
                    ctx.out, path, deriver=str(drv_path(fixed)), ca=f"fixed:sha256:{sha256}"
                )
    return sha256

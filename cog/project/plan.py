"""The plan of a project's build: its layers as derivations, from cog.yaml and cog.lock alone
(no index is read), made once per build.

Root layers (the channel's base set; Debian's Python and the system packages), the
interpreter (python-build-standalone, when chosen), one store path per wheel, the model's
environment (its wheels and the `cog` SDK) and the runtime's environment (the server and its
dependencies) over the same interpreter, the code (the project directory, for `/src`) and
each weight file as a content-addressed path.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from docker.utils.build import PatternMatcher

from builders.ca_cert import ca_cert_derivation
from builders.layers import Layers
from builders.pyenv import env_derivation
from builders.run_step import check_steps, step_derivations
from builders.sdist import build_root, sdist_derivation
from builders.sdk import runtime_install, sdk_install
from builders.userland import userland
from builders.wheel import Interpreter, wheel_derivation
from cuda_channels.channel import Channel
from derivations.apt import RootPins
from derivations.config import CogConfig, ConfigError
from derivations.lock import Lock
from derivations.model import Derivation
from derivations.pylock import Wheel
from derivations.requirements import absolute_url
from store.local import Store
from store.paths import StorePath, safe_name

LARGE_FILE = 64 * 1024 * 1024  # files this big are weights, not code
ALWAYS_IGNORED = (".git", ".cog", "**/__pycache__", "cog.lock", ".venv")


def _ignore_patterns(root: Path) -> list[str]:
    """The project's ignore rules (.dockerignore, then .cogignore), read as Docker reads
    .dockerignore, then the paths that never belong in /src (last, so no `!` brings them back)."""
    patterns: list[str] = []
    for name in (".dockerignore", ".cogignore"):
        path = root / name
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{name} is not UTF-8 text", hint=f"fix or remove {path}") from None
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                patterns.append(line)
    return patterns + list(ALWAYS_IGNORED)


def _link_target(root: Path, rel: str) -> str:
    """What the project's link `rel` becomes in /src: its target, relative, when it stays
    inside the project; a link that leads out of it would ship a host file, so it is refused."""
    link = root / rel
    text = os.readlink(link)
    real_root = os.path.realpath(root)
    resolved = os.path.realpath(link)
    if resolved != real_root and not resolved.startswith(real_root + os.sep):
        raise ConfigError(
            f"the project's link {rel} leads outside the project (to {text})",
            hint="copy what it points to into the project, or add the link to .dockerignore",
        )
    lexical = os.path.normpath(os.path.join(os.path.dirname(rel), text))
    if not os.path.isabs(text) and not lexical.startswith(".."):
        return text
    return os.path.relpath(resolved, os.path.realpath(link.parent))


def add_code(store: Store, root: Path, config: CogConfig) -> tuple[StorePath, dict[str, StorePath]]:
    """The project for `/src` and its weights, each in the store. Ignore files follow Docker's
    rules (docker SDK's matcher); links are kept as links, never followed."""
    matcher = PatternMatcher(_ignore_patterns(root))
    declared = {os.path.normpath(w.source) for w in config.weights if isinstance(w.source, str)}
    managed = managed_sources(root, config)  # imported with `cog weights import`, not code
    weights: dict[str, StorePath] = {}
    skipped: list[str] = []
    with store.temp_dir("code-") as tmp:  # owned: a later run can tell a leftover
        tree = Path(tmp) / "src"
        tree.mkdir()
        for rel in sorted(matcher.walk(str(root))):
            if any(rel.startswith(w + "/") for w in weights):
                continue  # inside a weights directory, which is added whole
            if any(rel == m or rel.startswith(m + "/") for m in managed):
                continue
            source, target = root / rel, tree / rel
            mode = source.lstat().st_mode
            if stat.S_ISLNK(mode) and rel in declared:  # a weight kept elsewhere in the project
                _link_target(root, rel)
                source, mode = Path(os.path.realpath(source)), source.stat().st_mode
            if stat.S_ISDIR(mode) and rel in declared:
                weights[rel] = store.add(source, _safe(rel))
                continue
            if stat.S_ISDIR(mode):
                continue  # made for what it holds (an empty one would hide weight mounts)
            if not (stat.S_ISLNK(mode) or stat.S_ISREG(mode)):
                skipped.append(rel)  # sockets, fifos, devices: not part of a project's code
            elif rel in declared or (stat.S_ISREG(mode) and source.stat().st_size >= LARGE_FILE):
                weights[rel] = store.add(source, _safe(rel))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                if stat.S_ISLNK(mode):
                    os.symlink(_link_target(root, rel), target)
                else:
                    shutil.copy2(source, target, follow_symlinks=False)
        missing = sorted(declared - set(weights))
        if missing:
            raise ConfigError(
                f"cog.yaml declares the weight {missing[0]}, which is not in the project "
                "(or is ignored)",
                hint="fix its weights: source, or remove it from .dockerignore",
            )
        for rel in skipped:
            print(f"warning: {rel} is not a file, directory or link: left out", file=sys.stderr)
        return store.add(tree, "code"), weights


def managed_sources(root: Path, config: CogConfig) -> set[str]:
    """The project-relative directories that managed weights (`source: {uri: file://…}`)
    come from: their bytes reach the model as mounted weights, never as code."""
    found: set[str] = set()
    for weight in config.weights:
        for source in () if isinstance(weight.source, str) else weight.source:
            if source.uri.startswith("file://"):
                where = (root / source.uri.removeprefix("file://")).resolve()
                if where.is_relative_to(root.resolve()) and where != root.resolve():
                    found.add(where.relative_to(root.resolve()).as_posix())
    return found


def _safe(rel: str) -> str:
    return "weights-" + safe_name(rel)[-150:]


def check_buildable(config: CogConfig) -> None:
    """What cog.yaml may say but this cog cannot build yet, refused before anything is
    locked or fetched."""
    check_steps(config)


def layers(
    store: Store,
    root: Path,
    config: CogConfig,
    lock: Lock,
    channel: Channel,
    with_steps: bool = True,
    ca_cert: str | None = None,
) -> Layers:
    """The project's layers; `with_steps=False` leaves out build.run (what `cog lock` builds
    to learn how to pin the steps: `add_steps` adds them to these layers once pinned);
    `ca_cert`, the PEM of a CA for the image to trust."""
    check_buildable(config)
    arch = lock.platform.arch
    python = config.build.python_version
    pins = RootPins(
        base=lock.system.base,
        python=lock.system.python,
        system=lock.system.packages,
        tools=lock.system.tools or (),
    )
    land = userland(channel, arch, python, pins)
    interp = Interpreter(land.python_root, land.interpreter, land.python)
    # The environments copy Debian's binary from its layer, or link the standalone one.
    interpreter_input = (land.python or land.python_layer).dep()

    # sdists are built over the root layers plus a toolchain layer that no image holds.
    toolchain = lock.system.toolchain or ()
    sdist_root = build_root(land, toolchain, arch) if toolchain else None

    def installs(pins: Sequence[Wheel]) -> list[Derivation]:
        found = []
        for locked in pins:
            pin = replace(locked, url=absolute_url(locked.url, root))  # a project's own file
            if pin.is_sdist and sdist_root is None:
                raise ConfigError(
                    f"cog.lock pins the sdist of {pin.name} but no toolchain to build it",
                    hint="run `cog lock` to rewrite it",
                )
            found.append(
                sdist_derivation(pin, python, interp, land, sdist_root)
                if pin.is_sdist and sdist_root is not None
                else wheel_derivation(pin, python, interp)
            )
        return found

    model = [*installs(lock.python_packages), sdk_install(store, python, interp)]
    runtime = [*installs(lock.runtime_packages), runtime_install(store, python, interp)]
    code, weights = add_code(store, root, config)
    model_env = env_derivation(
        "model-env", python, land.interpreter, model, interpreter_input, root_site=True
    )
    trust = ca_cert_derivation(ca_cert, land.root_layers) if ca_cert is not None else None
    planned = Layers(
        base=land.base,
        python_layer=land.python_layer,
        tools=land.tools,
        system=land.system,
        python=land.python,
        model_env=model_env,
        runtime_env=env_derivation(
            "runtime-env", python, land.interpreter, runtime, interpreter_input
        ),
        code=code,
        weights=weights,
        ca_cert=trust,
    )
    return add_steps(planned, config, lock) if with_steps else planned


def add_steps(planned: Layers, config: CogConfig, lock: Lock) -> Layers:
    """`planned` (layers without build.run) with the steps `lock` pins, each over the root
    layers and the ones before it."""
    steps = step_derivations(planned.roots, planned.model_env, config, lock.run or ())
    return replace(planned, steps=tuple(steps))

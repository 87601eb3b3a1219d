"""A project's layers as derivations, from cog.yaml and cog.lock alone (no index is read).

Root layers (the channel's base set; Debian's Python and the system packages), the
interpreter (python-build-standalone, when chosen), one store path per wheel, the model's
environment (its wheels and the `cog` SDK) and the runtime's environment (the server and its
dependencies) over the same interpreter, the code (the project directory, for `/src`) and
each weight file as a content-addressed path.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builders.pyenv import env_derivation
from builders.sdk import runtime_install, sdk_install
from builders.userland import userland
from builders.wheel import Interpreter, wheel_derivation
from cuda_channels.channel import Channel
from derivations.apt import DebPin, RootPins
from derivations.config import CogConfig, ConfigError
from derivations.hashing import output_path
from derivations.model import Derivation
from derivations.pylock import Wheel
from store.local import Store
from store.paths import StorePath

LARGE_FILE = 64 * 1024 * 1024  # files this big are weights, not code
ALWAYS_IGNORED = (".git", ".cog", "__pycache__", "cog.lock", ".venv")


@dataclass
class Layers:
    base: Derivation
    python_layer: Derivation
    system: Derivation
    python: Derivation | None
    model_env: Derivation
    runtime_env: Derivation
    code: StorePath
    weights: dict[str, StorePath] = field(default_factory=dict)  # /src-relative path -> store

    @property
    def derivations(self) -> list[Derivation]:
        found = [self.base, self.python_layer, self.system, self.model_env, self.runtime_env]
        return found + ([self.python] if self.python is not None else [])

    def paths(self) -> dict[str, StorePath]:
        named = {
            "rootfs-base": output_path(self.base),
            "rootfs-python": output_path(self.python_layer),
            "rootfs-system": output_path(self.system),
            "model-env": output_path(self.model_env),
            "runtime-env": output_path(self.runtime_env),
            "code": self.code,
        }
        if self.python is not None:
            named["python"] = output_path(self.python)
        for rel, path in self.weights.items():
            named[f"weights:{rel}"] = path
        return named


def _ignore_patterns(root: Path) -> list[str]:
    patterns = list(ALWAYS_IGNORED)
    for name in (".dockerignore", ".cogignore"):
        path = root / name
        if path.is_file():
            for line in path.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith(("#", "!")):
                    patterns.append(line.strip("/"))
    return patterns


def _ignored(rel: str, patterns: list[str]) -> bool:
    parts = rel.split("/")
    return any(
        fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(parts[0], p) or p in parts for p in patterns
    )


def add_code(store: Store, root: Path, config: CogConfig) -> tuple[StorePath, dict[str, StorePath]]:
    """The project for `/src` (ignore files honoured) and its weights, each in the store."""
    patterns = _ignore_patterns(root)
    declared = {os.path.normpath(w.source) for w in config.weights}
    weights: dict[str, StorePath] = {}
    with tempfile.TemporaryDirectory(dir=store.root / ".cog" / "tmp") as tmp:
        tree = Path(tmp) / "src"
        tree.mkdir()
        for dirpath, dirnames, filenames in os.walk(root):
            rel_dir = os.path.relpath(dirpath, root)
            keep = []
            for d in sorted(dirnames):
                rel = os.path.normpath(os.path.join(rel_dir, d))
                if _ignored(rel, patterns):
                    continue
                if rel in declared:  # a weights directory
                    weights[rel] = store.add(root / rel, _safe(rel))
                    continue
                keep.append(d)
            dirnames[:] = keep
            for name in sorted(filenames):
                rel = os.path.normpath(os.path.join(rel_dir, name))
                source = root / rel
                if _ignored(rel, patterns) or (source.is_symlink() and not source.exists()):
                    continue
                if rel in declared or source.stat().st_size >= LARGE_FILE:
                    weights[rel] = store.add(source, _safe(rel))
                    continue
                target = tree / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
        return store.add(tree, "code"), weights


def _safe(rel: str) -> str:
    return "weights-" + "".join(c if c.isalnum() or c in "+-._" else "_" for c in rel)[-150:]


def layers(
    store: Store, root: Path, config: CogConfig, lock: dict[str, Any], channel: Channel
) -> Layers:
    unsupported = [
        (bool(config.build.run or config.build.pre_install), "build.run and build.pre_install"),
        (config.build.gpu, "gpu: true (CUDA images)"),
    ]
    for present, what in unsupported:
        if present:
            raise ConfigError(
                f"cog.yaml: {what} cannot be built yet",
                hint="remove it for now; it is planned, not silently ignored",
            )
    arch = lock["platform"]["arch"]
    python = config.build.python_version
    pins = RootPins(
        base=tuple(DebPin.from_json(p) for p in lock["system"]["base"]),
        python=tuple(DebPin.from_json(p) for p in lock["system"]["python"]),
        system=tuple(DebPin.from_json(p) for p in lock["system"]["packages"]),
    )
    land = userland(channel, arch, python, pins)
    interp = Interpreter(land.python_root, land.interpreter, land.python)
    # The environments copy Debian's binary from its layer, or link the standalone one.
    interpreter_input = (land.python or land.python_layer).dep()

    def installs(key: str) -> list[Derivation]:
        return [wheel_derivation(Wheel.from_json(w), python, interp) for w in lock[key]]

    model = [*installs("python_packages"), sdk_install(store, python, interp)]
    runtime = [*installs("runtime_packages"), runtime_install(store, python, interp)]
    code, weights = add_code(store, root, config)
    return Layers(
        base=land.base,
        python_layer=land.python_layer,
        system=land.system,
        python=land.python,
        model_env=env_derivation("model-env", python, land.interpreter, model, interpreter_input),
        runtime_env=env_derivation(
            "runtime-env", python, land.interpreter, runtime, interpreter_input
        ),
        code=code,
        weights=weights,
    )

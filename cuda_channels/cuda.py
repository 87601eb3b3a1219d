"""CUDA data: which CUDA and cuDNN a GPU project gets, chosen as Cog chooses them.

`cuda-<revision>.json` (in `cuda_channels/data/`, or a `COG_CHANNEL_PATH` directory first)
holds Cog's compatibility matrices (torch ↔ CUDA ↔ Python, TensorFlow ↔ CUDA + cuDNN, the
cuDNN majors each CUDA ships with, the default CUDA) and, per CUDA, the NVIDIA wheels that make
it, with where and when each part was taken. Its revision is a hash of its data, so a lock
that records it notices an edit.

Selection, as Cog's `validateAndCompleteCUDA`: TensorFlow pinned → its exact CUDA/cuDNN; torch
pinned → the CUDA its `+cuXYZ` local version or a `…/whl/cuXYZ` index names, else the highest
CUDA in torch's row; nothing → the default. Where Cog only warns that an explicit `cuda:`
may not suit the torch pin, this is an error: the wheels would not load.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cuda_channels.channel import ChannelError, _search_dirs
from store.hashing import canonical_json

DEFAULT_CUDA_DATA = "cuda-2026.08"
_CU = re.compile(r"cu(\d{2,})")
_PIN = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*(?:\[[^\]]*\])?\s*===?\s*([^\s;#,]+)")
_INDEX = ("--extra-index-url", "--index-url", "-i", "-f", "--find-links")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
# Requirements that bring NVIDIA's CUDA wheels themselves (torch; TensorFlow's and-cuda extra),
# or that pick their own (any nvidia-* wheel named): no wheel set is added beside them.
_RUNTIME = re.compile(r"^nvidia-cuda-runtime(-cu\d+)?$")
_CUDNN = re.compile(r"^nvidia-cudnn(-cu\d+)?$")
_OWN_CUDA = re.compile(r"^(torch|tensorflow.*|tf-nightly.*|nvidia-.*)$")


class CudaError(ChannelError):
    pass


@dataclass(frozen=True)
class CudaData:
    name: str
    revision: str
    default_cuda: str
    cudnn: dict[str, tuple[str, ...]]  # CUDA major.minor -> cuDNN majors, oldest first
    torch: tuple[dict[str, Any], ...]  # {"torch", "cuda", "pythons"}
    tensorflow: tuple[dict[str, Any], ...]  # {"tensorflow", "cuda", "cudnn", "pythons"}
    wheels: dict[str, dict[str, Any]] = field(default_factory=dict)  # CUDA -> {"cuda", "cudnn"}

    def wheel_set(self, cuda: str, cudnn: str) -> list[str] | None:
        """The requirement lines of NVIDIA's wheels that make CUDA `cuda` + cuDNN `cudnn`;
        None where the data names none."""
        found = self.wheels.get(_minor(cuda))
        if found is None or cudnn not in found.get("cudnn", {}):
            return None
        return [*found["cuda"], *found["cudnn"][cudnn]]


@dataclass(frozen=True)
class Choice:
    cuda: str
    cudnn: str
    reason: str  # what chose it, for the lock and for messages

    def to_json(self) -> dict[str, str]:
        return {"version": self.cuda, "cudnn": self.cudnn, "from": self.reason}


def load_cuda(name: str = DEFAULT_CUDA_DATA) -> CudaData:
    for d in _search_dirs():
        path = d / f"{name}.json"
        if path.is_file():
            data = json.loads(path.read_text())
            return CudaData(
                name=name,
                revision=hashlib.sha256(canonical_json(data).encode()).hexdigest(),
                default_cuda=data["default_cuda"],
                cudnn={k: tuple(v) for k, v in data["cudnn"].items()},
                torch=tuple(data["torch"]),
                tensorflow=tuple(data["tensorflow"]),
                wheels=data.get("wheels", {}),
            )
    raise CudaError(f"there is no CUDA data named {name!r}", hint="reinstall cog")


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version))


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _matches(pinned: str, row: str) -> bool:
    """Cog's version.Matches: the pinned version's parts are a prefix of the row's."""
    want, have = _key(pinned), _key(row)
    return have[: len(want)] == want


def _cu(text: str) -> str | None:
    """`cu124` in a local version or an index URL -> "12.4"."""
    m = _CU.search(text)
    return f"{m[1][:-1]}.{m[1][-1]}" if m else None


def pins(lines: list[str]) -> dict[str, str]:
    """Exact pins (`name==version`) among requirement lines, by lower-case name."""
    found = {}
    for line in lines:
        m = _PIN.match(line)
        if m and not line.lstrip().startswith("-"):
            found[m[1].lower().replace("_", "-")] = m[2]
    return found


def index_cuda(lines: list[str]) -> str | None:
    """The CUDA a PyTorch index in the requirements names (`…/whl/cu121`)."""
    for line in lines:
        if line.strip().startswith(_INDEX) and "pytorch.org" in line:
            found = _cu(line)
            if found:
                return found
    return None


def select(
    data: CudaData, lines: list[str], cuda: str | None = None, cudnn: str | None = None
) -> Choice:
    """The CUDA and cuDNN for a `gpu: true` project with requirement `lines`."""
    pinned = pins(lines)
    if "torch" in requirement_names(lines) and "torch" not in pinned:  # Cog's rule and words
        raise CudaError(
            "torch version must be specified when using CUDA",
            hint="pin it in the requirements, e.g. torch==2.5.1",
        )
    chosen, reason = cuda, "cog.yaml"
    tf, torch = pinned.get("tensorflow"), pinned.get("torch")
    tf_cudnn = None
    if tf is not None:
        rows = [r for r in data.tensorflow if r["tensorflow"] == tf]
        if rows and chosen is None:
            chosen, reason, tf_cudnn = rows[0]["cuda"], f"tensorflow=={tf}", rows[0]["cudnn"]
        elif rows:
            tf_cudnn = rows[0]["cudnn"]
    elif torch is not None:
        version, _, local = torch.partition("+")
        named = _cu(local) or index_cuda(lines)
        row = sorted(
            {r["cuda"] for r in data.torch if r["cuda"] and _matches(version, r["torch"])},
            key=_key,
        )
        if named is not None and (not row or named in row):
            row = [named]
        if cuda is not None and row and _minor(cuda) not in {_minor(c) for c in row}:
            raise CudaError(
                f"cog.yaml asks for CUDA {cuda}, but torch=={torch} is built for CUDA "
                f"{', '.join(row)}",
                hint=f'set cuda: "{row[-1]}", or remove cuda: to let the torch pin choose',
            )
        if chosen is None and not row:
            raise CudaError(
                f"cog does not know which CUDA torch=={torch} is built for",
                hint="set build.cuda in cog.yaml",
            )
        if chosen is None:
            chosen, reason = row[-1], f"torch=={torch}"
    if chosen is None:
        chosen, reason = _runtime_pin(pinned) or (None, "")
    if chosen is None:
        named = index_cuda(lines)
        chosen, reason = (named, "the PyTorch index") if named else (data.default_cuda, "default")
    known = data.cudnn.get(_minor(chosen))
    if not known:
        raise CudaError(
            f"CUDA {chosen} is not supported (data {data.name})",
            hint=f"use one of CUDA {', '.join(data.cudnn)}",
        )
    if cudnn is not None and cudnn not in known:
        raise CudaError(
            f"cuDNN {cudnn} does not ship for CUDA {chosen}; it has cuDNN {', '.join(known)}",
            hint="change or remove build.cudnn",
        )
    return Choice(_minor(chosen), cudnn or tf_cudnn or known[-1], reason)


def pytorch_indexes(data: CudaData, lines: list[str], cuda: str | None) -> list[str]:
    """PyTorch's indexes (`cu124`, `cpu`: `download.pytorch.org/whl/<name>/`) that Cog adds
    beside the torch and torchvision pinned in `lines`, for a project on CUDA `cuda` (None: no
    GPU). On a GPU, the index of the highest CUDA in the pin's rows that is no higher than the
    project's; without one, the CPU build's. pip weighs every index and ranks `2.5.1+cpu`
    above PyPI's `2.5.1`, so that build is the one pinned. A pin with a `+local` version of
    its own, or `--no-index`, adds none."""
    if any(line.split()[:1] == ["--no-index"] for line in lines):
        return []
    pinned = pins(lines)
    found: list[str] = []
    for package in ("torch", "torchvision"):
        version = pinned.get(package)
        if version is None or "+" in version:
            continue
        if cuda is None:
            rows = [r for r in data.torch if r["cuda"] is None and r[package] == version]
        else:  # Cog matches a torch pin as a prefix (torch==2.1), torchvision exactly
            rows = [
                r
                for r in data.torch
                if r["cuda"] is not None
                and _key(r["cuda"]) <= _key(cuda)
                and (_matches(version, r["torch"]) if package == "torch" else r[package] == version)
            ]
        if rows:
            best = max(rows, key=lambda r: (_key(r["cuda"] or "0"), _key(r["torch"])))
            if best["index"] and best["index"] not in found:
                found.append(best["index"])
    return found


def _runtime_pin(pinned: dict[str, str]) -> tuple[str, str] | None:
    """The CUDA of a pinned NVIDIA runtime wheel (`nvidia-cuda-runtime-cu12==12.4.127` ->
    12.4): the CUDA the model's code will load, where neither torch nor TensorFlow picks one."""
    for name, version in sorted(pinned.items()):
        if _RUNTIME.match(name):
            return _minor(version), f"{name}=={version}"
    return None


def installed(choice: Choice, pinned: Mapping[str, str]) -> Choice:
    """`choice` as the locked closure `pinned` (normalised name -> version) installs it: the
    CUDA of NVIDIA's runtime wheel there (torch's own dependency, the CUDA layer's, the
    user's), else of torch's `+cuXYZ`; the cuDNN major of NVIDIA's cuDNN wheel there. Either
    kept from `choice` where the closure names none, or one that agrees with it; `choice`
    itself where both agree, else a Choice whose reason names the pins it was read from.

    This is what the label must say: torch 2.8.0 from PyPI (PyTorch's index out of reach)
    is built for CUDA 12.8 (`nvidia-cuda-runtime-cu12==12.8.90`), whatever torch's row chose."""
    runtimes = sorted((n, v) for n, v in pinned.items() if _RUNTIME.match(n))
    cudnns = sorted((n, v) for n, v in pinned.items() if _CUDNN.match(n))
    found = [(_minor(v), f"{n}=={v}") for n, v in runtimes]
    torch = pinned.get("torch", "")
    local = _cu(torch.partition("+")[2])
    if not found and local is not None:
        found = [(local, f"torch=={torch}")]
    cuda = _agreeing(choice.cuda, found)
    cudnn = _agreeing(choice.cudnn, [(v.split(".")[0], f"{n}=={v}") for n, v in cudnns])
    if cuda is None and cudnn is None:
        return choice
    read = ", ".join(found[1] for found in (cuda, cudnn) if found is not None)
    return Choice(
        cuda[0] if cuda else choice.cuda,
        cudnn[0] if cudnn else choice.cudnn,
        f"{read} as locked, where {choice.reason} chose CUDA {choice.cuda} + cuDNN {choice.cudnn}",
    )


def _agreeing(chosen: str, found: list[tuple[str, str]]) -> tuple[str, str] | None:
    """None where nothing was `found` or one of it is `chosen`; else the first (value, pin)."""
    if not found or chosen in {value for value, _ in found}:
        return None
    return found[0]


def requirement_names(lines: Sequence[str]) -> set[str]:
    """The normalised names of the packages requirement lines name (not their options)."""
    found = set()
    for line in lines:
        m = _NAME.match(line)
        if m:
            found.add(re.sub(r"[-_.]+", "-", m[1]).lower())
    return found


def wheel_layer(
    data: CudaData, choice: Choice, lines: list[str], cudnn: str | None = None
) -> tuple[Choice, list[str]]:
    """The NVIDIA wheels to add to a `gpu: true` project's requirements (its CUDA layer), and
    the choice they make. None where the requirements bring their own CUDA (torch, TensorFlow,
    nvidia-* named). Cog's default CUDA (11.8) has no wheel set in the data (its base image
    carried it): a project that chose nothing gets the newest set instead (every CUDA 12 set
    runs on the same driver floor, 525, by CUDA's minor-version compatibility), with the
    cuDNN cog.yaml asks for."""
    if any(_OWN_CUDA.match(name) for name in requirement_names(lines)):
        return choice, []
    found = data.wheel_set(choice.cuda, choice.cudnn)
    if found is not None:
        return choice, found
    sets = sorted(data.wheels, key=_key)
    if choice.reason == "default":
        for cuda in reversed(sets):
            have = sorted(data.wheels[cuda].get("cudnn", {}), key=_key)
            pick = (cudnn if cudnn in have else None) if cudnn else (have[-1] if have else None)
            if pick is not None:
                reason = f"newest NVIDIA wheel set (Cog's default CUDA {choice.cuda} has none)"
                return Choice(cuda, pick, reason), data.wheel_set(cuda, pick) or []
    have = [f"{c} + cuDNN {d}" for c in sets for d in sorted(data.wheels[c].get("cudnn", {}))]
    raise CudaError(
        f"CUDA {choice.cuda} with cuDNN {choice.cudnn} has no NVIDIA wheel set in "
        f"{data.name}; it has CUDA {', '.join(have) or 'none'}",
        hint="set build.cuda (and build.cudnn) to one of them, or name NVIDIA's wheels "
        "(nvidia-*-cu12) in the requirements yourself",
    )

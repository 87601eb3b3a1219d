"""cog.yaml cases generated from Cog's JSON schema: for every place a value can go (each
property, each list's items, each branch of an anyOf/oneOf), a value of every JSON type, null,
the empty string/list/mapping, and an unknown key in every mapping, each set into a complete
cog.yaml that Cog accepts as it is. Each case is compared with what Cog says of it
(cog_config_oracle) and what our loader says."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import yaml

from tests.conformance.cog_config_oracle import SCHEMA

# A cog.yaml that Cog accepts, with every field of its schema set to a meaningful value: the
# context each generated value is put into.
BASE: dict[str, Any] = {
    "build": {
        "gpu": True,
        "python_version": "3.12",
        "python_requirements": "requirements.txt",
        "system_packages": ["ffmpeg"],
        "pre_install": ["echo before"],
        "run": [
            "echo hello",
            {
                "command": "echo secret",
                "mounts": [{"type": "secret", "id": "token", "target": "/run/secrets/token"}],
            },
        ],
        "cuda": "12.1",
        "sdk_version": "0.16.0",
    },
    "model": "r8.im/me/model",
    "run": "run.py:Runner",
    "train": "train.py:train",
    "concurrency": {"max": 2, "default_target": 1},
    "environment": ["GREETING=hello"],
    "weights": [
        {
            "name": "base",
            "target": "/src/weights",
            "source": {"uri": "file://./weights", "include": ["*.bin"], "exclude": ["*.tmp"]},
        }
    ],
}
# The project files BASE names.
FILES = {"requirements.txt": "", "run.py": "", "train.py": "", "weights/model.bin": ""}

# Values the schema allows but that would make another field conflict (validate.go: one of run
# or predict, one of model or image, weights need model, one of python_packages or
# python_requirements; CUDA and cuDNN are checked together): set, those others leave.
DISPLACES = {
    "predict": ("run",),
    "image": ("model", "weights"),
    "build.python_packages": ("build.python_requirements",),
    "build.cudnn": ("build.cuda",),
}
# For `predict` and the like, the values BASE lacks: what a user writes there.
VALID = {"predict": "predict.py:Predictor", "image": "r8.im/me/model", "build.cudnn": "9"}
VALID |= {"build.python_packages": ["torch==2.5.1"], "build.python_packages.0": "torch==2.5.1"}


@dataclass(frozen=True)
class Case:
    id: str  # "build.run.0: integer"
    path: tuple[str | int, ...]
    sample: str  # which value: "null", "integer", "string", "empty list", "unknown key" …
    document: dict[str, Any]

    @cached_property
    def text(self) -> str:
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        return yaml.dump(self.document, Dumper=dumper, sort_keys=False)

    @property
    def place(self) -> str:
        return ".".join(map(str, self.path)) or "(root)"


@dataclass(frozen=True)
class TextCase(Case):
    """A case written as text, for what a mapping cannot say (a scalar's spelling)."""

    raw: str = ""

    @property
    def text(self) -> str:
        return self.raw


def _get(document: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        document = document[part]
    return document


def _set(document: dict[str, Any], path: tuple[str | int, ...], value: Any) -> None:
    parent = _get(document, path[:-1])
    parent[path[-1]] = value


def _drop(document: dict[str, Any], dotted: str) -> None:
    *parents, last = dotted.split(".")
    target: Any = document
    for part in parents:
        target = target.get(part, {})
    target.pop(last, None)


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        target: Any = SCHEMA
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        schema = target
    return schema


def _types(schema: dict[str, Any]) -> set[str]:
    kind = schema.get("type", [])
    found = {kind} if isinstance(kind, str) else set(kind)
    for branch in schema.get("anyOf", []) + schema.get("oneOf", []):
        found |= _types(_resolve(branch))
    return found


def _slots(
    schema: dict[str, Any], base: Any, path: tuple[str | int, ...]
) -> list[tuple[tuple[str | int, ...], dict[str, Any], Any]]:
    """Every place of the schema with its schema and its value in BASE."""
    schema = _resolve(schema)
    found = [(path, schema, base)] if path else []
    for name, sub in schema.get("properties", {}).items():
        dotted = ".".join(map(str, (*path, name)))
        value = base.get(name, VALID.get(dotted)) if isinstance(base, dict) else None
        if value is not None:
            found += _slots(sub, value, (*path, name))
    items = schema.get("items")
    if items is not None and isinstance(base, list):
        branches = _resolve(items).get("anyOf")
        if branches:  # each branch at the item of BASE that takes its form
            for branch in branches:
                kind = _resolve(branch).get("type")
                for index, item in enumerate(base):
                    if (kind == "string") == isinstance(item, str):
                        found += _slots(branch, item, (*path, index))
                        break
        else:
            found += _slots(items, base[0], (*path, 0))
    for branch in schema.get("oneOf", []):  # weights' source: one source, or a list of them
        resolved = _resolve(branch)
        if resolved.get("type") == "object" and isinstance(base, dict):
            found += [s for s in _slots(resolved, base, path) if s[0] != path]
    return found


def _samples(schema: dict[str, Any], base: Any) -> dict[str, Any]:
    """A value of every JSON type for a place whose valid value is `base`."""
    types = _types(schema)
    samples: dict[str, Any] = {
        "null": None,
        "boolean": True,
        "integer": 1,
        "number": 2.5,
        "string": base if isinstance(base, str) else "text",
        "list": base if isinstance(base, list) else ["text"],
        "mapping": base if isinstance(base, dict) else {"key": "text"},
    }
    if isinstance(base, int) and not isinstance(base, bool):
        samples["integer"] = base
    if "string" in types:
        samples["empty string"] = ""
    if "array" in types:
        if not isinstance(base, list):  # one item given as a list of it (weights' source)
            samples["list"] = [base]
        samples["empty list"] = []
        samples["list of null"] = [None]
    if "object" in types:
        samples["empty mapping"] = {}
        samples["unknown key"] = {**base, "unknown_key": 1} if isinstance(base, dict) else None
    return {k: v for k, v in samples.items() if k != "unknown key" or v is not None}


def _with(changes: dict[str, Any], drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """BASE with dotted keys set (a value of None leaves the key out) and others dropped."""
    document = copy.deepcopy(BASE)
    for dotted in drop:
        _drop(document, dotted)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        target: Any = document
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        target[last] = value
    return document


_SECOND_WEIGHT = {"name": "extra", "target": "/src/extra", "source": {"uri": "file://./w2"}}
# Values of the right type that Cog's rules (validate.go, env.go, config.go) refuse, or
# accept at their edge: the schema alone does not generate these.
RULES: dict[str, dict[str, Any]] = {
    "python_version 3.9": _with({"build.python_version": "3.9"}),
    "python_version 3": _with({"build.python_version": "3"}),
    "python_version 3.x": _with({"build.python_version": "3.x"}),
    "python_version 3.12.1": _with({"build.python_version": "3.12.1"}),
    "python_version with spaces": _with({"build.python_version": " 3.12 "}),
    "cuda 10.2": _with({"build.cuda": "10.2"}),
    "cuda 12": _with({"build.cuda": "12"}),
    "cuda 12.x with a GPU": _with({"build.cuda": "12.x"}),
    "cuda without a GPU": _with({"build.gpu": False, "build.cuda": "12.1"}),
    "python_packages and python_requirements": _with({"build.python_packages": ["torch"]}),
    "python_requirements missing": _with({"build.python_requirements": "missing.txt"}),
    "concurrency max 0": _with({"concurrency.max": 0}),
    "concurrency max 4 on Python 3.10": _with({"build.python_version": "3.10"}),
    "environment PATH": _with({"environment": ["PATH=/x"]}),
    "environment R8_ prefix": _with({"environment": ["R8_X=1"]}),
    "environment twice": _with({"environment": ["A=1", "A=2"]}),
    "environment without =": _with({"environment": ["A"]}),
    "environment =value": _with({"environment": ["=1"]}),
    "environment 1A": _with({"environment": ["1A=2"]}),
    "environment value with =": _with({"environment": ["A=b=c"]}),
    "run and predict": _with({"predict": "predict.py:Predictor"}),
    "run and empty predict": _with({"predict": ""}),
    "run without :": _with({"run": "run.py"}),
    "predict without .py": _with({"predict": "predict:Predictor"}, drop=("run",)),
    "train without :": _with({"train": "train.py"}),
    "model with a tag": _with({"model": "r8.im/me/model:v1"}),
    "model with a port": _with({"model": "localhost:5000/me/model"}),
    "model and image": _with({"image": "r8.im/me/model"}),
    "image and weights": _with({"image": "r8.im/me/model"}, drop=("model",)),
    "weight name uppercase": _with({"weights.0.name": "Base"}),
    "weight names twice": _with({"weights": [BASE["weights"][0], BASE["weights"][0]]}),
    "weight target relative": _with({"weights.0.target": "src/weights"}),
    "weight target /": _with({"weights.0.target": "/"}),
    "weight targets nested": _with(
        {"weights": [BASE["weights"][0], {**_SECOND_WEIGHT, "target": "/src/weights/sub"}]}
    ),
    "two weights": _with({"weights": [BASE["weights"][0], _SECOND_WEIGHT]}),
    "weight sources two": _with(
        {"weights.0.source": [{"uri": "file://./a"}, {"uri": "file://./b"}]}
    ),
    "weight include negated": _with({"weights.0.source.include": ["!x"]}),
    "weight include backslash": _with({"weights.0.source.include": ["a\\b"]}),
    "weight include blank": _with({"weights.0.source.include": ["  "]}),
    "mount of type cache": _with({"build.run.1.mounts.0.type": "cache"}),
    "build without python_version": _with({}, drop=("build.python_version",)),
}
# Whole files, written as text.
TEXTS = {
    "empty file": "",
    "comments only": "# nothing yet\n",
    "a list": "- build\n- run\n",
    "a string": "hello\n",
    "python_version unquoted 3.10": "build:\n  python_version: 3.10\n",
    "gpu yes": "build:\n  python_version: '3.12'\n  gpu: yes\n",
    "gpu y": "build:\n  python_version: '3.12'\n  gpu: y\n",
    "gpu 'true'": "build:\n  python_version: '3.12'\n  gpu: 'true'\n",
    "gpu 1": "build:\n  python_version: '3.12'\n  gpu: 1\n",
    "max 2.0": "concurrency:\n  max: 2.0\n",
    "max '2'": "concurrency:\n  max: '2'\n",
    "cudnn 8 unquoted": "build:\n  python_version: '3.12'\n  gpu: true\n  cudnn: 8\n",
    "image a date": "image: 2024-01-01\n",
    "run item quoted number": "build:\n  python_version: '3.12'\n  run: ['42']\n",
    "run item mapping with unknown key": (
        "build:\n  python_version: '3.12'\n  run:\n    - command: echo\n      shell: sh\n"
    ),
}


def cases() -> list[Case]:
    found = [Case("(root): the base", (), "base", copy.deepcopy(BASE))]
    found += [Case(f"rule: {name}", (), name, document) for name, document in RULES.items()]
    found += [TextCase(f"file: {name}", (), name, {}, text) for name, text in TEXTS.items()]
    root_unknown = {**copy.deepcopy(BASE), "unknown_key": 1}
    found.append(Case("(root): unknown key", (), "unknown key", root_unknown))
    for path, schema, base in _slots(SCHEMA, BASE, ()):
        dotted = ".".join(map(str, path))
        for sample, value in _samples(schema, base).items():
            document = copy.deepcopy(BASE)
            for field_name, others in DISPLACES.items():
                if f"{dotted}.".startswith(f"{field_name}."):
                    for other in others:
                        _drop(document, other)
            for depth in range(1, len(path)):  # a place inside a value BASE lacks
                parent = _get(document, path[: depth - 1])
                if isinstance(parent, dict) and path[depth - 1] not in parent:
                    _set(document, path[:depth], copy.deepcopy(VALID[dotted.rsplit(".", 1)[0]]))
            _set(document, path, copy.deepcopy(value))
            found.append(Case(f"{dotted}: {sample}", path, sample, document))
    return found

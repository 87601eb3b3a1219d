"""cog.yaml's YAML read as Cog's Go decoder reads it into its config structs (pkg/config
config_file.go, go-yaml v4), before any rule is checked:

- any scalar given for a string field is that field's text as written (`python_version: 3.10`
  is "3.10", `image: 42` is "42", `cudnn: 8` is "8"), where PyYAML would make a float, an int,
  a bool or a date of it;
- a boolean field takes YAML's booleans and Go's y/yes/on and n/no/off, nothing else (PyYAML
  and pydantic would also take 1 or "t");
- an integer field takes integers, and floats with nothing after the point;
- a null item of a list is skipped, as Go's decoder skips it;
- a value of the wrong kind (a list for a string, a string for a list) is refused at once,
  in the words of Cog's schema for that field (`must be a list or null`), naming it.
Keys Cog does not know pass through as PyYAML reads them, for the model to report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml


class _Scalar(str):
    """A scalar as written (its text, the str itself) and as PyYAML resolves it (`value`)."""

    value: Any


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, whose scalars remember their text."""


class _FastLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The same over libyaml's parser (a cog.yaml in a millisecond, not thirty)."""


def _scalar(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    value = yaml.SafeLoader.yaml_constructors[node.tag](loader, node)
    if value is None:
        return None
    scalar = _Scalar(node.value)
    scalar.value = value
    return scalar


for _tag in ("bool", "int", "float", "str", "timestamp", "binary"):
    for _loader in (_Loader, _FastLoader):
        _loader.add_constructor(f"tag:yaml.org,2002:{_tag}", _scalar)


def load(text: str) -> Any:
    """The document in `text`, its scalars carrying their text. A document libyaml refuses is
    read again by PyYAML's own parser, whose errors (and RecursionError, for nesting past
    Python's stack) are the ones cog reports."""
    try:
        return yaml.load(text, Loader=_FastLoader)
    except yaml.YAMLError:
        return yaml.load(text, Loader=_Loader)


class WrongKind(ValueError):
    """A value of a kind the field cannot hold: `path` is Cog's (build.run.0), `words` the
    types its schema allows (`list or null`)."""

    def __init__(self, path: tuple[str | int, ...], words: str) -> None:
        super().__init__(f"must be {'an' if words[0] in 'aeiou' else 'a'} {words}")
        self.path = path


@dataclass(frozen=True)
class Kind:
    """What a field holds, as Cog's Go struct declares it: `shape` is text (any scalar), bool,
    int, list, map, run_item (a string or a mapping), source (a mapping or a list of them) or
    any; `words` is how Cog's schema names its types."""

    shape: str
    words: str = ""
    item: Kind | None = None
    keys: dict[str, Kind] = field(default_factory=dict)
    # "" is no value at all: a Go string with omitempty (the schema never sees it), or one
    # that Cog's rules and build read as unset where it is empty (`image: ""`)
    empty_is_unset: bool = False


ANY = Kind("any")
TEXT = Kind("text", "string")
NO_EMPTY_TEXT = Kind("text", "string", empty_is_unset=True)
TEXTS = Kind("list", "list or null", item=TEXT)
PATTERNS = Kind("list", "list", item=TEXT)
MOUNT = Kind(
    "map", "mapping", keys={"type": NO_EMPTY_TEXT, "id": NO_EMPTY_TEXT, "target": NO_EMPTY_TEXT}
)
RUN_ITEM = Kind(
    "run_item",
    "string",  # Cog's schema: anyOf [string, object]; a wrong kind fails its first branch
    keys={"command": NO_EMPTY_TEXT, "mounts": Kind("list", "list", item=MOUNT)},
)
SOURCE = Kind(
    "map", "mapping", keys={"uri": NO_EMPTY_TEXT, "include": PATTERNS, "exclude": PATTERNS}
)
WEIGHT = Kind(
    "map",
    "mapping",
    keys={"name": TEXT, "target": TEXT, "source": Kind("source", "mapping", item=SOURCE)},
)
BUILD = Kind(
    "map",
    "mapping",
    keys={
        "gpu": Kind("bool", "boolean"),
        "python_version": Kind("text", "string or number", empty_is_unset=True),
        "python_requirements": NO_EMPTY_TEXT,
        "python_packages": TEXTS,
        "pre_install": TEXTS,
        "system_packages": TEXTS,
        "run": Kind("list", "list or null", item=RUN_ITEM),
        "cuda": NO_EMPTY_TEXT,
        "cudnn": NO_EMPTY_TEXT,
        "sdk_version": NO_EMPTY_TEXT,
    },
)
CONFIG = Kind(
    "map",
    "mapping",
    keys={
        "build": BUILD,
        "image": NO_EMPTY_TEXT,
        "model": NO_EMPTY_TEXT,
        "run": NO_EMPTY_TEXT,
        "predict": NO_EMPTY_TEXT,
        "train": NO_EMPTY_TEXT,
        "concurrency": Kind("map", "mapping", keys={"max": Kind("int", "integer")}),
        "environment": TEXTS,
        "weights": Kind("list", "list or null", item=WEIGHT),
    },
)
_GO_TRUE = {"y", "Y", "yes", "Yes", "YES", "on", "On", "ON"}
_GO_FALSE = {"n", "N", "no", "No", "NO", "off", "Off", "OFF"}


def read(value: Any, kind: Kind = CONFIG, path: tuple[str | int, ...] = ()) -> Any:
    """`value` (from `load`) as Cog's decoder makes it for a field of `kind`; null stays None
    (a key set to null is a key not set)."""
    if value is None:
        return None
    shape = kind.shape
    if shape == "any":
        return plain(value)
    if shape == "text" and isinstance(value, _Scalar):
        return None if kind.empty_is_unset and value == "" else str(value)
    if shape == "bool" and isinstance(value, _Scalar):
        if isinstance(value.value, bool):
            return value.value
        if value in _GO_TRUE | _GO_FALSE:
            return value in _GO_TRUE
    if shape == "int" and isinstance(value, _Scalar):
        number = value.value
        if isinstance(number, int) and not isinstance(number, bool):
            return number
        if isinstance(number, float) and number.is_integer():
            return int(number)
    if shape == "list" and isinstance(value, list):
        assert kind.item is not None
        items = (read(v, kind.item, (*path, i)) for i, v in enumerate(value))
        return [item for item in items if item is not None]
    if shape in ("map", "run_item") and isinstance(value, dict):
        return {
            str(k): read(v, kind.keys[k], (*path, str(k))) if k in kind.keys else plain(v)
            for k, v in value.items()
        }
    if shape == "run_item" and isinstance(value, _Scalar) and isinstance(value.value, str):
        return str(value)
    if shape == "source":  # one source, a list of them, or (ours) a path in the project
        assert kind.item is not None
        if isinstance(value, dict):
            return read(value, kind.item, path)
        if isinstance(value, list):
            return read(value, Kind("list", "list", item=kind.item), path)
        if isinstance(value, _Scalar) and isinstance(value.value, str):
            return str(value)
    raise WrongKind(path, kind.words)


def plain(value: Any) -> Any:
    """`value` as PyYAML reads it (its scalars resolved)."""
    if isinstance(value, _Scalar):
        return value.value
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value

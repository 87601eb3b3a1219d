"""cog.yaml: Cog's whole schema as pydantic models, with errors a user can act on.

Every problem is one sentence naming the field path, in Cog's words (pkg/config: its schema's
`build.run: must be a list`, its rules' `invalid build.cuda "10.2": minimum supported CUDA
version is 11`), never pydantic's; an unknown key is an error with the closest known key
suggested. A key set to null is a key not set, as Cog decodes cog.yaml into Go fields that are
pointers and slices: `run:` holding only comments is no run steps.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from derivations.errors import DerivationError
from derivations.requirements import logical_lines

MIN_PYTHON = (3, 10)
MIN_PYTHON_FOR_CONCURRENCY = (3, 11)
MIN_CUDA = 11
DEFAULT_PYTHON = "3.13"  # Cog's, for a cog.yaml without a build section
# Names Cog reserves for its own use in the image (Cog's deny list; `*` is a prefix).
DENIED_ENV = (
    "PATH",
    "LD_LIBRARY_PATH",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "PYTHONUNBUFFERED",
    "R8_*",
    "REPLICATE_*",
    "LIBRARY_PATH",
    "CUDA_*",
    "NVIDIA_*",
    "NV_*",
    "PGET_*",
    "HF_ENDPOINT",
    "HF_HUB_ENABLE_HF_TRANSFER",
    "KUBERNETES_*",
)
_REF = re.compile(r"^[^:]+\.py:[A-Za-z_][A-Za-z0-9_]*$")
_ENV_PATTERN = "^[A-Za-z_][A-Za-z0-9_]*=.*$"  # Cog's schema, for environment's items
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ConfigError(DerivationError):
    pass


class _Invalid(ValueError):
    """A rule Cog words as `invalid FIELD "VALUE": MESSAGE` (its ValidationError). `field`
    stands for the error's own place where that is not the one Cog names."""

    def __init__(self, message: str, value: object = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message, self.value, self.field = message, value, field


class _Schema(ValueError):
    """A breach of Cog's JSON schema, worded as Cog words it: `FIELD: MESSAGE`."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message, self.field = message, field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_unset(cls, data: Any) -> Any:
        """A known key whose value is null (YAML's `~`, or nothing but comments) is left out,
        as Cog's Go decoding leaves its field unset."""
        if not isinstance(data, dict):
            return data
        return {k: v for k, v in data.items() if v is not None or k not in cls.model_fields}


class Mount(_Strict):
    type: Literal["secret"]
    id: str
    target: str


class RunItem(_Strict):
    command: str
    mounts: tuple[Mount, ...] = ()


def _run_line(line: str) -> dict[str, Any]:
    """A `run:` string. Cog writes it after `RUN `, so BuildKit's `--mount=` flags may lead
    it: a cache mount only speeds pip up and is dropped (a build reads no cache), a secret
    mount is a `mounts` entry, and any other kind is refused."""
    mounts = []
    command = line.lstrip()
    while command.startswith("--mount="):
        flag, _, command = command.partition(" ")
        command = command.lstrip()
        fields = dict(f.partition("=")[::2] for f in flag.removeprefix("--mount=").split(","))
        kind = fields.get("type", "bind")
        if kind == "secret" and fields.get("id"):
            target = fields.get("target") or fields.get("dst") or fields.get("destination")
            mounts.append(
                {
                    "type": "secret",
                    "id": fields["id"],
                    "target": target or f"/run/secrets/{fields['id']}",
                }
            )
        elif kind != "cache":
            raise ValueError(
                f"{flag} is not supported: a run step may mount a cache or a secret (with its id)"
            )
    return {"command": command, "mounts": mounts}


class Build(_Strict):
    gpu: bool = False
    python_version: str = DEFAULT_PYTHON
    python_requirements: str | None = None
    python_packages: tuple[str, ...] = ()  # deprecated by Cog; still honoured
    system_packages: tuple[str, ...] = ()
    run: tuple[RunItem, ...] = ()
    pre_install: tuple[str, ...] = ()  # deprecated by Cog; still honoured
    cuda: str | None = None
    cudnn: str | None = None
    sdk_version: str | None = None

    @field_validator("python_version", mode="before")
    @classmethod
    def _python(cls, value: Any) -> str:
        """Cog's rules and words (pkg/config/validate.go validatePythonVersion)."""
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise _Schema("must be a string or number")  # the schema's ["string", "number"]
        version = str(value).strip()
        parts = version.split(".", 2)
        if len(parts) < 2:
            raise _Invalid("must include major and minor version (e.g., '3.11')", version)
        for part, which in zip(parts, ("major", "minor"), strict=False):
            if not part.isdigit():
                raise _Invalid(f"invalid {which} version number", version)
        if (int(parts[0]), int(parts[1])) < MIN_PYTHON:
            raise _Invalid(
                f"minimum supported Python version is {MIN_PYTHON[0]}.{MIN_PYTHON[1]}", version
            )
        return f"{int(parts[0])}.{int(parts[1])}"

    @field_validator("run", mode="before")
    @classmethod
    def _run(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        return [_run_line(v) if isinstance(v, str) else v for v in value]

    @property
    def steps(self) -> tuple[RunItem, ...]:
        """The commands in the order Cog runs them: `run`, then the deprecated `pre_install`
        (which Cog appends to them, pkg/dockerfile/standard_generator.go runCommands)."""
        return (*self.run, *(RunItem(command=c) for c in self.pre_install))

    @field_validator("cuda")
    @classmethod
    def _cuda(cls, value: str | None) -> str | None:
        """Cog's rules and words (validateCUDAVersion); a minor part must be a number too."""
        if value is None:
            return None
        parts = value.split(".")
        if len(parts) < 2:
            raise _Invalid("must include both major and minor versions (e.g., '11.8')", value)
        for part, which in zip(parts, ("major", "minor", "patch"), strict=False):
            if not part.isdigit():
                raise _Invalid(f"invalid {which} version number", value)
        if int(parts[0]) < MIN_CUDA:
            raise _Invalid(f"minimum supported CUDA version is {MIN_CUDA}", value)
        return value

    @field_validator("system_packages")
    @classmethod
    def _packages(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]+(=\S+)?", name):
                raise ValueError(f"{name!r} is not a Debian package name")
        return value

    @model_validator(mode="after")
    def _exclusive(self) -> Build:
        if self.python_packages and self.python_requirements:
            raise _Invalid(
                "only one of python_packages or python_requirements can be set, not both"
            )
        if (self.cuda or self.cudnn) and not self.gpu:
            raise ValueError("cuda and cudnn need gpu: true")
        return self


class Concurrency(_Strict):
    max: int = 1

    @field_validator("max")
    @classmethod
    def _at_least_one(cls, value: int) -> int:
        if value < 1:
            raise _Invalid("must be at least 1", value)
        return value


# The two forms of a weight's source (tags of a union, left out of error paths).
_WEIGHT_PATH, _WEIGHT_URI = "weight-path", "weight-uri"


class WeightSource(_Strict):
    """A managed weight's source (`cog weights import`): a URI, filtered by globs."""

    uri: str
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


class Weight(_Strict):
    """A weight: a path in the project (`source: weights/model.pth`), or a managed weight
    (`name`, `target`, `source: {uri, include, exclude}`) imported with `cog weights import`."""

    source: Annotated[
        Annotated[str, Tag(_WEIGHT_PATH)] | Annotated[tuple[WeightSource, ...], Tag(_WEIGHT_URI)],
        Discriminator(lambda v: _WEIGHT_PATH if isinstance(v, str) else _WEIGHT_URI),
    ]
    target: str | None = None
    name: str | None = None

    @field_validator("source", mode="before")
    @classmethod
    def _one_source(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @property
    def managed(self) -> bool:
        return not isinstance(self.source, str)

    @model_validator(mode="after")
    def _managed(self) -> Weight:
        if self.managed:
            if not self.name:
                raise ValueError("a weight with a source uri needs a name")
            if not self.source:
                raise ValueError(f"weight {self.name!r} needs at least one source")
            if not self.target or not self.target.startswith("/"):
                raise ValueError(f"weight {self.name!r} needs an absolute target path")
        return self


class CogConfig(_Strict):
    build: Build = Build()
    image: str | None = None
    predict: str | None = None
    train: str | None = None
    concurrency: Concurrency | None = None
    environment: tuple[str, ...] = ()
    weights: tuple[Weight, ...] = ()
    model: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _run(cls, data: Any) -> Any:
        """`run:` is Cog's newer name for `predict:` (a BaseRunner); one of the two."""
        if isinstance(data, dict) and "run" in data:
            data = dict(data)
            run = data.pop("run")
            if run and data.get("predict"):
                raise _Invalid("only one of run or predict can be set", field="run")
            if run is not None and not isinstance(run, str):
                raise _Schema("must be a string", field="run")
            if run and not _REF.match(run):
                raise _Invalid("must be in the form 'run.py:Runner'", run, field="run")
            if run:
                data["predict"] = run
        return data

    @field_validator("predict", "train")
    @classmethod
    def _ref(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not _REF.match(value):
            example = "predict.py:Predictor" if info.field_name == "predict" else "train.py:Trainer"
            raise _Invalid(f"must be in the form '{example}'", value)
        return value

    @field_validator("environment")
    @classmethod
    def _environment(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Cog's rules and words (parseAndValidateEnvironment, validateEnvName), and its
        schema's pattern for a name."""
        seen: set[str] = set()
        for index, item in enumerate(value):
            name, eq, _ = item.partition("=")
            if not eq or not name:
                raise _Invalid(
                    f"environment variable {_go_quote(item)} is not in the KEY=VALUE format"
                )
            if not _ENV_NAME.fullmatch(name):
                raise _Schema(f"Does not match pattern '{_ENV_PATTERN}'", f"environment.{index}")
            for pattern in DENIED_ENV:
                if fnmatch.fnmatchcase(name, pattern):
                    raise _Invalid(
                        f"environment variable {_go_quote(name)} is not allowed: reserved for "
                        "internal use"
                    )
            if name in seen:
                raise _Invalid(f"environment variable {_go_quote(name)} is already defined")
            seen.add(name)
        return value

    @model_validator(mode="after")
    def _python_required(self) -> CogConfig:
        """As Cog: a build section must name its Python (only a file without one gets the
        default)."""
        if "build" in self.model_fields_set and "python_version" not in self.build.model_fields_set:
            raise _Invalid(
                "python_version is required. Add it to the build section of your cog.yaml, "
                'e.g. `python_version: "3.13"`',
                field="build.python_version",
            )
        return self

    @model_validator(mode="after")
    def _concurrency(self) -> CogConfig:
        if self.concurrency and self.concurrency.max > 1:
            major, minor = (int(p) for p in self.build.python_version.split("."))
            if (major, minor) < MIN_PYTHON_FOR_CONCURRENCY:
                need = ".".join(map(str, MIN_PYTHON_FOR_CONCURRENCY))
                raise _Invalid(
                    f"concurrency requires Python {need} or higher",
                    self.concurrency.max,
                    field="concurrency.max",
                )
        return self

    @model_validator(mode="after")
    def _weights_unique(self) -> CogConfig:
        names: set[str] = set()
        targets: set[str] = set()
        for weight in self.weights:
            if not weight.managed:
                continue
            target = (weight.target or "").rstrip("/") or "/"
            if weight.name in names:
                raise ValueError(f"weight name {weight.name!r} is used twice")
            if target in targets:
                raise ValueError(f"weight target {weight.target!r} is used twice")
            names.add(weight.name or "")
            targets.add(target)
        return self

    @property
    def env(self) -> dict[str, str]:
        return dict(item.split("=", 1) for item in self.environment)


def _known_keys(model: type[BaseModel], path: tuple[str | int, ...]) -> list[str]:
    """The field names at `path` (a pydantic location) of the model tree."""
    current: Any = model
    for part in path:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        for candidate in (annotation, *getattr(annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                current = candidate
                break
            inner = getattr(candidate, "__args__", ())
            models = [a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)]
            if models:
                current = models[0]
                break
        else:
            return []
    return list(getattr(current, "model_fields", {}))


def visible(text: str) -> str:
    """`text` with every character a terminal would not show as itself (zero-width spaces,
    right-to-left overrides, control characters) escaped, as `\\u200b`: a key that only
    looks like `gpu` is shown as what it is."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def _go_quote(text: str) -> str:
    """`text` as Go's %q writes it, as Cog quotes a value in its messages."""
    return '"' + visible(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'


# pydantic's type errors as Cog's schema words them (validate.go getSchemaErrorDescription:
# `must be a list`, an object being a mapping and an array a list).
_EXPECTED = {
    "tuple_type": "list",
    "list_type": "list",
    "string_type": "string",
    "bool_type": "boolean",
    "bool_parsing": "boolean",
    "int_type": "integer",
    "int_parsing": "integer",
    "int_from_float": "integer",
    "model_type": "mapping",
    "model_attributes_type": "mapping",
    "dict_type": "mapping",
}


def _sentence(error: Any, where: str) -> ConfigError:
    loc = tuple(
        p
        for p in error["loc"]
        if p not in (_WEIGHT_PATH, _WEIGHT_URI) and not str(p).startswith("function-")
    )
    path = ".".join(visible(str(p)) for p in loc)
    kind, retry = error["type"], f"fix {where} and retry"
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, _Invalid):
        value = "" if cause.value is None else f" {_go_quote(str(cause.value))}"
        return ConfigError(
            f"{where}: invalid {cause.field or path}{value}: {cause.message}", hint=retry
        )
    if isinstance(cause, _Schema):
        return ConfigError(f"{where}: {cause.field or path}: {cause.message}", hint=retry)
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _known_keys(CogConfig, loc[:-1]), n=1)
        hint = (
            f"did you mean {visible('.'.join([*map(str, loc[:-1]), close[0]]))}?" if close else None
        )
        return ConfigError(f"{where}: unknown key {path}", hint=hint or "remove it")
    if kind == "missing":  # the schema's `required`, named at the mapping that lacks the key
        parent = ".".join(visible(str(p)) for p in loc[:-1]) or where
        return ConfigError(f"{where}: {parent}: {visible(str(loc[-1]))} is required", hint=retry)
    if kind in _EXPECTED:
        expected = _EXPECTED[kind]
        if kind == "model_type" and loc[:2] == ("build", "run") and len(loc) == 3:
            expected = "string or mapping"  # a run item's anyOf
        article = "an" if expected[0] in "aeiou" else "a"
        message = f"must be {article} {expected}"
    elif kind == "literal_error":  # the schema's enum, as gojsonschema lists it
        allowed = re.findall(r"'([^']*)'", str((error.get("ctx") or {}).get("expected", "")))
        message = "must be one of the following: " + ", ".join(f'"{a}"' for a in allowed)
    else:  # our own rules' sentences
        message = error["msg"].removeprefix("Value error, ")
    where_in = f"{where}: {path}" if path else where  # a whole-file rule names its fields
    return ConfigError(f"{where_in}: {message}", hint=retry)


def parse_config(text: str, where: str = "cog.yaml", strict: bool = False) -> CogConfig:
    """cog.yaml's text as a config. Keys Cog does not know are left out, as Cog's YAML
    decoding drops them (`unknown_keys` says which, for a warning); `strict` refuses them."""
    data = _mapping(text, where)
    try:
        return CogConfig.model_validate(data)
    except ValidationError as e:
        unknown = [err for err in e.errors() if err["type"] == "extra_forbidden"]
        if strict or not unknown:
            raise _sentence(e.errors()[0], where) from None
    for error in unknown:  # validated again only when there were keys to leave out
        _drop(data, error["loc"])
    try:
        return CogConfig.model_validate(data)
    except ValidationError as e:
        raise _sentence(e.errors()[0], where) from None


def _too_deep(where: str) -> ConfigError:
    return ConfigError(
        f"{where} is nested too deeply to be read", hint=f"fix {where}: no setting nests so far"
    )


def _unknown(data: dict[str, Any]) -> list[Any]:
    try:
        CogConfig.model_validate(data)
    except ValidationError as e:
        return [err for err in e.errors() if err["type"] == "extra_forbidden"]
    return []


def _drop(data: Any, loc: tuple[str | int, ...]) -> None:
    *parents, key = (p for p in loc if not str(p).startswith("function-"))
    for part in parents:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return
    if isinstance(data, dict):
        data.pop(key, None)


def unknown_keys(text: str, where: str = "cog.yaml") -> list[str]:
    """Cog's warnings-to-be for the keys cog.yaml has that Cog ignores, each with the key it
    most resembles."""
    found = []
    for error in _unknown(_mapping(text, where)):
        found.append(_sentence(error, where))
    return [f"warning: {e} is ignored" + (f" ({e.hint})" if e.hint else "") for e in found]


def _mapping(text: str, where: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except RecursionError:  # lists or mappings nested past Python's stack
        raise _too_deep(where) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(
            f"{where} is not valid YAML{at}: {getattr(e, 'problem', e)}",
            hint=f"fix {where} and retry",
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{where} must be a mapping of keys (build, predict, …)",
            hint="write it as top-level keys, such as `build:` and `predict:`",
        )
    return _versions_as_written(text, data)


_VERSION_KEYS = ("python_version", "cuda", "cudnn", "sdk_version")


def _versions_as_written(text: str, data: dict[str, Any]) -> dict[str, Any]:
    """The build's version keys as written. Cog's YAML reads a number into a string field as
    its text (`python_version: 3.10` is "3.10"); PyYAML makes it the float 3.1."""
    build = data.get("build")
    if not isinstance(build, dict) or not any(
        type(build.get(key)) in (int, float) for key in _VERSION_KEYS
    ):
        return data
    root = yaml.compose(text)
    for key, value in root.value if isinstance(root, yaml.MappingNode) else ():
        if key.value == "build" and isinstance(value, yaml.MappingNode):
            for name, scalar in value.value:
                if type(build.get(name.value)) in (int, float) and name.value in _VERSION_KEYS:
                    build[name.value] = scalar.value
    return data


def load_config(project: Path) -> CogConfig:
    path = project / "cog.yaml"
    if not path.is_file():
        raise ConfigError(
            f"there is no cog.yaml in {project}", hint="run `cog init`, or cd to your project"
        )
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(
            f"cannot read {path}: {e.strerror}", hint="check the file's permissions"
        ) from None
    try:
        text = data.decode()
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ConfigError(
            f"cog.yaml is not UTF-8 text: byte 0x{data[e.start]:02x} at offset {e.start} "
            f"(line {line})",
            hint=f"save {path} as UTF-8",
        ) from None
    return parse_config(text, "cog.yaml")


# Keys Cog still reads but has renamed: (where, its replacement), as Cog warns of them.
DEPRECATED = (
    (("predict",), "run"),
    (("concurrency", "max"), "@cog.concurrent(max=...)"),
    (("build", "python_packages"), "build.python_requirements"),
    (("build", "pre_install"), "build.run"),
)


def deprecations(project: Path) -> list[str]:
    """Cog's warnings for the deprecated keys that the project's cog.yaml uses (after
    load_config has accepted it)."""
    text = (project / "cog.yaml").read_text()
    data = yaml.safe_load(text)
    found = unknown_keys(text)
    for path, replacement in DEPRECATED:
        value: Any = data
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value:
            found.append(f'deprecated field "{".".join(path)}": use "{replacement}" instead')
    return found


def requirement_lines(config: CogConfig, project: Path) -> list[str]:
    """The model's requirements: python_requirements' lines, or python_packages."""
    if config.build.python_requirements:
        path = project / config.build.python_requirements
        if not path.is_file():
            raise ConfigError(
                f"cog.yaml: build.python_requirements: {config.build.python_requirements} "
                "does not exist"
            )
        return logical_lines(path.read_text())
    return list(config.build.python_packages)

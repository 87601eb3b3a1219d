"""cog.yaml: Cog's whole schema as pydantic models, with errors a user can act on.

The YAML is read as Cog's Go decoder reads it (config_yaml: a scalar is a string field's text,
a null item is skipped, a wrong kind is refused at once), then checked by Cog's rules. Every
problem is one sentence that holds Cog's own (pkg/config errors.go): a breach of its schema is
`cog.yaml: schema error in "build.run.0": command is required`, a rule's `cog.yaml: invalid
build.cuda "10.2": minimum supported CUDA version is 11`; never pydantic's. A key Cog does not
know is dropped with a warning naming the closest known key (`strict` refuses it). A key set to
null is a key not set, as Cog decodes cog.yaml into Go fields that are pointers and slices:
`run:` holding only comments is no run steps; an empty string is no value where Cog treats it
as none (`image: ""`).

Where we differ from Cog on purpose, tests/conformance/config_allowlist.py says why.
"""

from __future__ import annotations

import difflib
import fnmatch
import posixpath
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

from derivations import config_yaml
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
_WEIGHT_NAME = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")  # Cog's: OCI tag-safe
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
    """A breach of Cog's JSON schema, worded as Cog words it: `schema error in "FIELD":
    MESSAGE` (its SchemaError, FIELD being `cog.yaml` for the whole file)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message, self.field = message, field


class _Plain(ValueError):
    """An error Cog returns as a bare sentence (config.Complete's), kept as it is."""


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
            if not _go_int(part):
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
        # An empty string is a step without a command, as Cog's omitempty drops it.
        return [({} if not v else _run_line(v)) if isinstance(v, str) else v for v in value]

    @property
    def steps(self) -> tuple[RunItem, ...]:
        """The commands in the order Cog runs them: `run`, then the deprecated `pre_install`
        (which Cog appends to them, pkg/dockerfile/standard_generator.go runCommands)."""
        return (*self.run, *(RunItem(command=c) for c in self.pre_install))

    @field_validator("cuda")
    @classmethod
    def _cuda(cls, value: str | None) -> str | None:
        """Cog's rules and words (validate.go validateCUDAVersion), with or without a GPU."""
        if value is None:
            return None
        parts = value.split(".")
        if len(parts) < 2:
            raise _Invalid("must include both major and minor versions (e.g., '11.8')", value)
        if not _go_int(parts[0]):
            raise _Invalid("invalid major version number", value)
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
        if self.gpu and self.cuda:  # config.go validateCudaVersion, which Complete runs
            minor = self.cuda.split(".")[1]
            if not _go_int(minor):
                raise _Plain(f"invalid minor version in CUDA version {_go_quote(self.cuda)}")
        return self  # without a GPU, cuda and cudnn are ignored, as Cog ignores them


class Concurrency(_Strict):
    max: int  # required by Cog's schema once concurrency is there
    default_target: object = None  # in Cog's schema, not its structs: read by nothing

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
    ] = ()  # none is Cog's `source is required` (its struct always has one to check)
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
    def _local(self) -> Weight:
        if not self.managed and self.target is not None and not self.target:
            raise ValueError("target must not be empty")
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

    @model_validator(mode="after")
    def _model(self) -> CogConfig:
        """Cog's rules and words (validate.go validateModel)."""
        if self.model and self.image:
            raise _Invalid("'model' and 'image' cannot both be set", field="model")
        if self.model:
            *_, last = self.model.split("/")
            if "@" in self.model or ":" in last:
                raise _Invalid(
                    "must be a bare repository — tags and digests are not allowed",
                    self.model,
                    field="model",
                )
        return self

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
    def _weights(self) -> CogConfig:
        """Cog's rules and words for managed weights (validate.go validateWeights), a weight
        at a time, as Cog lists them."""
        names: set[str] = set()
        targets: list[str] = []
        for index, weight in enumerate(self.weights):
            if weight.managed:
                _weight_rules(weight, f"weights[{index}]", names, targets)
        return self

    @property
    def env(self) -> dict[str, str]:
        return dict(item.split("=", 1) for item in self.environment)


def _weight_rules(weight: Weight, where: str, names: set[str], targets: list[str]) -> None:
    name, target = weight.name or "", weight.target or ""
    if not name:
        raise _Invalid("name is required", field=f"{where}.name")
    if not _WEIGHT_NAME.fullmatch(name):
        raise _Invalid(
            "must contain only lowercase alphanumeric characters, hyphens, dots, or "
            'underscores (e.g. "my-model-weights")',
            name,
            field=f"{where}.name",
        )
    if name in names:
        raise _Invalid("duplicate weight name", name, field=f"{where}.name")
    names.add(name)
    sources = () if isinstance(weight.source, str) else weight.source
    if not sources:
        raise _Invalid("source is required", field=f"{where}.source")
    for j, source in enumerate(sources):
        at = f"{where}.source" if len(sources) == 1 else f"{where}.source[{j}]"
        for key, patterns in (("include", source.include), ("exclude", source.exclude)):
            for k, raw in enumerate(patterns):
                pattern, field_name = raw.strip(), f"{at}.{key}[{k}]"
                if not pattern:
                    raise _Invalid("pattern must not be empty", field=field_name)
                if pattern.startswith("!"):
                    raise _Invalid(
                        "negation patterns (starting with '!') are not supported",
                        pattern,
                        field=field_name,
                    )
                if "\\" in pattern:
                    raise _Invalid(
                        "patterns must use forward slashes, not backslashes",
                        pattern,
                        field=field_name,
                    )
    if not target:
        raise _Invalid("target is required", field=f"{where}.target")
    if not target.startswith("/"):
        raise _Invalid("target must be an absolute path", target, field=f"{where}.target")
    cleaned = posixpath.normpath(target).replace("//", "/")
    if cleaned == "/":
        raise _Invalid('target must not be the container root "/"', target, field=f"{where}.target")
    if cleaned in targets:
        raise _Invalid("duplicate weight target", target, field=f"{where}.target")
    for previous in targets:
        if cleaned.startswith(previous + "/") or previous.startswith(cleaned + "/"):
            raise _Invalid(
                f"target overlaps with {_go_quote(previous)}; weight targets must be disjoint",
                target,
                field=f"{where}.target",
            )
    targets.append(cleaned)


def _go_int(text: str) -> bool:
    """Whether Go's strconv.Atoi reads `text`."""
    return re.fullmatch(r"[+-]?[0-9]+", text) is not None


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


# pydantic's type errors as Cog's schema words its types (validate.go humanReadableSchemaType:
# an object is a mapping, an array a list); config_yaml refuses most wrong kinds before these.
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


def _cog_path(loc: tuple[Any, ...], data: Any) -> tuple[str | int, ...]:
    """A pydantic location as Cog names the place in the document: without union tags, and
    without the index pydantic gives one mapping it reads as a list of one (`source`)."""
    path: list[str | int] = []
    for part in loc:
        if part in (_WEIGHT_PATH, _WEIGHT_URI) or str(part).startswith("function-"):
            continue
        if isinstance(part, int) and isinstance(data, dict):
            continue
        path.append(part)
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            data = None
    return tuple(path)


def _schema_error(where: str, field: str, message: str) -> ConfigError:
    return ConfigError(
        f'{where}: schema error in "{visible(field) or where}": {message}',
        hint=f"fix {where} and retry",
    )


def _sentence(error: Any, where: str, data: Any = None) -> ConfigError:
    loc = _cog_path(error["loc"], data)
    path = ".".join(visible(str(p)) for p in loc)
    kind, retry = error["type"], f"fix {where} and retry"
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, _Invalid):
        value = "" if cause.value is None else f" {_go_quote(str(cause.value))}"
        return ConfigError(
            f"{where}: invalid {cause.field or path}{value}: {cause.message}", hint=retry
        )
    if isinstance(cause, _Schema):
        return _schema_error(where, cause.field or path, cause.message)
    if isinstance(cause, _Plain):
        return ConfigError(f"{where}: {cause}", hint=retry)
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _known_keys(CogConfig, loc[:-1]), n=1)
        hint = (
            f"did you mean {visible('.'.join([*map(str, loc[:-1]), close[0]]))}?" if close else None
        )
        return ConfigError(f"{where}: unknown key {path}", hint=hint or "remove it")
    if kind == "missing":  # the schema's `required`, named at the mapping that lacks the key
        parent = ".".join(visible(str(p)) for p in loc[:-1])
        return _schema_error(where, parent, f"{visible(str(loc[-1]))} is required")
    if kind in _EXPECTED:
        expected = _EXPECTED[kind]
        return _schema_error(where, path, f"must be {_article(expected)} {expected}")
    if kind == "literal_error":  # the schema's enum, as gojsonschema words it
        allowed = re.findall(r"'([^']*)'", str((error.get("ctx") or {}).get("expected", "")))
        listed = ", ".join(f'"{a}"' for a in allowed)
        return _schema_error(where, path, f"{path} must be one of the following: {listed}")
    message = error["msg"].removeprefix("Value error, ")  # our own rules' sentences
    where_in = f"{where}: {path}" if path else where  # a whole-file rule names its fields
    return ConfigError(f"{where_in}: {message}", hint=retry)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def parse_config(text: str, where: str = "cog.yaml", strict: bool = False) -> CogConfig:
    """cog.yaml's text as a config. Keys Cog does not know are left out, as Cog's YAML
    decoding drops them (`unknown_keys` says which, for a warning); `strict` refuses them."""
    data = _mapping(text, where)
    try:
        return CogConfig.model_validate(data)
    except ValidationError as e:
        unknown = [err for err in e.errors() if err["type"] == "extra_forbidden"]
        if strict or not unknown:
            raise _sentence(e.errors()[0], where, data) from None
    for error in unknown:  # validated again only when there were keys to leave out
        _drop(data, error["loc"])
    try:
        return CogConfig.model_validate(data)
    except ValidationError as e:
        raise _sentence(e.errors()[0], where, data) from None


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
    *parents, key = _cog_path(loc, data)
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
    data = _mapping(text, where)
    for error in _unknown(data):
        found.append(_sentence(error, where, data))
    return [f"warning: {e} is ignored" + (f" ({e.hint})" if e.hint else "") for e in found]


def _mapping(text: str, where: str) -> dict[str, Any]:
    """The document as Cog's decoder reads it (config_yaml), as plain data for the model."""
    try:
        data = config_yaml.load(text)
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
    _run_or_predict(data, where)
    try:
        read: dict[str, Any] = config_yaml.read(data)
    except RecursionError:
        raise _too_deep(where) from None
    except config_yaml.WrongKind as e:
        raise _schema_error(where, ".".join(map(str, e.path)), str(e)) from None
    return read


def _run_or_predict(data: dict[str, Any], where: str) -> None:
    """Cog's schema holds `not: {required: [run, predict]}`: both keys present is a breach,
    even where one is empty (both set is also its rule, which says more, and is left to it)."""
    run, predict = data.get("run"), data.get("predict")
    if run is not None and predict is not None and not (run and predict):
        raise _schema_error(where, "", "Must not validate the schema (not)")


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
    config = parse_config(text, "cog.yaml")
    requirements = config.build.python_requirements
    if requirements and not (project / requirements).exists():  # as Cog checks it, at load
        raise ConfigError(
            f"cog.yaml: invalid build.python_requirements {_go_quote(requirements)}: file does "
            "not exist",
            hint=f"create {requirements}, or fix build.python_requirements in cog.yaml",
        )
    return config


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
    data = _mapping(text, "cog.yaml")  # as Cog's decoder reads it: `pre_install: [~]` is none
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

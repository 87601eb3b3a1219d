"""What Cog says of a cog.yaml, computed from Cog's own artifacts (cog_config.json, which
extract_cog.py reads out of Cog's source), so that our loader can be compared with it case by
case without a Go toolchain.

Cog's `config.Load` (pkg/config/load.go) does three things, each reproduced here:
1. decode the YAML into its Go structs (go.yaml.in/yaml/v4 v4.0.0-rc.4): a key the structs do
   not have is dropped, null leaves a pointer or slice unset, a null item of a list is skipped,
   any scalar becomes a string field's text (`python_version: 3.10` is "3.10"), and a value of
   the wrong kind is a construct error (`line 3: cannot construct !!str `echo hi` into
   []config.runItemFile`), which ends the load;
2. validate the decoded struct, marshalled to JSON (so `omitempty` fields left empty are
   absent), against the JSON schema with gojsonschema, reporting the most specific error as
   `schema error in "FIELD": MESSAGE` (validate.go getMostSpecificSchemaError);
3. apply the rules of validate.go (`invalid FIELD "VALUE": MESSAGE`).
The errors of 2 and 3 are joined, one per line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

DATA = json.loads((Path(__file__).parent / "cog_config.json").read_text())
SCHEMA: dict[str, Any] = DATA["schema"]
STRUCTS: dict[str, list[dict[str, Any]]] = DATA["structs"]

MIN_PYTHON, MIN_PYTHON_CONCURRENCY, MIN_CUDA = (3, 10), (3, 11), 11  # pkg/config/config.go


class _Unset:
    """A Go field left nil (a pointer or slice), or an item the decoder skipped."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset()


@dataclass(frozen=True)
class Verdict:
    """Cog's answer: the lines of its error (none when it accepts) and the stage that
    refused: "decode" (the Go YAML decoder), or "validate" (schema and rules)."""

    lines: tuple[str, ...] = ()
    stage: str = "accepted"
    decoded: Any = None  # what the schema saw, for the report

    @property
    def accepted(self) -> bool:
        return not self.lines


# 1. The Go YAML decoder.

_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_INT = re.compile(r"[-+]?(0|[1-9][0-9_]*|0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+)")


def resolve(node: yaml.ScalarNode) -> tuple[str, Any]:
    """A plain scalar's YAML 1.2 tag and value, as go-yaml resolves it; quoted is a string."""
    text = node.value
    if node.style in ("'", '"', "|", ">") or (node.tag == "tag:yaml.org,2002:str" and node.style):
        return "!!str", text
    if text in ("", "~", "null", "Null", "NULL"):
        return "!!null", None
    if text in ("true", "True", "TRUE", "false", "False", "FALSE"):
        return "!!bool", text.lower() == "true"
    if _INT.fullmatch(text):
        return "!!int", int(text.replace("_", ""), 0)
    if _FLOAT.fullmatch(text):
        return "!!float", float(text)
    if text.lower() in (".inf", "+.inf", "-.inf", ".nan"):
        return "!!float", float(text.lower().replace(".", ""))
    return "!!str", text


_GO_BOOL = {"y", "Y", "yes", "Yes", "YES", "on", "On", "ON"}
_GO_NOT = {"n", "N", "no", "No", "NO", "off", "Off", "OFF"}


def go_name(go_type: str) -> str:
    """A type as Go's reflect names it in messages: config.buildFile, []string."""
    base = go_type.lstrip("*[]")
    prefix = go_type[: len(go_type) - len(base)].replace("*", "")
    qualified = base if base in ("string", "bool", "int") else f"config.{base}"
    return prefix + qualified


def is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and resolve(node)[0] == "!!null"


class Decoder:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def _tag_error(self, node: yaml.Node, go_type: str) -> None:
        if isinstance(node, yaml.ScalarNode):
            tag, _ = resolve(node)
            text = node.value if len(node.value) <= 10 else node.value[:7] + "..."
            what = f"{tag} `{text}`"
        else:
            what = "!!seq" if isinstance(node, yaml.SequenceNode) else "!!map"
        line = node.start_mark.line + 1
        self.errors.append(f"line {line}: cannot construct {what} into {go_name(go_type)}")

    def decode(self, node: yaml.Node, go_type: str) -> Any:
        """The value `node` decodes into for a field of `go_type`, as JSON marshals it: UNSET
        for a nil pointer or slice (or a value refused), ZERO for a null into anything else."""
        if is_null(node):
            return UNSET if go_type[0] in "*[" else ZERO
        go_type = go_type.lstrip("*")
        if go_type.startswith("[]"):
            if not isinstance(node, yaml.SequenceNode):
                self._tag_error(node, go_type)
                return UNSET
            items = [self.decode(item, go_type[2:]) for item in node.value]
            return [i for i in items if i is not UNSET and i is not ZERO]  # skipped, as Go does
        if go_type == "runItemFile":
            return self._run_item(node)
        if go_type == "WeightSourceList":
            return self._weight_sources(node)
        if go_type in STRUCTS:
            return self._struct(node, go_type)
        return self._scalar(node, go_type)

    def _scalar(self, node: yaml.Node, go_type: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            self._tag_error(node, go_type)
            return UNSET
        tag, value = resolve(node)
        if go_type == "string":
            return node.value
        if go_type == "bool":
            if tag == "!!bool":
                return value
            if node.value in _GO_BOOL | _GO_NOT:
                return node.value in _GO_BOOL
        if go_type == "int":
            if tag == "!!int":
                return value
            if tag == "!!float" and value == int(value):
                return int(value)
        self._tag_error(node, go_type)
        return UNSET

    def _struct(self, node: yaml.Node, go_type: str) -> Any:
        if not isinstance(node, yaml.MappingNode):
            self._tag_error(node, go_type)
            return UNSET
        fields = {f["yaml"]: f for f in STRUCTS[go_type]}
        values = {}
        for key, value in node.value:
            spec = fields.get(key.value) if isinstance(key, yaml.ScalarNode) else None
            if spec is not None:  # a key the struct lacks is dropped
                values[spec["json"]] = self.decode(value, spec["type"])
        return marshal(go_type, values)

    def _run_item(self, node: yaml.Node) -> Any:
        """runItemFile.UnmarshalYAML: a string is the command; a mapping is decoded again into
        {command, mounts}; anything else is refused with the Go type it decoded as."""
        line = node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode):
            tag, value = resolve(node)
            if tag == "!!str":
                return marshal("runItemFile", {"command": value})
            go = {"!!int": "int", "!!float": "float64", "!!bool": "bool"}[tag]
            self.errors.append(f"line {line}: unexpected type {go} for runItemFile")
            return UNSET
        if isinstance(node, yaml.SequenceNode):
            self.errors.append(f"line {line}: unexpected type []interface {{}} for runItemFile")
            return UNSET
        return self._struct(node, "runItemFile")

    def _weight_sources(self, node: yaml.Node) -> Any:
        """WeightSourceList.UnmarshalYAML: a list of sources, else one source; MarshalJSON
        writes one source as an object, any other number as a list."""
        if isinstance(node, yaml.SequenceNode):
            trial = Decoder()
            items = trial.decode(node, "[]WeightSourceConfig")
            if not trial.errors:
                return items[0] if len(items) == 1 else items
        trial = Decoder()
        single = trial._struct(node, "WeightSourceConfig")
        if trial.errors:
            line = node.start_mark.line + 1
            self.errors.append(
                f"line {line}: source must be an object or array of objects: yaml: construct "
                "errors:\n  " + "\n  ".join(trial.errors)
            )
            return UNSET
        return single


class _Zero:
    """null decoded into a string, bool, int or struct: its zero value (an item skipped)."""

    def __repr__(self) -> str:
        return "ZERO"


ZERO = _Zero()
_ZERO_JSON: dict[str, Any] = {"string": "", "bool": False, "int": 0, "WeightSourceList": None}


def marshal(go_type: str, values: dict[str, Any]) -> dict[str, Any]:
    """A struct as encoding/json writes it: `omitempty` leaves out a nil pointer, an empty
    slice and a zero value (never a pointer to one)."""
    out: dict[str, Any] = {}
    for spec in STRUCTS[go_type]:
        kind, value = spec["type"], values.get(spec["json"], UNSET)
        if value is ZERO or (value is UNSET and kind[0] not in "*["):
            value = _ZERO_JSON.get(kind)
        if value is UNSET:
            if spec["omitempty"]:
                continue
            value = None
        elif spec["omitempty"] and _empty(kind, value):
            continue
        out[spec["json"]] = value
    return out


def _empty(kind: str, value: Any) -> bool:
    """Go's zero values, which omitempty leaves out (a pointer to one is not empty)."""
    if kind[0] == "*":
        return False
    return value == "" or value == [] or value is False or (kind == "int" and value == 0)


# 2. gojsonschema (github.com/xeipuuv/gojsonschema), as far as Cog's schema uses it.


@dataclass
class SchemaError:
    field: str  # gojsonschema's Field(): the context path without "(root)."
    kind: str
    description: str
    expected: str = ""


@dataclass
class Result:
    errors: list[SchemaError] = field(default_factory=list)
    score: int = 0


def _context(path: tuple[str, ...]) -> str:
    return ".".join(path) if path else "(root)"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value == int(value) else "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _types(schema: dict[str, Any]) -> list[str]:
    kind = schema.get("type")
    return [] if kind is None else [kind] if isinstance(kind, str) else list(kind)


def _types_text(types: list[str]) -> str:
    return types[0] if len(types) == 1 else "[" + ",".join(types) + "]"


def validate(schema: dict[str, Any], value: Any, path: tuple[str, ...], result: Result) -> None:
    if "$ref" in schema:
        ref = schema["$ref"].removeprefix("#/").split("/")
        target: Any = SCHEMA
        for part in ref:
            target = target[part]
        validate(target, value, path, result)
        return
    types, given = _types(schema), _json_type(value)
    fits = given in types or (given == "integer" and "number" in types)
    if types and not fits:
        result.errors.append(
            SchemaError(
                _context(path),
                "invalid_type",
                f"Invalid type. Expected: {_types_text(types)}, given: {given}",
                _types_text(types),
            )
        )
        return
    _compose(schema, value, path, result)
    if isinstance(value, list):
        if "items" in schema:
            for i, item in enumerate(value):
                sub = Result()
                validate(schema["items"], item, (*path, str(i)), sub)
                result.errors += sub.errors
                result.score += sub.score
        if len(value) < schema.get("minItems", 0):
            result.errors.append(
                SchemaError(
                    _context(path),
                    "array_min_items",
                    f"Array must have at least {schema['minItems']} items",
                )
            )
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name in value:
                result.score += 1
            else:
                result.errors.append(SchemaError(_context(path), "required", f"{name} is required"))
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            for name in value:
                if name not in properties:
                    result.errors.append(
                        SchemaError(
                            _context(path),
                            "additional_property_not_allowed",
                            f"Additional property {name} is not allowed",
                        )
                    )
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(json.dumps(v) for v in schema["enum"])
        where = _context(path)
        result.errors.append(
            SchemaError(where, "enum", f"{where} must be one of the following: {allowed}")
        )
    if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
        result.errors.append(
            SchemaError(_context(path), "pattern", f"Does not match pattern '{schema['pattern']}'")
        )
    result.score += 1
    if isinstance(value, dict):
        for name, sub_schema in schema.get("properties", {}).items():
            if name in value:
                validate(sub_schema, value[name], (*path, name), result)
    result.score += 1


def _compose(schema: dict[str, Any], value: Any, path: tuple[str, ...], result: Result) -> None:
    """anyOf, oneOf, not: on failure, the combinator's error and then the errors of the
    branch that came closest (the highest score; the first on a tie)."""
    for key, kind, description in (
        ("anyOf", "number_any_of", "Must validate at least one schema (anyOf)"),
        ("oneOf", "number_one_of", "Must validate one and only one schema (oneOf)"),
    ):
        if key not in schema:
            continue
        passed, best = 0, None
        for branch in schema[key]:
            sub = Result()
            validate(branch, value, path, sub)
            if not sub.errors:
                passed += 1
                if key == "anyOf":
                    break
            elif passed == 0 and (best is None or sub.score > best.score):
                best = sub
        if passed == 0 or (key == "oneOf" and passed > 1):
            result.errors.append(SchemaError(_context(path), kind, description))
            if passed == 0 and best is not None:
                result.errors += best.errors
    if "not" in schema:
        sub = Result()
        validate(schema["not"], value, path, sub)
        if not sub.errors:
            result.errors.append(
                SchemaError(_context(path), "number_not", "Must not validate the schema (not)")
            )


def _human(expected: str) -> str:
    """validate.go humanReadableSchemaType."""
    if expected.startswith("["):
        parts = [_human(t.strip()) for t in expected[1:-1].split(",")]
        return f"{', '.join(parts[:-1])} or {parts[-1]}"
    return {"object": "mapping", "array": "list"}.get(expected, expected)


def schema_errors(document: Any) -> list[str]:
    """Every sentence Cog's getMostSpecificSchemaError may pick for `document` (gojsonschema
    visits properties in Go's random map order, so among the deepest errors any may be
    first); none when it is valid."""
    result = Result()
    validate(SCHEMA, document, (), result)
    errors = result.errors
    if not errors:
        return []
    depth = max(len(e.field.split(".")) for e in errors)
    deepest = [i for i, e in enumerate(errors) if len(e.field.split(".")) == depth]
    typed = [i for i in deepest if errors[i].kind == "invalid_type"]
    found = []
    for i in typed or deepest:
        error = errors[i]
        if error.kind == "invalid_type":
            message = f"must be a {_human(error.expected)}"
        elif error.kind in ("number_one_of", "number_any_of") and i + 1 < len(errors):
            message = errors[i + 1].description
        else:
            message = error.description
        where = "cog.yaml" if error.field == "(root)" else error.field
        found.append(f'schema error in "{where}": {message}')
    return list(dict.fromkeys(found))


# 3. validate.go's rules, over the decoded config (JSON, as the schema saw it).


def _quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _invalid(field_name: str, message: str, value: str = "") -> str:
    if value:
        return f"invalid {field_name} {_quoted(value)}: {message}"
    return f"invalid {field_name}: {message}"


DENIED_ENV = (
    *("PATH", "LD_LIBRARY_PATH", "PYTHONPATH", "VIRTUAL_ENV", "PYTHONUNBUFFERED"),
    *("R8_*", "REPLICATE_*", "LIBRARY_PATH", "CUDA_*", "NVIDIA_*", "NV_*", "PGET_*"),
    *("HF_ENDPOINT", "HF_HUB_ENABLE_HF_TRANSFER", "KUBERNETES_*"),
)
_WEIGHT_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_COMPONENT = r"[a-z0-9]+(?:[._-][a-z0-9]+)*"
_REPOSITORY = re.compile(rf"(?:[a-z0-9.-]+(?::\d+)?/)?{_COMPONENT}(?:/{_COMPONENT})*")


def rules(cfg: dict[str, Any], project: Path) -> list[str]:
    errors: list[str] = []
    run, predict, train = cfg.get("run") or "", cfg.get("predict") or "", cfg.get("train") or ""
    if run and predict:
        errors.append(_invalid("run", "only one of run or predict can be set"))
    else:
        for name, ref, example in (
            ("run", run, "run.py:Runner"),
            ("predict", predict, "predict.py:Predictor"),
        ):
            if ref and len(ref.split(".py:")) != 2:
                errors.append(_invalid(name, f"must be in the form '{example}'", ref))
    if train and len(train.split(".py:")) != 2:
        errors.append(_invalid("train", "must be in the form 'train.py:Trainer'", train))
    build = cfg.get("build")
    if build is not None:
        errors += _build(build, project)
    environment = cfg.get("environment") or []
    if environment:
        problem = _environment(environment)
        if problem:
            errors.append(_invalid("environment", problem))
    maximum = (cfg.get("concurrency") or {}).get("max")
    if maximum is not None:
        if maximum < 1:
            errors.append(_invalid("concurrency.max", "must be at least 1", str(maximum)))
        version = (build or {}).get("python_version")
        if maximum > 1 and version:
            parts = version.split(".")
            if len(parts) >= 2 and all(p.lstrip("-").isdigit() for p in parts[:2]):
                major, minor = int(parts[0]), int(parts[1])
                if major == MIN_PYTHON_CONCURRENCY[0] and minor < MIN_PYTHON_CONCURRENCY[1]:
                    need = ".".join(map(str, MIN_PYTHON_CONCURRENCY))
                    errors.append(
                        _invalid(
                            "concurrency.max",
                            f"concurrency requires Python {need} or higher",
                            str(maximum),
                        )
                    )
    errors += _model(cfg)
    errors += _weights(cfg)
    return errors


def _build(build: dict[str, Any], project: Path) -> list[str]:
    errors = []
    version = build.get("python_version") or ""
    if not version:
        errors.append(
            _invalid(
                "build.python_version",
                "python_version is required. Add it to the build section of your cog.yaml, "
                'e.g. `python_version: "3.13"`',
            )
        )
    else:
        problem = _python_version(version.strip())
        if problem:
            errors.append(_invalid("build.python_version", problem, version.strip()))
    requirements = build.get("python_requirements") or ""
    if build.get("python_packages") and requirements:
        errors.append(
            _invalid(
                "build", "only one of python_packages or python_requirements can be set, not both"
            )
        )
    if requirements and not (project / requirements).exists():
        errors.append(_invalid("build.python_requirements", "file does not exist", requirements))
    cuda = build.get("cuda") or ""
    if cuda:
        parts = cuda.split(".")
        if len(parts) < 2:
            errors.append(
                _invalid(
                    "build.cuda", "must include both major and minor versions (e.g., '11.8')", cuda
                )
            )
        elif not re.fullmatch(r"[-+]?\d+", parts[0]):
            errors.append(_invalid("build.cuda", "invalid major version number", cuda))
        elif int(parts[0]) < MIN_CUDA:
            errors.append(
                _invalid("build.cuda", f"minimum supported CUDA version is {MIN_CUDA}", cuda)
            )
    return errors


def _python_version(version: str) -> str | None:
    parts = version.split(".", 2)
    if len(parts) < 2:
        return "must include major and minor version (e.g., '3.11')"
    for part, which in zip(parts, ("major", "minor"), strict=False):
        if not re.fullmatch(r"[-+]?\d+", part):
            return f"invalid {which} version number"
    if (int(parts[0]), int(parts[1])) < MIN_PYTHON:
        return f"minimum supported Python version is {MIN_PYTHON[0]}.{MIN_PYTHON[1]}"
    return None


def _environment(items: list[str]) -> str | None:
    """env.go parseAndValidateEnvironment."""
    seen: set[str] = set()
    for item in items:
        name, eq, _ = item.partition("=")
        if not eq or not name:
            return f"environment variable {_quoted(item)} is not in the KEY=VALUE format"
        for pattern in DENIED_ENV:
            if name == pattern or (pattern.endswith("*") and name.startswith(pattern[:-1])):
                reserved = "is not allowed: reserved for internal use"
                return f"environment variable {_quoted(name)} {reserved}"
        if name in seen:
            return f"environment variable {_quoted(name)} is already defined"
        seen.add(name)
    return None


def _model(cfg: dict[str, Any]) -> list[str]:
    model, image = cfg.get("model") or "", cfg.get("image") or ""
    errors = []
    if model and image:
        errors.append(_invalid("model", "'model' and 'image' cannot both be set"))
    if model and not _REPOSITORY.fullmatch(model):
        if re.fullmatch(r".+(:[\w][\w.-]{0,127}|@sha256:[0-9a-f]{64})", model):
            errors.append(
                _invalid(
                    "model", "must be a bare repository — tags and digests are not allowed", model
                )
            )
        else:
            errors.append(_invalid("model", "invalid repository", model))
    return errors


def _weights(cfg: dict[str, Any]) -> list[str]:
    weights = cfg.get("weights") or []
    if not weights:
        return []
    errors = []
    model, image = cfg.get("model") or "", cfg.get("image") or ""
    if image and not model:
        errors.append(
            _invalid("image", "weights require 'model', not 'image' — rename 'image' to 'model'")
        )
    elif not model:
        errors.append(
            _invalid("model", "weights require 'model' in cog.yaml — rename 'image' to 'model'")
        )
    names: set[str] = set()
    targets: list[str] = []
    for i, weight in enumerate(weights):
        where = f"weights[{i}]"
        name = weight.get("name") or ""
        if not name:
            errors.append(_invalid(f"{where}.name", "name is required"))
        elif not _WEIGHT_NAME.fullmatch(name):
            errors.append(
                _invalid(
                    f"{where}.name",
                    "must contain only lowercase alphanumeric characters, hyphens, dots, or "
                    'underscores (e.g. "my-model-weights")',
                    name,
                )
            )
        elif name in names:
            errors.append(_invalid(f"{where}.name", "duplicate weight name", name))
        else:
            names.add(name)
        sources = weight.get("source")
        sources = [sources] if isinstance(sources, dict) else sources or []
        if not sources:
            errors.append(_invalid(f"{where}.source", "source is required"))
        for j, source in enumerate(sources):
            at = f"{where}.source" if len(sources) == 1 else f"{where}.source[{j}]"
            for key in ("include", "exclude"):
                for k, raw in enumerate(source.get(key) or []):
                    pattern = raw.strip()
                    if not pattern:
                        errors.append(_invalid(f"{at}.{key}[{k}]", "pattern must not be empty"))
                        continue
                    if pattern.startswith("!"):
                        errors.append(
                            _invalid(
                                f"{at}.{key}[{k}]",
                                "negation patterns (starting with '!') are not supported",
                                pattern,
                            )
                        )
                    if "\\" in pattern:
                        errors.append(
                            _invalid(
                                f"{at}.{key}[{k}]",
                                "patterns must use forward slashes, not backslashes",
                                pattern,
                            )
                        )
        target = weight.get("target") or ""
        if not target:
            errors.append(_invalid(f"{where}.target", "target is required"))
            continue
        if not target.startswith("/"):
            errors.append(_invalid(f"{where}.target", "target must be an absolute path", target))
        cleaned = str(PurePosixPath("/", target)) if target.startswith("/") else target
        if cleaned == "/":
            errors.append(
                _invalid(f"{where}.target", 'target must not be the container root "/"', target)
            )
        if cleaned in targets:
            errors.append(_invalid(f"{where}.target", "duplicate weight target", target))
            continue
        for prev in targets:
            if cleaned.startswith(prev.rstrip("/") + "/") or prev.startswith(cleaned + "/"):
                errors.append(
                    _invalid(
                        f"{where}.target",
                        f"target overlaps with {_quoted(prev)}; weight targets must be disjoint",
                        target,
                    )
                )
                break
        targets.append(cleaned)
    return errors


def cog_load(text: str, project: Path) -> Verdict:
    """What Cog's config.Load answers for a cog.yaml holding `text` in `project`."""
    if not text.strip():
        return Verdict(decoded={})
    root = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    decoder = Decoder()
    decoded = {} if root is None else decoder.decode(root, DATA["root_struct"])
    if decoder.errors:
        lines = ("failed to parse cog.yaml: invalid YAML: yaml: construct errors:",)
        return Verdict(lines + tuple(f"  {e}" for e in decoder.errors), "decode", decoded)
    decoded = {} if decoded is UNSET else decoded
    schema = schema_errors(decoded)
    errors = [*schema[:1], *rules(decoded, project)]
    # The alternatives gojsonschema's map order could have picked first stand with it.
    if not errors:  # config.Complete: with a GPU, the CUDA version is checked again
        errors = _complete(decoded.get("build") or {})
    lines = tuple(errors) + tuple(schema[1:])
    return Verdict(lines, "validate" if errors else "accepted", decoded)


def _complete(build: dict[str, Any]) -> list[str]:
    """config.go validateCudaVersion, which Complete runs where gpu is true."""
    cuda = build.get("cuda") or ""
    if not build.get("gpu") or not cuda:
        return []
    parts = cuda.split(".")
    if len(parts) < 2:
        return [f"CUDA version {_quoted(cuda)} must include both major and minor versions"]
    for part, which in zip(parts, ("major", "minor"), strict=False):
        if not re.fullmatch(r"[-+]?\d+", part):
            return [f"invalid {which} version in CUDA version {_quoted(cuda)}"]
    if int(parts[0]) < MIN_CUDA:
        return [f"minimum supported CUDA version is {MIN_CUDA}, requested {_quoted(cuda)}"]
    return []


def schema_wording(document: Any) -> list[str]:
    """How Cog's schema words what is wrong with `document` as written (not decoded): the
    sentences our loader uses where Cog's decoder refuses first, in Go's terms. Cog's
    `must be a %s` is given its English article (`must be an integer`)."""
    sentences = schema_errors(_without_nulls(document))
    return [re.sub(r"must be a (?=[aeiou])", "must be an ", s) for s in sentences]


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value if v is not None]
    return value

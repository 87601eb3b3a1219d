"""The build-time schema's cases, every one from Cog's own data (cog_schema.json):

- `script:` each of Cog's integration scripts that builds a project: Cog accepts it (and its
  label must match the script's patterns) or refuses it (stderr must match);
- `unit:` each predictor of Cog's parser unit tests: accepted, or refused with the error
  kind and the words the test asserts;
- `message:` each refusal sentence of Cog's generator, set off by a predictor written here
  for it: the expected text is Cog's format string filled with the case's values;
- `type:` each primitive type of Cog's table, as an input, a list input, an optional input
  and an output: the expected JSON is Cog's table's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DATA: dict[str, Any] = json.loads((Path(__file__).parent / "cog_schema.json").read_text())


@dataclass(frozen=True)
class Case:
    id: str
    files: dict[str, str]
    predict: str | None = "predict.py:Predictor"
    train: str | None = None
    refused: bool = False
    message: str | None = None  # the exact sentence (message cases)
    contains: tuple[str, ...] = ()  # words the refusal holds (unit cases)
    patterns: tuple[tuple[bool, str], ...] = ()  # (negated, regex) on stderr or the label
    properties: dict[str, Any] = field(default_factory=dict)  # Input property → Cog's JSON
    output: dict[str, Any] | None = None  # Cog's Output schema
    sdk_version: str | None = None
    concurrency: int | None = None  # cog.yaml's concurrency.max


def go_format(template: str, args: list[Any]) -> str:
    """Go's fmt.Sprintf for the verbs Cog's messages use."""
    out, i, values = [], 0, iter(args)
    while i < len(template):
        ch = template[i]
        if ch == "%" and i + 1 < len(template):
            verb = template[i + 1]
            i += 2
            if verb == "%":
                out.append("%")
                continue
            value = next(values)
            if verb == "q":
                out.append(json.dumps(str(value), ensure_ascii=False))
            else:
                out.append(str(value))
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _cog_yaml(files: dict[str, str]) -> tuple[Any, Any, Any, Any]:
    try:
        config = yaml.safe_load(files["cog.yaml"]) or {}
    except yaml.YAMLError:
        return None, None, None, None
    predict = config.get("run") or config.get("predict")
    build = config.get("build") or {}
    return (
        predict,
        config.get("train"),
        build.get("sdk_version"),
        (config.get("concurrency") or {}).get("max"),
    )


def script_cases() -> list[Case]:
    found = []
    for script in DATA["scripts"]:
        predict, train, sdk, concurrency = _cog_yaml(script["files"])
        if not predict and not train:
            continue
        checks = script["stderr"] if script["refused"] else script["label"]
        found.append(
            Case(
                f"script: {script['script']}",
                script["files"],
                predict,
                train,
                refused=script["refused"],
                patterns=tuple((c["negated"], c["pattern"]) for c in checks),
                sdk_version=sdk,
                concurrency=concurrency,
            )
        )
    return found


def unit_cases() -> list[Case]:
    found = []
    for unit in DATA["unit_cases"]:
        files = {"predict.py": unit["source"], **unit["files"]}
        ref = f"predict.py:{unit['ref']}"
        found.append(
            Case(
                f"unit: {unit['test']}",
                files,
                None if unit["mode"] == "train" else ref,
                ref if unit["mode"] == "train" else None,
                refused=unit["refused"],
                contains=tuple(unit["contains"]),
            )
        )
    return found


_HEAD = (
    "from typing import Any, Dict, Iterator, List, Optional, Tuple, Union\n"
    "from cog import BasePredictor, BaseModel, ConcatenateIterator, File, Input, Path, Secret\n"
    "from cog import concurrent, streaming\n"
)


def _predictor(params: str = "self, x: str", returns: str = " -> str", decorator: str = "") -> str:
    head = f"{_HEAD}\n\nclass Predictor(BasePredictor):\n{decorator}"
    return f"{head}    def predict({params}){returns}:\n        pass\n"


# Each raised message (function: template) → (files, predict ref, train ref, Cog's values).
TRIGGERS: dict[str, tuple[dict[str, str], str | None, str | None, list[Any]]] = {
    "errInvalidPredictRef: invalid predict reference '%s'": (
        {"predict.py": _predictor()},
        "predict.py",
        None,
        ["predict.py"],
    ),
    "errOptionalOutput: unsupported output type": (
        {"predict.py": _predictor(returns=" -> Optional[str]")},
        None,
        None,
        [],
    ),
    "errConcatIteratorNotStr: ConcatenateIterator element": (
        {"predict.py": _predictor(returns=" -> ConcatenateIterator[int]")},
        None,
        None,
        ["int"],
    ),
    "errUnresolvableImportedType: cannot resolve type '%s' (imported": (
        {
            "predict.py": "from transformers import AutoTokenizer\n"
            + _predictor(returns=" -> AutoTokenizer")
        },
        None,
        None,
        ["AutoTokenizer", "transformers", "AutoTokenizer"],
    ),
    "errUnresolvableType: cannot resolve type '%s' - it": (
        {"predict.py": _predictor(returns=" -> MysteryType")},
        None,
        None,
        ["MysteryType"],
    ),
    "cleanSourceFilePath: predictor source path": (
        {"predict.py": _predictor()},
        "../predict.py:Predictor",
        None,
        ["../predict.py"],
    ),
    "GenerateCombined: predict schema: %w": (
        {
            "predict.py": _predictor(returns=""),
            "train.py": _predictor().replace("predict(", "train("),
        },
        "predict.py:Predictor",
        "train.py:Predictor",
        ["predict"],
    ),
    "GenerateCombined: train schema: %w": (
        {
            "predict.py": _predictor(),
            "train.py": _predictor(returns="").replace("predict(", "train("),
        },
        "predict.py:Predictor",
        "train.py:Predictor",
        ["train"],
    ),
    "resolveGenericSchemaType: unsupported type: dict expects": (
        {"predict.py": _predictor(returns=" -> Dict[str]")},
        None,
        None,
        [],
    ),
    "resolveGenericSchemaType: unsupported type: Optional expects": (
        {"predict.py": _predictor(returns=" -> Optional[str, int]")},
        None,
        None,
        [],
    ),
    "resolveGenericSchemaType: unsupported type: list expects": (
        {"predict.py": _predictor(returns=" -> List[str, int]")},
        None,
        None,
        [],
    ),
    "resolveGenericSchemaType: unsupported type: Iterator expects": (
        {"predict.py": _predictor(returns=" -> Iterator[str, int]")},
        None,
        None,
        [],
    ),
    "resolveGenericSchemaType: unsupported type: ConcatenateIterator expects": (
        {"predict.py": _predictor(returns=" -> ConcatenateIterator[str, int]")},
        None,
        None,
        [],
    ),
    "resolveGenericSchemaType: unsupported type: ConcatenateIterator element": (
        {"predict.py": _predictor(returns=" -> ConcatenateIterator[List[str]]")},
        None,
        None,
        [],
    ),
    "resolveGenericSchemaType: unsupported type: %s[...] is not a supported output": (
        {"predict.py": _predictor(returns=" -> Tuple[str]")},
        None,
        None,
        ["Tuple"],
    ),
    "resolveUnionSchemaType: unsupported type: union types are not": (
        {"predict.py": _predictor(returns=" -> Union[str, int]")},
        None,
        None,
        [],
    ),
    "resolveGenericSchemaType: resolving dict value type": (
        {"predict.py": _predictor(returns=" -> Dict[str, Tuple[int]]")},
        None,
        None,
        ["unsupported type: Tuple[...] is not a supported output type"],
    ),
    "resolveModelToSchemaType: field %q": (
        {
            "predict.py": _HEAD
            + "\nclass Out(BaseModel):\n    x: Mystery\n\n"
            + _predictor(returns=" -> Out").split("\n", 3)[3]
        },
        None,
        None,
        [
            "x",
            "cannot resolve type 'Mystery' - it is not a primitive type (str, int, float, bool, "
            "Path) and no BaseModel definition was found in the predict file",
        ],
    ),
    "ValidateInputField: unsupported type: constraints": (
        {"predict.py": _predictor("self, x: Union[str, int] = Input(ge=1)")},
        None,
        None,
        [],
    ),
    "resolveInputType: unsupported type: %s": (
        {"predict.py": _predictor("self, x: Mystery")},
        None,
        None,
        ["Mystery"],
    ),
    "resolveInputType: unsupported type: Optional expects": (
        {"predict.py": _predictor("self, x: Optional[str, int]")},
        None,
        None,
        [2],
    ),
    "resolveInputType: unsupported type: List expects": (
        {"predict.py": _predictor("self, x: List[str, int]")},
        None,
        None,
        [2],
    ),
    "resolveInputType: unsupported type: nested generics": (
        {"predict.py": _predictor("self, x: List[Optional[str]]")},
        None,
        None,
        [],
    ),
    "resolveInputType: unsupported type: %s[...] is not a supported input": (
        {"predict.py": _predictor("self, x: Tuple[str]")},
        None,
        None,
        ["Tuple"],
    ),
    "resolveInputUnion: unsupported type: nested union": (
        {"predict.py": _predictor("self, x: Union[Union[str, int], float]")},
        None,
        None,
        [],
    ),
    "resolveInputUnion: unsupported type: union inputs must": (
        {"predict.py": _predictor("self, x: Union[None]")},
        None,
        None,
        [],
    ),
    "validateUnionVariant: unsupported type: nested nullable": (
        {"predict.py": _predictor("self, x: Union[Optional[str], int]")},
        None,
        None,
        [],
    ),
    "validateUnionVariant: unsupported type: %s is not supported": (
        {"predict.py": _predictor("self, x: Union[Path, str]")},
        None,
        None,
        ["Path"],
    ),
    "decoratorCogConcurrentMax: @concurrent only supports": (
        {"predict.py": _predictor("self, x: str", decorator="    @concurrent(2)\n")},
        None,
        None,
        [],
    ),
    "decoratorCogConcurrentMax: @concurrent max must be an integer": (
        {"predict.py": _predictor("self, x: str", decorator="    @concurrent(max=2.5)\n")},
        None,
        None,
        [],
    ),
    "decoratorCogConcurrentMax: @concurrent max must be at least": (
        {"predict.py": _predictor("self, x: str", decorator="    @concurrent(max=0)\n")},
        None,
        None,
        [],
    ),
    "parseTypeAnnotation: unsupported type: non-union binary": (
        {"predict.py": _predictor("self, x: str + int")},
        None,
        None,
        [],
    ),
    "parseTypeAnnotation: unsupported type: string annotation": (
        {"predict.py": _predictor('self, x: "List[str"')},
        None,
        None,
        ['"List[str"'],
    ),
    "parseTypeAnnotation: unsupported type: %s: %s": (
        {"predict.py": _predictor("self, x: make_type()")},
        None,
        None,
        ["call", "make_type()"],
    ),
    "extractInputs: parameter '%s' on %s has no type": (
        {"predict.py": _predictor("self, x=1")},
        None,
        None,
        ["x", "predict"],
    ),
    "parseTypedParameter: typed_parameter has no identifier": (
        {"predict.py": _predictor("self, *args: str")},
        None,
        None,
        [],
    ),
    "parseTypedDefaultParameter: parameter '%s': default": (
        {"predict.py": _predictor("self, x: str = make_default()")},
        None,
        None,
        ["x", "make_default()"],
    ),
    "parseInputCall: parameter '%s': default_factory": (
        {"predict.py": _predictor("self, x: List[str] = Input(default_factory=list)")},
        None,
        None,
        ["x"],
    ),
    "parseInputCall: parameter '%s': choices": (
        {"predict.py": _predictor("self, x: str = Input(choices=load_choices())")},
        None,
        None,
        ["x"],
    ),
    "inputFieldWithInfo: accept is only valid": (
        {"predict.py": _predictor('self, x: str = Input(accept="text/plain")')},
        None,
        None,
        ["x"],
    ),
    "ParseMetadataWithOptions: @concurrent(max > 1)": (
        {"predict.py": _predictor("self, x: str", decorator="    @concurrent(max=2)\n")},
        None,
        None,
        [],
    ),
    "resolveOutputPhase: %s": ({"predict.py": _predictor(returns="")}, None, None, ["predict"]),
    "resolveOutputPhase: @streaming requires": (
        {"predict.py": _predictor("self, x: str", decorator="    @streaming\n")},
        None,
        None,
        [],
    ),
    "findTargetCallableNode: %s": (
        {"predict.py": _predictor()},
        "predict.py:Missing",
        None,
        ["Missing"],
    ),
    "findPredictMethodInClass: %s must define run()": (
        {"predict.py": _predictor().replace("def predict(", "def setup(")},
        None,
        None,
        ["Predictor"],
    ),
    "findNamedMethodInClass: %s.%s not found": (
        {"predict.py": _predictor()},
        None,
        "predict.py:Predictor",
        ["Predictor", "train"],
    ),
    "ValidateSDKVersion: SDK version": (
        {"predict.py": _predictor()},
        None,
        None,
        ["0.16.12", "0.17.0"],
    ),
    "configWithDecoratorConcurrency: concurrency.max > 1": (
        {"predict.py": _predictor()},
        None,
        None,
        [],
    ),
    "validateEffectiveConcurrency: concurrency.max > 1": (
        {"predict.py": _predictor()},
        None,
        None,
        [],
    ),
}
CONCURRENCY = {
    "configWithDecoratorConcurrency: concurrency.max > 1": 2,
    "validateEffectiveConcurrency: concurrency.max > 1": 2,
}
SDK_VERSIONS = {"ValidateSDKVersion: SDK version": "0.16.12"}


def message_id(message: dict[str, Any]) -> str:
    return f"{message['function']}: {message['template']}"


def trigger_for(message: dict[str, Any]) -> tuple[str, tuple[Any, ...]] | None:
    key = message_id(message)
    matches = [prefix for prefix in TRIGGERS if key.startswith(prefix)]
    if not matches:
        return None
    longest = max(matches, key=len)
    return longest, TRIGGERS[longest]


def message_cases() -> list[Case]:
    found = []
    for message in DATA["messages"]:
        match = trigger_for(message)
        if match is None:
            continue
        prefix, (files, predict, train, args) = match
        if predict is None and train is None:
            predict = "predict.py:Predictor"
        found.append(
            Case(
                f"message: {message_id(message)}",
                files,
                predict,
                train,
                refused=True,
                message=go_format(message["template"], args),
                sdk_version=SDK_VERSIONS.get(prefix),
                concurrency=CONCURRENCY.get(prefix),
            )
        )
    return found


def type_cases() -> list[Case]:
    found = []
    for prim, json_type in sorted(DATA["json_types"].items()):
        array = {"type": "array", "items": json_type}
        for shape, annotation, prop, required in (
            ("input", prim, json_type, True),
            ("list input", f"List[{prim}]", array, True),
            ("optional input", f"Optional[{prim}]", {**json_type, "nullable": True}, False),
        ):
            expected = {"title": "X", "x-order": 0, **prop}
            found.append(
                Case(
                    f"type: {prim} as {shape}",
                    {"predict.py": _predictor(f"self, x: {annotation}")},
                    properties={"x": (expected, required)},
                )
            )
        found.append(
            Case(
                f"type: {prim} as output",
                {"predict.py": _predictor(returns=f" -> {prim}")},
                output={**json_type, "title": "Output"},
            )
        )
    return found


def cases() -> list[Case]:
    return [*script_cases(), *unit_cases(), *message_cases(), *type_cases()]

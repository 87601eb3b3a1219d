"""Build-time schema: where ours answers otherwise than Cog, and the refusal sentences of
Cog's generator that no project can set off, each with its reason."""

from __future__ import annotations

NOT_SCHEMA = (
    "Cog refuses this project before or after its schema, not in the schema generator: "
    "{where}; ours refuses it there too, which the {report} report compares"
)

ALLOWED: dict[str, str] = {
    "script: build_torch_version_required.txtar": NOT_SCHEMA.format(
        where="cog.yaml's validation (a CUDA build needs a torch version)", report="cog.yaml"
    ),
    "script: python37_deprecated.txtar": NOT_SCHEMA.format(
        where="cog.yaml's validation (Python below 3.10)", report="cog.yaml"
    ),
    "script: python38_deprecated.txtar": NOT_SCHEMA.format(
        where="cog.yaml's validation (Python below 3.10)", report="cog.yaml"
    ),
    "script: python39_deprecated.txtar": NOT_SCHEMA.format(
        where="cog.yaml's validation (Python below 3.10)", report="cog.yaml"
    ),
    "script: input_validation_before_build.txtar": NOT_SCHEMA.format(
        where="the command line's check of -i inputs against the schema", report="CLI"
    ),
    "script: wheel_coglet_missing.txtar": NOT_SCHEMA.format(
        where="the wheel that COG_WHEEL names is missing", report="CLI"
    ),
    "script: invalid_int_validation.txtar": (
        "a default outside its own bounds: Cog's generator writes it, and kin-openapi's "
        "check of the finished document refuses it; ours refuses it in the same build, when "
        "the image's SDK reads the signature, with `invalid default for input 'num': must be "
        "at minimum 2` (tests/builders/test_image.py), which holds both words the script looks for"
    ),
}

# Sentences of Cog's generator that no project reaches (function: template prefix → why).
UNREACHABLE: dict[str, str] = {
    "ResolveFieldType:": "ResolveFieldType is not on the parser's path (inputs use "
    "ResolveInputType); its sentences cannot be produced by a project",
    "parsePredictorInfo: unsupported parser type": "a programming error inside Cog",
    "GenerateCombined: no predict or train reference provided": "GenerateSchema refuses the "
    "same case first",
    "GenerateSchema: no predict or train reference": "ours refuses a cog.yaml without run:, "
    "predict: and train: earlier, in `cog build` itself: `cog.yaml says no predictor: there "
    "is no run: (or predict:) to build an image of`",
    "resolveSchemaType: unsupported type: Annotated expects": "a subscript always has an argument",
    "resolveFieldSchemaType: unsupported type: Annotated expects": "a subscript always has an "
    "argument",
    "resolveInputType: unsupported type: Annotated expects": "a subscript always has an argument",
    "resolveSchemaType: unsupported type: unknown type annotation": "every annotation is a "
    "name, a subscript or a union",
    "resolveInputType: unsupported type: unknown type annotation": "every annotation is a name, "
    "a subscript or a union",
    "validateUnionVariant: unsupported type: nested union": "a union inside a union is refused "
    "before its variants are checked",
    "parseTypeAnnotation: subscript has no value": "tree-sitter's subscript always has one",
    "parseTypeAnnotation: binary_operator missing operand": "tree-sitter's operator always has "
    "both",
    "decoratorCogConcurrentMax: @concurrent max is too large": "a literal above the largest "
    "int64 is no integer to Go's parser, so `must be an integer literal` comes first",
    "parseTypedParameter: parameter": "a typed parameter always has its type",
    "parseTypedDefaultParameter: typed_default_parameter has no name": "always has one",
    "parseTypedDefaultParameter: parameter": "a typed parameter always has its type",
    "parseModulePhase: tree-sitter parse failed": "tree-sitter reads any text, past syntax "
    "errors. Ours reads Python with `ast`, which stops at a syntax error: such a file is "
    "refused here with the error's line (`predict.py, line N: invalid syntax`) where Cog "
    "may still find a signature",
    "normalizeSourcePath: source path": "the path was cleaned and checked before "
    "(`predictor source path ... is outside source directory`)",
    "extractInputsPhase: function has no parameters node": "a function always has one",
    "resolveOutputPhase: @concurrent(max > 1)": "the same sentence from the predictor's "
    "metadata comes first, as the build reads that before the schema",
    "buildRunnerInfoPhase:": "a check of the parser's own phases",
    "runPhases:": "a check of the parser's own phases",
    "requirePhase:": "a check of the parser's own phases",
    "findPredictMethodInClass: %s.run not found": "only with DisableLegacyPredict, an option "
    "Cog's build never sets",
    "findNamedMethodInClass: class %s has no body": "a class always has a body",
    "addConcurrencyToCustomDockerfileImage:": "a Docker build step (a custom Dockerfile), "
    "which this re-implementation has not",
    "validateEffectiveConcurrency: concurrency requires Python": "checked when cog.yaml is "
    "loaded (derivations.config, the same sentence), which the cog.yaml report compares",
}


def reason(case_id: str) -> str | None:
    return ALLOWED.get(case_id)


def unreachable(message_id: str) -> str | None:
    for prefix, why in UNREACHABLE.items():
        if message_id.startswith(prefix):
            return why
    return None

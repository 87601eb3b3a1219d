"""Where our command line differs from Cog's, and why. Keys are row ids of cli_compare (fnmatch
patterns, the first that matches gives the reason; "as KEY" borrows another's); an entry no row
needs fails the test, so the list stays true. Reasons that start with "Known:" are differences
not settled yet, each naming where the fix belongs."""

from __future__ import annotations

_COMPAT = (
    "a flag of Cog's Dockerfile generator: accepted, and answered with a note when given "
    "(cog/cli/compat.py), but left out of --help, since it changes nothing here"
)

CLI: dict[str, str] = {
    # Commands.
    "cog playground": (
        "a browser UI that Cog serves from web assets built into its binary, to try a running "
        "model; not part of this re-implementation: any OpenAPI client works with what `cog "
        "serve` publishes at /openapi.json"
    ),
    "cog weights status": (
        "Known: not implemented; it needs a status service in cog/project/weights (weights.lock "
        "against cog.yaml and the registry), which this task does not change"
    ),
    "cog debug: arguments": (
        "Cog ignores words after `cog debug`; ours takes a subcommand there, `cog debug "
        "derivation PATH…`, and refuses other words"
    ),
    "cog login: arguments": (
        "ours names the registry to log in to as an argument (`cog login [REGISTRY]`, r8.im by "
        "default); Cog takes it from its hidden --registry flag"
    ),
    "cog serve: arguments": (
        "ours also serves a built IMAGE (a store path, an OCI directory or a registry "
        "reference) besides the project here; Cog's `cog serve` takes no argument"
    ),
    # Root flags, on every command in Cog.
    "cog --profile: accepted": (
        "hidden in Cog: Go's pprof profile of Cog's own binary, which has no counterpart here"
    ),
    "cog * --profile: persistent": "as cog --profile: accepted",
    "cog --registry: accepted": (
        "hidden in Cog: the registry host its login and push default to; here `cog login` names "
        "its registry and `cog push` takes it from the image's name"
    ),
    "cog * --registry: persistent": "as cog --registry: accepted",
    "cog * --version: persistent": (
        "Cog parses --version after a command and does nothing with it (only its root prints "
        "the version); ours prints it as `cog --version` and refuses it after a command"
    ),
    # Flags.
    "cog * --progress: --help": _COMPAT,
    "cog * --no-cache: --help": _COMPAT,
    "cog * --separate-weights: --help": _COMPAT,
    "cog * --use-cuda-base-image: --help": _COMPAT,
    "cog * --use-cog-base-image: --help": _COMPAT,
    "cog * --use-cog-base-image: forms": (
        "ours takes `--use-cog-base-image=false`, the form Cog's users write to turn it off, "
        "which argparse allows only as an optional value: a word right after the flag is read "
        "as that value (`cog run --use-cog-base-image IMAGE` takes IMAGE for it), where pflag "
        "leaves it an argument; put the flag after IMAGE"
    ),
    # Values.
    "--secret *env*": (
        "Known: builders/run_step.py parse_secrets reads a secret from a file only; Cog (as "
        "BuildKit) also takes one from an environment variable (`env=NAME`, `type=env`)"
    ),
    "-e A": (
        "Known: cog/cli/values.py parse_env wants NAME=VALUE; Cog hands `-e NAME` to `docker "
        "run`, which takes NAME's value from the environment it runs in"
    ),
    "--json null": (
        "ours says --json must be a JSON object of inputs; Go decodes `null` into an empty map, "
        "so Cog runs with no inputs"
    ),
}

_COERCION = (
    "Known: cog/project/inputs.py types an input by its schema's `type` alone (the service "
    "this task does not change); Cog's CLI also coerces to the members of a union (anyOf) "
    "and checks the value against them"
)
INPUTS: dict[str, str] = {
    "-i * | *: *": _COERCION,
    '-i *: -i x="quoted"': (
        "Known: Cog drops the double quotes around a whole -i value (`-i 'x=\"a b\"'`); "
        "cog/cli/values.py parse_inputs keeps them"
    ),
    "-i str: -i x=[*": (
        "Known: cog/cli/values.py parses a value that starts with `[` as a JSON list before "
        "the schema is known; Cog does that only for a list input, and sends the text to a "
        "string input"
    ),
    "-i Path: -i x=[*": "as -i str: -i x=[*",
    "-i Secret: -i x=[*": "as -i str: -i x=[*",
    "-i *: -i x=5_000": (
        "Known: cog/project/inputs.py reads numbers with Python's int()/float(), which take "
        "digit separators; Cog's strconv.ParseInt/ParseFloat do not, and its check refuses the "
        "text"
    ),
    "-i *bool*: -i x=True": (
        "Known: cog/project/inputs.py takes any case of true/false; Cog only `true` and `false`"
    ),
    "-i dict: *": (
        "Known: Cog sends an object input's value as raw JSON (refused where it is not JSON); "
        "cog/project/inputs.py sends the text as a string"
    ),
    "-i list[*]: -i x=@input.txt": (
        "ours sends one @file given to a list input as a list of that file; Cog sends the file "
        "alone, which its own check of the list then refuses"
    ),
}

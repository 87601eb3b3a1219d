"""Where our command line differs from Cog's, and why. Keys are row ids of cli_compare (fnmatch
patterns, the first that matches gives the reason; "as KEY" borrows another's); an entry no row
needs fails the test, so the list stays true. Reasons that start with "Known:" are differences
not settled yet, each naming where the fix belongs."""

from __future__ import annotations

CLI: dict[str, str] = {
    # Commands.
    "cog playground": (
        "a browser UI that Cog serves from web assets built into its binary, to try a running "
        "model; not part of this re-implementation: any OpenAPI client works with what `cog "
        "serve` publishes at /openapi.json"
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
    "cog * --use-cog-base-image: forms": (
        "ours takes `--use-cog-base-image=false`, the form Cog's users write to turn it off, "
        "which argparse allows only as an optional value: a word right after the flag is read "
        "as that value (`cog run --use-cog-base-image IMAGE` takes IMAGE for it), where pflag "
        "leaves it an argument; put the flag after IMAGE"
    ),
    # Values.
    "--json null": (
        "ours says --json must be a JSON object of inputs; Go decodes `null` into an empty map, "
        "so Cog runs with no inputs"
    ),
}

INPUTS: dict[str, str] = {
    "-i *: -i x=4294967296": (
        "ours reads an integer whole (a Python int); Cog's CLI reads one as an int32, so "
        "beyond 2^31 it is text, which an integer input refuses (a seed such as 4294967296 "
        "cannot be given there) and a union with a string sends as a string"
    ),
    "-i list[*]: -i x=@input.txt": (
        "ours sends one @file given to a list input as a list of that file; Cog sends the file "
        "alone, which its own check of the list then refuses"
    ),
}

"""Where our reading of cog.yaml differs from Cog's on purpose, and why. Keys are case ids
(fnmatch patterns) of config_cases; an entry that no longer differs fails the test, so the list
stays true."""

from __future__ import annotations

# Cases Cog accepts and we refuse, or the other way round.
VERDICT: dict[str, str] = {
    "build.system_packages.0: integer": (
        "system_packages items must be Debian package names: a lock resolves them against the "
        "channel's archive, so a name no archive can have is refused when cog.yaml is read; "
        "Cog hands any text to apt-get, which refuses it during the build"
    ),
    "build.system_packages.0: empty string": "as build.system_packages.0: integer",
    "model: null": (
        "weights without `model`: we refuse when a weight command needs the registry (`weight "
        "commands require a model ref`, with COG_MODEL / COG_MODEL_REPO as the way out), as "
        "Cog's own validateModel comment intends; Cog's validateWeights refuses at load"
    ),
    "model: empty string": "as model: null",
    "rule: image and weights": "as model: null",
    "weights.0.source: string": (
        "a weight's source may be a path in the project (`source: weights/model.bin`, with "
        "`target`): the local weights form of earlier Cog releases, kept so those projects "
        "build; Cog now refuses any source but a mapping or a list of them"
    ),
}

# Cases both refuse where our sentence is not one of Cog's.
WORDING: dict[str, str] = {
    "file: a list": (
        "a cog.yaml that is not a mapping: `cog.yaml must be a mapping of keys (build, "
        "predict, …)` and a hint says how to write it; Cog's decoder says `cannot construct "
        "!!seq into config.configFile`"
    ),
    "file: a string": "as file: a list",
}

# Every case Cog's Go decoder refuses (a value of the wrong kind) is worded as Cog's schema
# words that field, never as the decoder does.
DECODER = (
    "Cog's YAML decoder refuses it before its schema is checked, in Go's terms (`failed to "
    "parse cog.yaml: invalid YAML: yaml: construct errors: line 9: cannot construct !!str "
    "`text` into []config.runItemFile`); we say it in its schema's words, naming the field "
    '(`schema error in "build.run": must be a list or null`)'
)

# Differences that change no verdict and no error.
NOTES: dict[str, str] = {
    "unknown keys": (
        "a key Cog's structs do not have is dropped by both; we also print a warning naming "
        "the closest known key (`cog doctor` reports it as an error)"
    ),
    "several errors": (
        "Cog joins every error it finds, one per line; we report one sentence with a hint, "
        "and the test requires it to be one of Cog's lines"
    ),
}

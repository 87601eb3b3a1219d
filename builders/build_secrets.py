"""`--secret` values, read as Cog reads them (BuildKit's syntax, pkg/docker/build_secrets.go):
`id=NAME,src=FILE` (or `source=`), `id=NAME,env=VAR`, `type=file|env` with `src=` naming the
file or the variable, and a bare `id=NAME`, which is the variable NAME where it is set, else the
file NAME. A `build.run` step that mounts a secret sees its value as a read-only file at the
mount's target, whichever the source (as in Cog, whose steps mount secrets with
`RUN --mount=type=secret,id=…,target=…`).

A variable is read when the step that mounts it runs, into a file of that build's private
scratch directory (removed after the build): its value is never part of a derivation, the lock,
a layer or a log.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from builders.errors import BuildError
from derivations.config import ConfigError

_HINT = "use --secret id=NAME,src=FILE or --secret id=NAME,env=VARIABLE"


@dataclass(frozen=True)
class EnvSecret:
    """A secret whose value is this environment's variable `name`."""

    name: str


SecretSource = Path | EnvSecret
Secrets = Mapping[str, SecretSource]


def parse_secrets(specs: Sequence[str], cwd: Path) -> dict[str, SecretSource]:
    """Each `--secret` value (a line of comma-separated fields, quotes allowed, as CSV)
    by its id; a file is read from `cwd` where relative and must exist."""
    found: dict[str, SecretSource] = {}
    for spec in specs:
        ident, source = _parse(spec, cwd)
        found[ident] = source
    return found


def _parse(spec: str, cwd: Path) -> tuple[str, SecretSource]:
    kind = ident = src = env = ""
    for field in next(csv.reader([spec]), []):
        key, eq, value = field.partition("=")
        if not eq:
            raise _refused(spec, f"invalid field {json.dumps(field)} must be a key=value pair")
        key = key.lower()
        if key == "type":
            if value not in ("file", "env"):
                raise _refused(spec, f"unsupported secret type {json.dumps(value)}")
            kind = value
        elif key == "id":
            ident = value
        elif key in ("src", "source"):
            src = value
        elif key == "env":
            env = value
        else:
            raise _refused(spec, f"unexpected key '{key}' in '{field}'")
    if kind == "env" and not env:  # `type=env,src=VAR`
        env, src = src, ""
    if not ident:
        raise _refused(spec, "secret missing ID")
    if env:
        return ident, EnvSecret(env)
    if not src:  # BuildKit: the variable named as the id where there is one, else the file
        if ident in os.environ:
            return ident, EnvSecret(ident)
        src = ident
    path = (cwd / src).absolute()
    if not path.is_file():
        raise ConfigError(
            f"--secret {ident}: {path} is not a readable file", hint="give src= an existing file"
        )
    return ident, path


def _refused(spec: str, why: str) -> ConfigError:
    return ConfigError(f"--secret {spec!r}: {why}", hint=_HINT)


def secret_file(ident: str, source: SecretSource, scratch: Path) -> Path:
    """The file a step's mount of the secret shows: the secret's own file, or one in the
    build's `scratch` holding the variable's value, readable by this user alone."""
    if isinstance(source, Path):
        return source
    value = os.environ.get(source.name)
    if value is None:
        raise BuildError(
            f"--secret {ident} is the environment variable {source.name}, which is not set",
            hint=f"set {source.name}, or give the secret as --secret id={ident},src=FILE",
        )
    folder = scratch / "secrets"
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / str(len(list(folder.iterdir())))
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(value)
    return path

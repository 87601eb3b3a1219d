"""Values given on the command line as Cog's CLI reads them: `-i name=value` inputs, `--json`
inputs, and `-e NAME=VALUE` (or `-e NAME`) variables.

An `-i` value stays the text given (its surrounding double quotes dropped, as Cog drops them)
or, for `@path`, that file as a data URL; a name given more than once is a list of them. What
JSON each becomes is the schema's to say (`cog.project.inputs.check_inputs`), as in Cog, where
a value is typed only once the model's schema is known.
"""

from __future__ import annotations

import argparse
import base64
import json
import mimetypes
import os
import sys
from pathlib import Path
from typing import Any

from cog.project.errors import UsageError
from cog.project.inputs import FileInput


def parse_inputs(items: list[str]) -> dict[str, Any]:
    """`-i name=value` flags, as Cog's parseInputFlags reads them."""
    values: dict[str, list[str]] = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq:
            raise UsageError(
                f"Failed to parse input '{item}', expected format is 'name=value'",
                hint="e.g. -i prompt='a cat'",
            )
        if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
            value = value[1:-1]
        values.setdefault(name, []).append(_input_value(value))
    return {name: found[0] if len(found) == 1 else found for name, found in values.items()}


def _input_value(value: str) -> str:
    return FileInput(_data_uri(Path(value[1:]))) if value.startswith("@") else value


def json_inputs(text: str) -> dict[str, Any]:
    """`--json`: a JSON object given inline, as @file or as @- (stdin); string values
    `@path` become data URIs of that file, as Cog sends them."""
    source = text[1:] if text.startswith("@") else text
    if text in ("-", "@-"):
        raw = sys.stdin.read()
    elif text.startswith("@"):
        try:
            raw = Path(source).read_text()
        except OSError as e:
            raise UsageError(f"cannot read the JSON inputs from {source} ({e.strerror})") from None
    else:
        raw = text
    try:
        inputs = json.loads(raw, parse_constant=_not_json)
    except ValueError as e:
        where = f" at line {e.lineno}" if isinstance(e, json.JSONDecodeError) else ""
        message = e.msg if isinstance(e, json.JSONDecodeError) else str(e)
        raise UsageError(f"--json is not valid JSON ({message}{where})") from None
    if not isinstance(inputs, dict):
        example = """e.g. --json '{"s": "x"}'"""
        raise UsageError("--json must be a JSON object of inputs", hint=example)
    return {
        name: _data_uri(Path(value[1:]))
        if isinstance(value, str) and value.startswith("@")
        else value
        for name, value in inputs.items()
    }


def _not_json(constant: str) -> Any:
    """Python's json reads NaN and Infinity; JSON (and Cog's decoder) has no such values."""
    raise ValueError(f"{constant} is not a JSON value")


def _data_uri(path: Path) -> str:
    if not path.is_file():
        raise UsageError(f"input file {path} does not exist")
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def parse_env(items: list[str]) -> dict[str, str]:
    """`-e NAME=VALUE`, and `-e NAME` as `docker run -e NAME` takes it (Cog hands the flag to
    Docker as given): NAME's value in this environment, or not set at all where it has none."""
    env: dict[str, str] = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not name:
            raise UsageError(f"-e {item!r} names no variable", hint="e.g. -e HF_HOME=/tmp/hf")
        if eq:
            env[name] = value
        elif name in os.environ:
            env[name] = os.environ[name]
    return env


def add_env_flag(p: argparse.ArgumentParser) -> None:
    """`-e NAME[=VALUE]`, repeatable, as `cog run` and `cog exec` take it (parse_env reads it)."""
    p.add_argument(
        "-e",
        "--env",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="an environment variable; NAME alone takes its value here, as docker run -e NAME does",
    )

"""Values given on the command line as Cog's CLI reads them: `-i name=value` inputs (`@file`
as a data URI, `[...]` as a list), `--json` inputs, and `-e NAME=VALUE` variables."""

from __future__ import annotations

import base64
import json
import mimetypes
import sys
from pathlib import Path
from typing import Any

from cog.project.errors import UsageError


def _name_value(item: str, flag: str, example: str) -> tuple[str, str]:
    name, eq, value = item.partition("=")
    if not eq or not name:
        raise UsageError(f"{flag} {item!r} is not NAME=VALUE", hint=f"e.g. {flag} {example}")
    return name, value


def parse_inputs(items: list[str]) -> dict[str, Any]:
    """`-i name=value` flags; a name given more than once is a list, as in Cog."""
    values: dict[str, list[Any]] = {}
    for item in items:
        name, value = _name_value(item, "-i", "prompt='a cat'")
        values.setdefault(name, []).append(_input_value(value))
    return {name: found[0] if len(found) == 1 else found for name, found in values.items()}


def _input_value(value: str) -> Any:
    if value.startswith("@"):
        return _data_uri(Path(value[1:]))
    if value.startswith("["):  # a list input; objects are not an input type
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


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
        inputs = json.loads(raw)
    except json.JSONDecodeError as e:
        raise UsageError(f"--json is not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(inputs, dict):
        example = """e.g. --json '{"s": "x"}'"""
        raise UsageError("--json must be a JSON object of inputs", hint=example)
    return {
        name: _data_uri(Path(value[1:]))
        if isinstance(value, str) and value.startswith("@")
        else value
        for name, value in inputs.items()
    }


def _data_uri(path: Path) -> str:
    if not path.is_file():
        raise UsageError(f"input file {path} does not exist")
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def parse_env(items: list[str]) -> dict[str, str]:
    return dict(_name_value(item, "-e", "HF_HOME=/tmp/hf") for item in items)

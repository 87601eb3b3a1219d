"""Cog's CLI (cog_cli.json, read out of its cobra command definitions by extract_cog.py) against
ours (the argparse parsers `cog.cli.main.parser(COMMAND)` builds): each command, each flag and
its forms, and each `-i` value of each input type, with the outcome (the same, a difference the
allow-list explains, or a difference)."""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cog.cli import main
from cog.cli.values import parse_inputs
from cog.project.errors import UsageError
from cog.project.inputs import check_inputs
from tests.conformance import cli_allowlist as allow
from tests.conformance import patterns
from tests.conformance.cog_inputs_oracle import TYPES, Refused, cog_inputs, schema_for

DATA = json.loads((Path(__file__).parent / "cog_cli.json").read_text())
COMMANDS: dict[str, dict[str, Any]] = DATA["commands"]

# What a command needs besides its flags to parse (`cog exec` runs a command).
_TRAILING = {"cog exec": ["echo"]}
# A value each flag is given in the tests (the default `x` otherwise).
_SAMPLES = {
    "file": "cog.yaml",
    "use-cuda-base-image": "false",
    "progress": "plain",
    "json": "{}",
    "secret": "id=token,src=token.txt",
    "input": "prompt=hi",
    "env": "NAME=value",
    "publish": "8888",
    "gpus": "all",
}


@dataclass(frozen=True)
class Row:
    id: str  # "cog build --tag: forms"
    cog: str
    ours: str
    outcome: str  # "same", "allowed", "differs"
    reason: str = ""


def _verdict(item: str, cog: str, ours: str, same: bool, table: dict[str, str]) -> Row:
    if same:
        return Row(item, cog, ours, "same")
    reason = patterns.reason(table, item)
    return Row(item, cog, ours, "allowed" if reason else "differs", reason)


# Our parsers.


@functools.cache
def _top(command: str | None) -> argparse.ArgumentParser:
    """main.parser, built once per command (parsing does not change a parser)."""
    return main.parser(command)


def our_parser(path: str) -> argparse.ArgumentParser | None:
    """Ours for a command path such as `cog weights import`; None where we have none."""
    words = path.split()[1:]
    if not words:
        return _top(None)
    if words[0] not in main.COMMANDS:
        return None
    found: argparse.ArgumentParser = _top(words[0])
    for word in words:
        sub = next((a for a in found._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None or word not in sub.choices:
            return None
        found = sub.choices[word]
    return found


@functools.cache
def _help(path: str) -> str:
    parser = our_parser(path)
    return "" if parser is None else parser.format_help()


def our_action(parser: argparse.ArgumentParser, option: str) -> argparse.Action | None:
    return parser._option_string_actions.get(option)


class _Refused(Exception):
    pass


def parse(path: str, argv: list[str], trailing: bool = True) -> argparse.Namespace:
    """`cog …path argv` through our parser (as main() parses it); _Refused with what it said."""
    words = path.split()[1:]
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            return _top(words[0]).parse_args(
                [*words, *argv, *(_TRAILING.get(path, []) if trailing else [])]
            )
        except SystemExit:
            said = [line for line in stderr.getvalue().splitlines() if line.startswith("error:")]
            raise _Refused(said[0] if said else "refused") from None


@contextlib.contextmanager
def _inside(folder: str) -> Iterator[None]:
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# The checks, one row each.


def _commands() -> list[Row]:
    rows = []
    for path, spec in COMMANDS.items():
        ours = our_parser(path)
        cog = "hidden command" if spec["hidden"] else "command"
        if spec["deprecated"]:
            cog += f" (deprecated: {spec['deprecated']})"
        rows.append(
            _verdict(f"{path}", cog, "command" if ours else "none", ours is not None, allow.CLI)
        )
        for alias in spec["aliases"]:
            parent = path.rsplit(" ", 1)[0]
            found = our_parser(f"{parent} {alias}") is not None
            ours = "alias" if found else "none"
            rows.append(_verdict(f"{path} (alias {alias})", "alias", ours, found, allow.CLI))
        if ours is not None and path != "cog":
            rows.append(_positionals(path, spec))
    return rows


def _positionals(path: str, spec: dict[str, Any]) -> Row:
    """Cog's Args rule (NoArgs, MaximumNArgs(n), MinimumNArgs(n), ArbitraryArgs), tried with
    one argument more than Cog allows, and with as many as it allows."""
    rule = spec["args"] or "ArbitraryArgs"
    if spec["subcommands"]:
        return Row(f"{path}: arguments", rule, "subcommands", "same")
    count = int(rule.split("(")[1].rstrip(")")) if "(" in rule else 0
    allowed: list[list[str]] = []
    refused: list[list[str]] = []
    if rule.startswith("MaximumNArgs") or rule == "NoArgs":
        allowed, refused = [["a"] * count], [["a"] * (count + 1)]
    elif rule.startswith("MinimumNArgs"):
        allowed = [["echo", "a"]]
    else:
        allowed = [["a", "b"]]
    ok = [_parses(path, argv) for argv in allowed]
    bad = [_parses(path, argv) for argv in refused]
    ours = f"takes {allowed}, " + ("refuses" if not any(bad) else "takes") + f" {refused}"
    return _verdict(f"{path}: arguments", rule, ours, all(ok) and not any(bad), allow.CLI)


def _parses(path: str, argv: list[str]) -> bool:
    try:
        parse(path, argv, trailing=False)
    except _Refused:
        return False
    return True


def _flag_rows(path: str, flag: dict[str, Any]) -> list[Row]:
    name, short, kind = flag["name"], flag["shorthand"], flag["type"]
    item = f"{path} --{name}"
    parser = our_parser(path)
    assert parser is not None
    action = our_action(parser, f"--{name}")
    cog = kind + (f", -{short}" if short else "") + (", hidden" if flag["hidden"] else "")
    if action is None:
        return [_verdict(f"{item}: accepted", cog, "unknown flag", False, allow.CLI)]
    rows = [_verdict(f"{item}: accepted", cog, "accepted", True, allow.CLI)]
    if short:
        has = our_action(parser, f"-{short}") is action
        ours = f"-{short}" if has else "none"
        rows.append(_verdict(f"{item}: -{short}", f"-{short}", ours, has, allow.CLI))
    rows.append(_forms(path, flag, action))
    if _default_is_visible(flag, action):
        ours = action.default
        same = str(ours) == str(flag["default"])
        rows.append(
            _verdict(f"{item}: default", repr(flag["default"]), repr(ours), same, allow.CLI)
        )
    if not flag["hidden"]:
        shown = f"--{name}" in _help(path)
        ours = "listed" if shown else "not listed"
        rows.append(_verdict(f"{item}: --help", "listed", ours, shown, allow.CLI))
    return rows


def _default_is_visible(flag: dict[str, Any], action: argparse.Action) -> bool:
    """A default a user sees the effect of: Cog's is a value, and ours is one we use (a flag
    answered with a note has none)."""
    default = flag["default"]
    return default not in (None, "", False, [], 0) and not action.dest.startswith(
        ("compat_", "cog_")
    )


def _forms(path: str, flag: dict[str, Any], action: argparse.Action) -> Row:
    """Each way pflag takes the flag, parsed by ours to the same value."""
    name, short, kind = flag["name"], flag["shorthand"], flag["type"]
    value = _SAMPLES.get(name, "5" if kind.startswith(("int", "uint")) else "x")
    forms: list[tuple[list[str], Callable[[Any], bool]]] = []
    if kind == "bool":
        forms.append(([f"--{name}"], lambda v: v not in (None, False)))
        if flag["default"] is True:
            forms.append(([f"--{name}=false"], lambda v: v not in (None, True)))
        if COMMANDS[path]["args"].startswith("MaximumNArgs(1)"):  # the next word is not its value
            forms.append(([f"--{name}", "IMAGE"], lambda v: v not in (None, False)))
    elif kind == "stringArray":
        names = [f"--{name}"] + ([f"-{short}"] if short else [])
        for option in names:
            argv = [option, value, option, value + "2"]
            forms.append((argv, lambda v: [str(x) for x in v] == [value, value + "2"]))
    else:
        expected = value

        def same(v: Any) -> bool:
            return str(v) == expected

        forms += [([f"--{name}", value], same), ([f"--{name}={value}"], same)]
        if short:
            forms += [([f"-{short}", value], same), ([f"-{short}{value}"], same)]
    failed = []
    with (
        _environment(REPLICATE_API_TOKEN="r8_token"),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        for argv, check in forms:
            try:
                namespace = parse(path, argv)
            except _Refused as e:
                failed.append(f"{' '.join(argv)}: {e}")
                continue
            if not check(getattr(namespace, action.dest, None)):
                failed.append(f"{' '.join(argv)}: {getattr(namespace, action.dest, None)!r}")
            elif argv[-1] == "IMAGE" and getattr(namespace, "image", None) != "IMAGE":
                failed.append(f"{' '.join(argv)}: took IMAGE as its value")
    listed = "; ".join(" ".join(a) for a, _ in forms)
    ours = "; ".join(failed) if failed else "all parsed"
    return _verdict(f"{path} --{name}: forms", listed, ours, not failed, allow.CLI)


def _flags() -> list[Row]:
    rows = []
    persistent = [f for f in COMMANDS["cog"]["flags"] if f["persistent"]]
    for path, spec in COMMANDS.items():
        if our_parser(path) is None:
            continue
        for flag in spec["flags"]:
            if not flag["persistent"]:
                rows += _flag_rows(path, flag)
        if path != "cog" and not spec["subcommands"]:  # a group's flags are its commands'
            for flag in persistent:
                rows.append(_persistent(path, flag))
    for flag in persistent:
        rows.append(_root(flag))
    return rows


def _root(flag: dict[str, Any]) -> Row:
    """A flag of Cog's root given before any command (`cog --debug build`, `cog --version`)."""
    option = f"--{flag['name']}"
    if option in main.PERSISTENT_FLAGS:
        ok = main.persistent_flags([option, "build"]) == ["build"]
        for variable in main.PERSISTENT_FLAGS.values():
            os.environ.pop(variable, None)
    else:
        ok = our_action(_top(None), option) is not None
    cog = flag["type"] + (", hidden" if flag["hidden"] else "")
    return _verdict(f"cog {option}: accepted", cog, "accepted" if ok else "refused", ok, allow.CLI)


def _persistent(path: str, flag: dict[str, Any]) -> Row:
    """A persistent flag of Cog's root, given after a command."""
    option = f"--{flag['name']}"
    argv = [*path.split()[1:], option] + ([] if flag["type"] == "bool" else ["x"])
    kept = main.persistent_flags(list(argv))
    words = kept[len(path.split()) - 1 :]
    try:
        with _environment():
            parse(path, words)
        ok = True
    except _Refused:
        ok = False
    for variable in main.PERSISTENT_FLAGS.values():
        os.environ.pop(variable, None)
    ours = "accepted" if ok else "refused"
    return _verdict(f"{path} {option}: persistent", "accepted", ours, ok, allow.CLI)


# -i values, by input type.

VALUES: list[list[str]] = [
    ["5"],
    ["+5"],
    ["2.5"],
    ["1e3"],
    ["5_000"],
    ["4294967296"],
    ["true"],
    ["True"],
    ["hello"],
    [""],
    ['"quoted"'],
    ["[1, 2]"],
    ['["a", "b"]'],
    ['{"a": 1}'],
    ["@input.txt"],
    ["1", "2"],
    ["a", "b"],
]


def our_inputs(flags: list[str], kind: str) -> Any:
    inputs = parse_inputs(flags)
    check_inputs(inputs, schema_for(kind), training=False, from_flags=True)
    return inputs["x"]


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        import struct

        def f32(x: Any) -> Any:
            return struct.unpack("f", struct.pack("f", x))[0] if isinstance(x, float) else x

        return not isinstance(a, bool) and not isinstance(b, bool) and f32(a) == f32(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _inputs() -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory() as scratch, _inside(scratch):
        Path("input.txt").write_text("hi\n")
        for kind in TYPES:
            for values in VALUES:
                flags = [f"x={v}" for v in values]
                item = f"-i {kind}: " + " ".join(f"-i x={v}" for v in values)
                try:
                    cog: Any = cog_inputs(flags, kind)
                    cog_text = json.dumps(cog)[:60]
                except Refused:
                    cog, cog_text = Refused, "refused"
                try:
                    ours: Any = our_inputs(flags, kind)
                    ours_text = json.dumps(ours)[:60]
                except UsageError as e:
                    ours, ours_text = Refused, f"refused: {e}"
                same = (cog is Refused and ours is Refused) or (
                    cog is not Refused and ours is not Refused and _same_value(cog, ours)
                )
                rows.append(_verdict(item, cog_text, ours_text, same, allow.INPUTS))
    return rows


# --secret, -e and --json values, each as Cog reads it (pkg/docker/build_secrets.go
# parseSecretFromHost; -e strings go to `docker run -e` as they are; pkg/cli/predict.go
# parseJSONInput and transformPathsToBase64URLs) and as ours does.

SECRETS = [
    "id=token,src=token.txt",
    "id=token,source=token.txt",
    "ID=token,SRC=token.txt",
    "type=file,id=token,src=token.txt",
    "id=token,env=HF_TOKEN",
    "type=env,id=token,src=HF_TOKEN",
    "id=token,foo=bar",
    "token",
]


def cog_secret(spec: str) -> str:
    """Cog's reading of a --secret value: `file PATH`, `env NAME`, or why it refuses it."""
    kind, fields = "", {}
    for field in spec.split(","):
        key, sep, value = field.partition("=")
        if not sep:
            return f"refused: invalid field {field!r} must be a key=value pair"
        key = key.lower()
        if key == "type" and value not in ("file", "env"):
            return f"refused: unsupported secret type {value!r}"
        if key not in ("type", "id", "src", "source", "env"):
            return f"refused: unexpected key '{key}' in '{field}'"
        fields["src" if key == "source" else key] = value
        kind = value if key == "type" else kind
    if kind == "env" and not fields.get("env"):
        fields["env"], fields["src"] = fields.get("src", ""), ""
    return f"env {fields['env']}" if fields.get("env") else f"file {fields.get('src', '')}"


def our_secret(spec: str) -> str:
    from builders.build_secrets import EnvSecret, parse_secrets
    from store.errors import CogError

    try:
        (source,) = parse_secrets([spec], Path.cwd()).values()
    except CogError as e:
        return f"refused: {e}"
    return f"env {source.name}" if isinstance(source, EnvSecret) else f"file {source.name}"


ENVIRONMENT = ["A=1", "A=", "A=b=c", "A", "=x"]


def cog_env(item: str) -> str:
    """What `docker run -e ITEM` makes of it: NAME=VALUE, or NAME taken from this
    environment (left out where unset); an empty name is refused."""
    name, eq, value = item.partition("=")
    if not name:
        return "refused"
    return f"{name}={value}" if eq else f"{name} from this environment"


def our_env(item: str) -> str:
    """What ours makes of `-e ITEM`, with ITEM's name set in this environment and unset."""
    from cog.cli.values import parse_env

    name = item.partition("=")[0]
    try:
        with _environment(**({name: "from-here"} if name else {})):
            present = parse_env([item])
        saved = os.environ.pop(name, None)
        try:
            absent = parse_env([item])
        finally:
            if saved is not None:
                os.environ[name] = saved
    except UsageError:
        return "refused"
    if "=" not in item and present == {name: "from-here"} and absent == {}:
        return f"{name} from this environment"
    return " ".join(f"{k}={v}" for k, v in present.items()) or "nothing"


JSON_INPUTS = ['{"s": "x"}', "@inputs.json", '{"f": "@input.txt"}', "null", "[1]", "{x"]


def cog_json(text: str) -> Any:
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    try:
        inputs = json.loads(text)
    except json.JSONDecodeError:
        return "refused"
    if inputs is None:
        return {}
    if not isinstance(inputs, dict):
        return "refused"
    return {
        k: _data_url(v[1:]) if isinstance(v, str) and v.startswith("@") else v
        for k, v in inputs.items()
    }


def _data_url(path: str) -> str:
    from tests.conformance.cog_inputs_oracle import _file

    return _file(path)


def our_json(text: str) -> Any:
    from cog.cli.values import json_inputs

    try:
        return json_inputs(text)
    except UsageError:
        return "refused"


def _values() -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory() as scratch, _inside(scratch):
        Path("token.txt").write_text("s3cret\n")
        Path("input.txt").write_text("hi\n")
        Path("inputs.json").write_text('{"s": "from a file"}')
        for spec in SECRETS:
            cog, ours = cog_secret(spec), our_secret(spec)
            same = cog == ours or (cog.startswith("refused") and ours.startswith("refused"))
            rows.append(_verdict(f"--secret {spec}", cog, ours, same, allow.CLI))
        for item in ENVIRONMENT:
            cog, ours = cog_env(item), our_env(item)
            rows.append(_verdict(f"-e {item}", cog, ours, cog == ours, allow.CLI))
        for text in JSON_INPUTS:
            cog_value, our_value = cog_json(text), our_json(text)
            rows.append(
                _verdict(
                    f"--json {text}",
                    json.dumps(cog_value)[:60],
                    json.dumps(our_value)[:60],
                    cog_value == our_value,
                    allow.CLI,
                )
            )
    return rows


SECTIONS: dict[str, Callable[[], list[Row]]] = {
    "commands": _commands,
    "flags": _flags,
    "values": _values,
    "inputs": _inputs,
}


def compare_all() -> list[Row]:
    return [row for section in SECTIONS.values() for row in section()]


def stale_allowances(rows: list[Row]) -> list[str]:
    """Allow-list entries that no difference needs any more."""
    return patterns.unused(
        [allow.CLI, allow.INPUTS], [r.id for r in rows if r.outcome == "allowed"]
    )

"""Read Cog's own sources and write what the conformance tests compare us with, as data:

- `cog_cli.json`: every command of Cog's CLI (pkg/cli/*.go, cobra): its `Use`, aliases,
  hidden/deprecated, positional rule, and every flag (name, shorthand, pflag type, default,
  hidden, persistent), following the `addXFlag(cmd)` helpers and `AddCommand` calls.
- `cog_config.json`: Cog's JSON schema for cog.yaml and the Go structs cog.yaml is decoded into
  (field, Go type, YAML key, JSON omitempty), which decide what reaches that schema.

Usage: python -m tests.conformance.extract_cog GIT_DIR [COMMIT]
(GIT_DIR: the .git directory of a clone of replicate/cog, or a bare one; COMMIT defaults to
HEAD). Only Go source text is read: no Go toolchain is needed.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
CONFIG_SCHEMA = "pkg/config/data/config_schema_v1.0.json"
CONFIG_STRUCT_FILES = ("pkg/config/config_file.go", "pkg/config/config.go")


class Source:
    """Files of one commit of a git repository."""

    def __init__(self, git_dir: str, commit: str) -> None:
        self.git_dir = git_dir
        self.commit = self._git("rev-parse", commit).strip()
        self.describe = self._git("describe", "--tags", self.commit).strip()

    def _git(self, *args: str) -> str:
        return subprocess.run(
            ["git", f"--git-dir={self.git_dir}", *args], capture_output=True, text=True, check=True
        ).stdout

    def read(self, path: str) -> str:
        return self._git("show", f"{self.commit}:{path}")

    def files(self, folder: str) -> list[str]:
        return self._git("ls-tree", "--name-only", f"{self.commit}:{folder}").split()


# Go source, lexically: enough to find function bodies, calls and their arguments.

_STRING = r'"(?:[^"\\\n]|\\.)*"|`[^`]*`'
_TOKEN = re.compile(rf"(?P<s>{_STRING})|(?P<c>//[^\n]*|/\*.*?\*/)|(?P<o>.)", re.S)


def blank_comments(text: str) -> str:
    """`text` with every comment replaced by spaces (offsets kept), strings left whole."""
    out = []
    for m in _TOKEN.finditer(text):
        out.append(re.sub(r"[^\n]", " ", m.group()) if m.group("c") else m.group())
    return "".join(out)


def matching(text: str, start: int) -> int:
    """The offset just past the bracket that closes the one at `start`."""
    pairs = {"(": ")", "{": "}", "[": "]"}
    stack = []
    i = start
    while i < len(text):
        m = re.compile(_STRING).match(text, i)
        if m:
            i = m.end()
            continue
        ch = text[i]
        if ch in pairs:
            stack.append(pairs[ch])
        elif stack and ch == stack[-1]:
            stack.pop()
            if not stack:
                return i + 1
        i += 1
    raise ValueError(f"unbalanced bracket at {start}")


def split_args(text: str) -> list[str]:
    """Top-level comma-separated parts of an argument list (without its parentheses)."""
    parts, depth, current, i = [], 0, [], 0
    while i < len(text):
        m = re.compile(_STRING).match(text, i)
        if m:
            current.append(m.group())
            i = m.end()
            continue
        ch = text[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
        i += 1
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


@dataclass
class Function:
    name: str
    params: list[str]
    body: str


def functions(text: str) -> dict[str, Function]:
    found = {}
    for m in re.finditer(r"^func (?:\([^)]*\)\s*)?(\w+)\(([^)]*)\)[^{\n]*\{", text, re.M):
        end = matching(text, m.end() - 1)
        params = [p.split()[0] for p in split_args(m.group(2)) if p.split()]
        found[m.group(1)] = Function(m.group(1), params, text[m.end() : end - 1])
    return found


def constants(text: str) -> dict[str, str]:
    """Package-level `const`/`var` names and the expressions they are set to."""
    found = {}
    for m in re.finditer(r"^(?:const|var) \(\n(.*?)^\)", text, re.M | re.S):
        for line in m.group(1).splitlines():
            assign = re.match(r"\s*(\w+)(?:\s+[\w.\[\]*]+)?\s*=\s*(.+?)\s*$", line)
            if assign:
                found[assign.group(1)] = assign.group(2)
    for m in re.finditer(r"^(?:const|var) (\w+)(?:\s+[\w.]+)?\s*=\s*(.+?)\s*$", text, re.M):
        found[m.group(1)] = m.group(2)
    return found


class Evaluator:
    """Go expressions as far as flag definitions use them: literals, `5*60`, `a + b`, names
    bound to parameters, local or package constants, and other packages' string constants."""

    def __init__(self, package: dict[str, str], external: dict[str, str]) -> None:
        self.package, self.external = package, external

    def value(self, expr: str, scope: dict[str, Any], depth: int = 0) -> Any:
        expr = expr.strip()
        if depth > 8:
            raise ValueError(expr)
        if re.fullmatch(_STRING, expr):
            return json.loads(expr) if expr[0] == '"' else expr[1:-1]
        if expr in ("true", "false"):
            return expr == "true"
        if re.fullmatch(r"-?\d+", expr):
            return int(expr)
        if re.fullmatch(r"\d+\s*\*\s*\d+", expr):
            a, b = expr.split("*")
            return int(a) * int(b)
        if re.fullmatch(r"\[\]string\{\}", expr):
            return []
        if re.fullmatch(r"\[\]string\{.*\}", expr, re.S):
            return [self.value(p, scope, depth + 1) for p in split_args(expr[9:-1])]
        plus = split_top(expr, "+")
        if len(plus) > 1:
            return "".join(str(self.value(p, scope, depth + 1)) for p in plus)
        if expr in scope:
            return scope[expr]
        if expr in self.package:
            return self.value(self.package[expr], scope, depth + 1)
        if expr in self.external:
            return self.value(self.external[expr], scope, depth + 1)
        raise ValueError(expr)


def split_top(expr: str, op: str) -> list[str]:
    parts, depth, current, i = [], 0, "", 0
    while i < len(expr):
        m = re.compile(_STRING).match(expr, i)
        if m:
            current += m.group()
            i = m.end()
            continue
        ch = expr[i]
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == op and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
        i += 1
    return [*parts, current]


# pflag's definition functions: NAME[Var][P]; the arguments each form takes, in order.
_FLAG_CALL = re.compile(
    r"(?P<target>\w+(?:\.(?:Persistent)?Flags\(\))?)\.(?P<fn>(?:Bool|String|StringArray|"
    r"StringSlice|Int|Int64|Int32|Uint|Uint32|Uint64|Float64|Duration)(?:Var)?P?)\("
)


@dataclass
class Command:
    use: str
    aliases: list[str] = field(default_factory=list)
    hidden: bool = False
    deprecated: str = ""
    args: str = ""
    interspersed: bool = True
    flags: list[dict[str, Any]] = field(default_factory=list)
    children: list[Command] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.use.split()[0]


class CliReader:
    def __init__(self, source: Source) -> None:
        texts = [
            blank_comments(source.read(f"pkg/cli/{name}"))
            for name in source.files("pkg/cli/")
            if name.endswith(".go") and not name.endswith("_test.go")
        ]
        self.functions: dict[str, Function] = {}
        package: dict[str, str] = {}
        for text in texts:
            self.functions.update(functions(text))
            package.update(constants(text))
        self.evaluate = Evaluator(package, self._external(source, "\n".join(texts))).value

    @staticmethod
    def _external(source: Source, text: str) -> dict[str, str]:
        """`pkg.Name` constants the CLI's flags use, read from those packages' sources."""
        found = {}
        for pkg, name in set(re.findall(r"\b(command|global|config)\.([A-Z]\w*)\b", text)):
            folder = {"command": "pkg/docker/command", "global": "pkg/global"}.get(
                pkg, f"pkg/{pkg}"
            )
            for file in source.files(f"{folder}/"):
                if file.endswith(".go") and not file.endswith("_test.go"):
                    consts = constants(blank_comments(source.read(f"{folder}/{file}")))
                    if name in consts:
                        found[f"{pkg}.{name}"] = consts[name]
        return found

    def command(self, call: str, scope: dict[str, Any] | None = None) -> Command:
        """The command a constructor call such as `newBuildCommand()` makes."""
        m = re.fullmatch(r"(\w+)\((.*)\)", call.strip(), re.S)
        assert m, call
        fn = self.functions[m.group(1)]
        outer = scope or {}
        bound = dict(
            zip(fn.params, (self.evaluate(a, outer) for a in split_args(m.group(2))), strict=False)
        )
        literal = re.search(r"&?cobra\.Command\{", fn.body)
        if literal is None:  # `return newPredictionCommand("run", false)`
            ret = re.search(r"return (\w+\(.*\))\s*$", fn.body.strip(), re.S)
            assert ret, fn.name
            return self.command(ret.group(1), bound)
        end = matching(fn.body, literal.end() - 1)
        fields = self._fields(fn.body[literal.end() : end - 1], bound)
        cmd = Command(
            use=fields.get("Use", ""),
            aliases=fields.get("Aliases", []),
            hidden=bool(fields.get("Hidden", False)),
            deprecated=fields.get("Deprecated", ""),
            args=fields.get("Args", ""),
        )
        rest = fn.body[end:]
        cmd.interspersed = "SetInterspersed(false)" not in rest
        cmd.flags = self._flags(rest, bound)
        for add in re.finditer(r"\.AddCommand\(", rest):
            inner = rest[add.end() : matching(rest, add.end() - 1) - 1]
            cmd.children += [self.command(c, bound) for c in split_args(inner)]
        return cmd

    def root(self, constructor: str) -> Command:
        fn = self.functions[constructor]
        literal = re.search(r"cobra\.Command\{", fn.body)
        assert literal
        end = matching(fn.body, literal.end() - 1)
        fields = self._fields(fn.body[literal.end() : end - 1], {})
        cmd = Command(use=fields["Use"])
        rest = fn.body[end:]
        cmd.flags = self._flags(rest, {})
        add = re.search(r"\.AddCommand\(", rest)
        assert add
        inner = rest[add.end() : matching(rest, add.end() - 1) - 1]
        cmd.children = [self.command(c) for c in split_args(inner)]
        return cmd

    def _fields(self, literal: str, scope: dict[str, Any]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for part in split_args(literal):
            key, _, expr = part.partition(":")
            key = key.strip()
            if key in ("Use", "Aliases", "Hidden", "Deprecated"):
                found[key] = self.evaluate(expr, scope)
            elif key == "Args":
                found[key] = expr.strip().removeprefix("cobra.")
        return found

    def _flags(self, body: str, scope: dict[str, Any]) -> list[dict[str, Any]]:
        """The flags statements in `body` define, helpers (`addConfigFlag(cmd)`) included."""
        flags: list[dict[str, Any]] = []
        local = dict(scope)
        for const in re.finditer(r"const (\w+) = (" + _STRING + ")", body):
            local[const.group(1)] = self.evaluate(const.group(2), {})
        events = []
        for m in _FLAG_CALL.finditer(body):
            args = split_args(body[m.end() : matching(body, m.end() - 1) - 1])
            events.append((m.start(), "flag", m, args))
        for m in re.finditer(r"\b(\w+)\(&?(\w+)\)", body):
            if m.group(1) in self.functions and m.group(1) != "new":
                fn = self.functions[m.group(1)]
                if len(fn.params) == 1 and ("Flags()" in fn.body):
                    events.append((m.start(), "helper", m, []))
        for m in re.finditer(r"MarkHidden\(([^)]*)\)", body):
            events.append((m.start(), "hide", m, []))
        for m in re.finditer(r'f\.Name == ("[^"]*")\s*\{\s*f\.Hidden = true', body):
            events.append((m.start(), "hide", m, []))
        for _, kind, m, args in sorted(events, key=lambda e: e[0]):
            if kind == "flag":
                flags.append(self._flag(m, args, local))
            elif kind == "helper":
                flags += self._flags(self.functions[m.group(1)].body, {})
            else:
                name = self.evaluate(m.group(1), local)
                for flag in flags:
                    if flag["name"] == name:
                        flag["hidden"] = True
        return flags

    def _flag(self, m: re.Match[str], args: list[str], scope: dict[str, Any]) -> dict[str, Any]:
        fn = m.group("fn")
        kind = re.sub(r"(Var)?P?$", "", fn)
        if fn.endswith("Var") or fn.endswith("VarP"):
            args = args[1:]  # the variable it sets
        has_short = fn.endswith("P")
        name = self.evaluate(args[0], scope)
        short = self.evaluate(args[1], scope) if has_short else ""
        default_expr = args[2 if has_short else 1]
        try:
            default = self.evaluate(default_expr, scope)
        except ValueError:
            default = None  # computed at run time (an environment variable, a function)
        return {
            "name": name,
            "shorthand": short,
            "type": {"Bool": "bool", "String": "string", "StringArray": "stringArray"}.get(
                kind, kind.lower()
            ),
            "default": default,
            "default_expr": default_expr,
            "hidden": False,
            "persistent": "PersistentFlags()" in m.group("target"),
        }


def command_table(cmd: Command, prefix: str = "") -> dict[str, dict[str, Any]]:
    path = f"{prefix} {cmd.name}".strip()
    table = {
        path: {
            "use": cmd.use,
            "aliases": cmd.aliases,
            "hidden": cmd.hidden,
            "deprecated": cmd.deprecated,
            "args": cmd.args,
            "interspersed": cmd.interspersed,
            "subcommands": [c.name for c in cmd.children],
            "flags": cmd.flags,
        }
    }
    for child in cmd.children:
        table |= command_table(child, path)
    return table


# The Go structs cog.yaml decodes into.

_FIELD = re.compile(r"^\s*(\w+)\s+([\w.\[\]*]+)\s+`([^`]*)`", re.M)


def structs(text: str) -> dict[str, list[dict[str, Any]]]:
    found = {}
    for m in re.finditer(r"^type (\w+) struct \{", text, re.M):
        body = text[m.end() : matching(text, m.end() - 1) - 1]
        fields = []
        for f in _FIELD.finditer(body):
            tags = dict(re.findall(r'(\w+):"([^"]*)"', f.group(3)))
            yaml_key, *_ = tags.get("yaml", f.group(1)).split(",")
            fields.append(
                {
                    "go": f.group(1),
                    "type": f.group(2),
                    "yaml": yaml_key,
                    "json": tags.get("json", "").split(",")[0],
                    "omitempty": "omitempty" in tags.get("json", ""),
                }
            )
        found[m.group(1)] = fields
    return found


def custom_decoders(text: str) -> list[str]:
    """The types that decode YAML with their own UnmarshalYAML."""
    return re.findall(r"^func \(\w+ \*(\w+)\) UnmarshalYAML\(", text, re.M)


def main(git_dir: str, commit: str = "HEAD", out: Path = HERE) -> None:
    source = Source(git_dir, commit)
    origin = {"repository": "replicate/cog", "commit": source.commit, "version": source.describe}
    reader = CliReader(source)
    cli = {"cog": origin, "commands": command_table(reader.root("NewRootCommand"))}
    (out / "cog_cli.json").write_text(json.dumps(cli, indent=1) + "\n")
    go: dict[str, Any] = {}
    decoders: list[str] = []
    for path in CONFIG_STRUCT_FILES:
        text = blank_comments(source.read(path))
        go |= structs(text)
        decoders += custom_decoders(text)
    config = {
        "cog": origin,
        "schema_path": CONFIG_SCHEMA,
        "schema": json.loads(source.read(CONFIG_SCHEMA)),
        "root_struct": "configFile",
        "structs": {k: v for k, v in go.items() if k[0].islower() or k.startswith("WeightSource")},
        "custom_decoders": sorted(set(decoders)),
    }
    (out / "cog_config.json").write_text(json.dumps(config, indent=1) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])

"""Read Cog's own sources for two surfaces and write them as data the conformance tests
compare us with (no Go toolchain: the Go text is read):

- `cog_schema.json`: the build-time schema. Every refusal sentence of Cog's static
  generator (pkg/schema, pkg/schema/python, pkg/schema/openapi, and the build's checks in
  pkg/image/build.go) as a Go format string with its error kind and place; the JSON each
  primitive type becomes (PrimitiveType.JSONType); Cog's own cases: its integration scripts
  that build a project (integration-tests/tests/*.txtar: the files, whether the build is
  expected to pass, and the patterns its label or stderr must match) and the predictors of
  its parser's unit tests (pkg/schema/python/parser_test.go: source, target, mode, whether
  Cog accepts it, the error kind and the substrings its message must hold).
- `cog_image.json`: the image. Every label `cog build` sets (pkg/image/build.go, the label
  keys of pkg/docker/command and pkg/global) and every image config item the Dockerfile
  generator writes (pkg/dockerfile: ENV, WORKDIR, EXPOSE, CMD, ENTRYPOINT, USER ...).

Usage: python -m tests.conformance.extract_surface GIT_DIR [COMMIT]
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from tests.conformance.extract_cog import Source, blank_comments, matching, split_args

HERE = Path(__file__).parent
SCHEMA_DIRS = ("pkg/schema", "pkg/schema/python", "pkg/schema/openapi")
_LITERAL = re.compile(r'"(?:[^"\\\n]|\\.)*"|`[^`]*`')


def go_string(expr: str) -> str | None:
    """A Go string expression of literals joined by `+`, as its value; None otherwise."""
    parts = [p.strip() for p in _split_plus(expr)]
    out = []
    for part in parts:
        if not _LITERAL.fullmatch(part):
            return None
        out.append(json.loads(part) if part[0] == '"' else part[1:-1])
    return "".join(out)


def _split_plus(expr: str) -> list[str]:
    parts, depth, current, i = [], 0, "", 0
    while i < len(expr):
        m = _LITERAL.match(expr, i)
        if m:
            current += m.group()
            i = m.end()
            continue
        ch = expr[i]
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "+" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
        i += 1
    return [*parts, current]


def message_template(expr: str) -> tuple[str, list[str]] | None:
    """`fmt.Sprintf("f", a, b)` or a literal: the format string and the argument texts."""
    expr = expr.strip()
    if expr.startswith("fmt.Sprintf("):
        args = split_args(expr[len("fmt.Sprintf(") : matching(expr, len("fmt.Sprintf")) - 1])
        fmt = go_string(args[0])
        return None if fmt is None else (fmt, args[1:])
    literal = go_string(expr)
    if literal is not None:
        return literal, []
    return None


def _calls(text: str, name: str) -> list[tuple[int, list[str]]]:
    found = []
    for m in re.finditer(rf"(?<![\w.]){re.escape(name)}\(", text):
        if text[max(0, m.start() - 5) : m.start()] == "func ":
            continue  # its definition
        end = matching(text, m.end() - 1)
        found.append((m.start(), split_args(text[m.end() : end - 1])))
    return found


def _enclosing(text: str, offset: int) -> str:
    funcs = list(re.finditer(r"^func (?:\([^)]*\)\s*)?(\w+)\(", text[:offset], re.M))
    return funcs[-1].group(1) if funcs else ""


def schema_messages(src: Source) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    files = [f"{d}/{f}" for d in SCHEMA_DIRS for f in src.files(d)]
    files = [f for f in files if f.endswith(".go") and not f.endswith("_test.go")]
    for path in [*files, "pkg/image/build.go"]:
        text = blank_comments(src.read(path))

        def add(
            kind: str, expr: str, offset: int, prefix: str = "", path: str = path, text: str = text
        ) -> None:
            found = message_template(expr)
            if found is None:  # a variable: the message is that value (a method's name)
                found = ("%s", [expr.strip()])
            fmt, args = found
            messages.append(
                {
                    "kind": kind,
                    "template": prefix + fmt,
                    "args": args,
                    "file": path,
                    "function": _enclosing(text, offset),
                }
            )

        for call in ("schema.WrapError", "WrapError", "schema.NewError", "NewError"):
            for offset, args in _calls(text, call):
                if len(args) >= 2 and args[1] != "msg":
                    add(args[0].split(".")[-1].removeprefix("Err"), args[1], offset)
        for call in ("errUnsupportedType", "errUnsupported"):
            for offset, args in _calls(text, call):
                if args and args[0] != "msg":
                    add("UnsupportedType", args[0], offset, "unsupported type: ")
        for m in re.finditer(r"^func (err\w+)\(([^)]*)\) error \{", text, re.M):
            body = text[m.end() : matching(text, m.end() - 1)]
            kind = re.search(r"Kind:\s*Err(\w+)", body)
            message = re.search(r"Message:\s*", body)
            if kind is None or message is None or m.group(1) in ("errUnsupportedType",):
                continue
            expr = body[message.end() :]
            if expr.startswith("fmt.Sprintf("):
                expr = expr[: matching(expr, len("fmt.Sprintf"))]
            else:
                expr = expr.split("}")[0].strip().rstrip(",")
            add(kind.group(1), expr, m.end())
        for offset, args in _calls(text, "fmt.Errorf"):
            fmt = go_string(args[0]) if args else None
            if fmt is None or (path == "pkg/image/build.go" and "oncurrency" not in fmt):
                continue
            if (
                path == "pkg/image/build.go"
                or "%w" not in fmt
                or fmt.startswith(
                    ("predict schema", "train schema", "image build failed", "resolving", "field")
                )
            ):
                messages.append(
                    {
                        "kind": "Other",
                        "template": fmt,
                        "args": args[1:],
                        "file": path,
                        "function": _enclosing(text, offset),
                    }
                )
    calls = "\n".join(blank_comments(src.read(p)) for p in [*files, "pkg/image/build.go"])
    unique: dict[tuple[str, str, str], dict[str, Any]] = {}
    for entry in messages:
        name = entry["function"]
        # errors.go defines some errors no code raises (marked nolint:unused there)
        entry["raised"] = not name.startswith("err") or bool(
            re.search(rf"(?<!func ){name}\(", calls)
        )
        unique.setdefault((entry["template"], entry["kind"], name), entry)
    return list(unique.values())


def json_types(src: Source) -> dict[str, Any]:
    text = src.read("pkg/schema/types.go")
    body = text[text.index("func (p PrimitiveType) JSONType()") :]
    body = body[: matching(body, body.index("{"))]
    names = {"TypeBool": "bool", "TypeFloat": "float", "TypeInteger": "int", "TypeString": "str"}
    names |= {"TypePath": "Path", "TypeFile": "File", "TypeSecret": "Secret", "TypeAny": "Any"}
    found: dict[str, Any] = {}
    for m in re.finditer(r"case ([\w, ]+):\s*return map\[string\]any\{([^}]*)\}", body):
        pairs = dict(re.findall(r'"([\w-]+)":\s*("[^"]*"|true|false)', m.group(2)))
        value = {k: json.loads(v) for k, v in pairs.items()}
        for case in m.group(1).split(","):
            found[names[case.strip()]] = value
    return found


# ---- Cog's own cases ---------------------------------------------------------------------


def txtar(text: str) -> tuple[str, dict[str, str]]:
    """A testscript archive: its script and its files."""
    parts = re.split(r"^-- (.+?) --$\n?", text, flags=re.M)
    files = {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}
    return parts[0], files


_BUILDING = re.compile(r"^(!\s*)?cog (build|predict|run|serve|train)\b(.*)$")


def script_cases(src: Source) -> list[dict[str, Any]]:
    cases = []
    for name in src.files("integration-tests/tests"):
        if not name.endswith(".txtar"):
            continue
        script, files = txtar(src.read(f"integration-tests/tests/{name}"))
        if "cog.yaml" not in files or "openapi-schema" in script or "COG_OPENAPI_SCHEMA" in script:
            continue
        lines = [ln.strip() for ln in script.splitlines()]
        builds = []  # (line index, refused)
        for i, line in enumerate(lines):
            m = _BUILDING.match(line)
            if m is None:
                continue
            rest = m.group(3)
            if (
                m.group(2) in ("predict", "run", "serve", "train")
                and "$TEST_IMAGE" in rest.split(" -")[0]
            ):
                continue  # an image built before: no new build
            builds.append((i, bool(m.group(1))))
        if not builds:
            continue
        first, refused = builds[0]
        stderr, label = [], []
        for i in range(first + 1, len(lines)):
            line = lines[i]
            m = re.match(r"^(!\s*)?(stdout|stderr) '(.*)'$", line)
            if m and refused and m.group(2) == "stderr":
                stderr.append({"negated": bool(m.group(1)), "pattern": m.group(3)})
            elif refused and line and not line.startswith("#") and not m:
                break
        for i, line in enumerate(lines):
            if "run.cog.openapi_schema" in line and line.startswith("exec docker inspect"):
                for follow in lines[i + 1 :]:
                    m = re.match(r"^(!\s*)?stdout '(.*)'$", follow)
                    if m:
                        label.append({"negated": bool(m.group(1)), "pattern": m.group(2)})
                    elif follow and not follow.startswith("#"):
                        break
        cases.append(
            {
                "script": name,
                "files": files,
                "refused": refused and not any(not r for _, r in builds[:1]),
                "stderr": stderr,
                "label": label,
                "env": re.findall(r"^env (\w+)=(.*)$", script, re.M),
            }
        )
    return cases


def unit_cases(src: Source) -> list[dict[str, Any]]:
    text = src.read("pkg/schema/python/parser_test.go")
    cases = []
    for m in re.finditer(r"^func (Test\w+)\(t \*testing\.T\) \{", text, re.M):
        body = text[m.end() : matching(text, m.end() - 1)]
        sources = re.findall(r"source := (?:\[\]byte\()?`([^`]*)`", body)
        files = dict(re.findall(r'writeFile\(t, dir, "([^"]+)", `([^`]*)`\)', body))
        call = re.search(r"\b(parse|parseErr|ParsePredictor|parseFile)\((.*?)\)\s*$", body, re.M)
        if call is None or "ParseWithOptions" in body or "t.Run(" in body:
            continue
        args = split_args(call.group(2))
        if call.group(1) == "parseFile":
            if len(args) < 4 or "predict.py" not in files:
                continue
            source, ref, mode = files.pop("predict.py"), json.loads(args[3]), "predict"
        else:
            if len(sources) != 1 or len(args) < 3:
                continue
            source = sources[0]
            try:
                ref = json.loads(args[2] if call.group(1) != "ParsePredictor" else args[1])
            except ValueError:
                continue
            mode_arg = next((a for a in args if a.startswith("schema.Mode")), "schema.ModePredict")
            mode = "train" if mode_arg.endswith("Train") else "predict"
        refused = call.group(1) == "parseErr" or bool(re.search(r"require\.Error\(t, err\)", body))
        if call.group(1) == "ParsePredictor" and not refused and "require.NoError" not in body:
            continue
        kind = re.search(r"require\.Equal\(t, schema\.Err(\w+), se\.Kind\)", body)
        contains = [
            json.loads(s)
            for s in re.findall(
                r'Contains\(t, (?:se\.Message|se\.Error\(\)|err\.Error\(\)), ("(?:[^"\\]|\\.)*")\)',
                body,
            )
        ]
        cases.append(
            {
                "test": m.group(1),
                "source": source,
                "files": files,
                "ref": ref,
                "mode": mode,
                "with_dir": bool(files) or call.group(1) == "parseFile",
                "refused": refused,
                "kind": kind.group(1) if kind else None,
                "contains": contains,
            }
        )
    return cases


# ---- the image ---------------------------------------------------------------------------


def image_surface(src: Source) -> dict[str, Any]:
    build = src.read("pkg/image/build.go")
    declared = re.search(r'LabelNamespace\s*=\s*("[^"]+")', src.read("pkg/global/global.go"))
    assert declared is not None, "pkg/global/global.go declares no LabelNamespace"
    namespace = str(json.loads(declared.group(1)))
    keys = {
        name: namespace + json.loads(value)
        for name, value in re.findall(
            r'(Cog\w+LabelKey)\s*=\s*global\.LabelNamespace \+ ("[^"]+")',
            src.read("pkg/docker/command/manifest.go"),
        )
    }
    labels: list[dict[str, str]] = []
    block = build[build.index("labels := map[string]string{") :]
    block = block[: matching(block, block.index("{"))]
    for key, value in re.findall(r"^\s*([\w.]+(?:\s*\+\s*\"[^\"]+\")?):\s*(.+?),\s*$", block, re.M):
        labels.append(
            {"label": _label_key(key, keys, namespace), "value": value.strip(), "when": "always"}
        )
    for key, value in re.findall(r"labels\[(.+?)\]\s*=\s*(.+)", build):
        condition = _condition_before(build, f"labels[{key}]")
        labels.append(
            {"label": _label_key(key, keys, namespace), "value": value.strip(), "when": condition}
        )
    config: list[dict[str, str]] = []
    seen = set()
    for name in src.files("pkg/dockerfile"):
        if not name.endswith(".go") or name.endswith("_test.go"):
            continue
        text = src.read(f"pkg/dockerfile/{name}")
        for m in re.finditer(
            r"(?m)(?:^|[\"`])(ENV|WORKDIR|EXPOSE|CMD|ENTRYPOINT|USER|STOPSIGNAL|VOLUME"
            r"|HEALTHCHECK|SHELL|LABEL) ([^\n\"`]*)",
            text,
        ):
            instruction, rest = m.group(1), m.group(2).strip()
            if instruction == "ENV" and not re.match(r"[A-Z_][A-Z0-9_]*=", rest):
                continue
            key = f"{instruction} {rest.split('=')[0]}" if instruction == "ENV" else instruction
            if key in seen:
                continue
            seen.add(key)
            line = text.count("\n", 0, m.start()) + 1
            full = (
                rest
                if instruction != "CMD" and instruction != "ENTRYPOINT"
                else _bracketed(text, m.end())
            )
            config.append(
                {"item": key, "value": full, "file": f"pkg/dockerfile/{name}", "line": str(line)}
            )
    return {"labels": labels, "config": config}


def _label_key(expr: str, keys: dict[str, str], namespace: str) -> str:
    expr = expr.strip()
    if expr.startswith("command."):
        return keys[expr.removeprefix("command.")]
    if expr.startswith("global.LabelNamespace"):
        return namespace + str(json.loads(expr.split("+", 1)[1].strip()))
    return str(json.loads(expr))


def _condition_before(text: str, marker: str) -> str:
    """The condition of the innermost `if` block that holds `marker`."""
    at = text.index(marker)
    found = "always"
    for m in re.finditer(r"^\s*if (.+?) \{\s*$", text[:at], re.M):
        if matching(text, m.end() - 1) > at:
            found = m.group(1)
    return found


def _bracketed(text: str, offset: int) -> str:
    start = text.rfind("[", 0, offset + 1)
    return text[start : matching(text, start)] if start >= 0 else ""


def main(git_dir: str, commit: str = "HEAD", out: Path | None = None) -> None:
    src = Source(git_dir, commit)
    cog = {"repository": "replicate/cog", "commit": src.commit, "version": src.describe}
    schema = {
        "cog": cog,
        "messages": schema_messages(src),
        "json_types": json_types(src),
        "scripts": script_cases(src),
        "unit_cases": unit_cases(src),
    }
    out = out or HERE
    (out / "cog_schema.json").write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
    image = {"cog": cog, **image_surface(src)}
    (out / "cog_image.json").write_text(json.dumps(image, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "HEAD")

"""Each build-time schema case answered by Cog (its data: schema_cases) and by ours
(cog.project.static_schema, run as `cog build` runs it: the predictor's metadata, the SDK's
version, then the document), compared."""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cog.project.static_schema.errors import SchemaError
from cog.project.static_schema.generate import (
    check_concurrency,
    check_sdk_version,
    generate_combined,
    predictor_metadata,
)
from tests.conformance import schema_allowlist
from tests.conformance.schema_cases import Case, cases

VERSION = "0.0.0-conformance"


@dataclass(frozen=True)
class Row:
    case: Case
    cog: str
    ours: str
    outcome: str  # same, allowed, differs
    reason: str = ""
    document: str | None = None


def ours(case: Case, root: Path) -> tuple[str | None, str | None]:
    """(the label's text, None) or (None, the refusal as `cog build` prints it)."""
    for name, text in case.files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    ref = case.predict or case.train or ""
    try:
        is_async, _ = predictor_metadata(root, ref, train=not case.predict)
        check_sdk_version(case.sdk_version)
        document = generate_combined(root, case.predict, case.train, VERSION)
        check_concurrency(case.concurrency, is_async)
        return document, None
    except SchemaError as e:
        return None, e.message


def _cog_text(case: Case) -> str:
    if case.refused:
        if case.message is not None:
            return f"refused: {case.message}"
        words = [f"/{p}/" if not neg else f"not /{p}/" for neg, p in case.patterns]
        words += [repr(c) for c in case.contains]
        return "refused" + (f": {', '.join(words)}" if words else "")
    checks = [f"/{p}/" if not neg else f"not /{p}/" for neg, p in case.patterns]
    checks += [f"{k}: {json.dumps(v[0], sort_keys=True)}" for k, v in case.properties.items()]
    if case.output is not None:
        checks.append(f"Output: {json.dumps(case.output, sort_keys=True)}")
    return "accepted" + (f": {', '.join(checks)}" if checks else "")


def _problems(case: Case, document: str | None, refusal: str | None) -> list[str]:
    if case.refused and refusal is None:
        return ["Cog refuses it, ours accepts it"]
    if not case.refused and refusal is not None:
        return ["Cog accepts it, ours refuses it"]
    problems = []
    if refusal is not None:
        if case.message is not None and refusal != case.message:
            problems.append("another sentence")
        printed = f"image build failed: {refusal}"
        for negated, pattern in case.patterns:
            if bool(re.search(pattern, printed)) == negated:
                problems.append(f"stderr {'matches' if negated else 'misses'} /{pattern}/")
        problems += [f"no {word!r}" for word in case.contains if word not in refusal]
        return problems
    assert document is not None
    for negated, pattern in case.patterns:
        if bool(re.search(pattern, document)) == negated:
            problems.append(f"label {'matches' if negated else 'misses'} /{pattern}/")
    parsed: dict[str, Any] = json.loads(document)
    schemas = parsed["components"]["schemas"]
    for name, (expected, required) in case.properties.items():
        got = schemas["Input"]["properties"].get(name)
        if got != expected:
            problems.append(f"{name} is {json.dumps(got, sort_keys=True)}")
        if (name in schemas["Input"].get("required", [])) != required:
            problems.append(f"{name} {'not ' if required else ''}required")
    if case.output is not None and schemas["Output"] != case.output:
        problems.append(f"Output is {json.dumps(schemas['Output'], sort_keys=True)}")
    return problems


def compare(case: Case, root: Path) -> Row:
    document, refusal = ours(case, root)
    problems = _problems(case, document, refusal)
    ours_text = f"refused: {refusal}" if refusal is not None else "accepted"
    if problems:
        ours_text += f" ({'; '.join(problems)})"
    cog_text = _cog_text(case)
    if not problems:
        return Row(case, cog_text, ours_text, "same", document=document)
    reason = schema_allowlist.reason(case.id)
    return Row(
        case, cog_text, ours_text, "allowed" if reason else "differs", reason or "", document
    )


def compare_all() -> list[Row]:
    rows = []
    for case in cases():
        with tempfile.TemporaryDirectory() as scratch:
            rows.append(compare(case, Path(scratch)))
    return rows


def stale_allowances(rows: list[Row]) -> list[str]:
    differing = {r.case.id for r in rows if r.outcome == "allowed"}
    return sorted(set(schema_allowlist.ALLOWED) - differing)

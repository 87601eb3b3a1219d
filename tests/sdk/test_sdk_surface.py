"""Differential: every public name of Cog 0.23.1's SDK (the wheel the tests pin) against ours.

Both surfaces are read by one probe (tests/conformance/sdk_probe.py) with one interpreter, the
one of Cog's venv: once as that venv has it, once with only the standard library and this
repository's `cog/` on its path. What is compared, item by item:
- the public modules, names and `__all__`s; each name's kind, call signature (annotations
  canonical), bases, abstract methods, dataclass fields, enum members, value; each member the
  SDK defines on a class; what touching a retired name prints (and that it prints once);
- behaviour (tests/conformance/sdk_cases.py): each function, class and class or static method
  called with typical and bad values for each parameter, chosen from its annotation in Cog's
  signature; and scenarios: BaseModel and BaseRunner subclasses, loading runners and the
  deprecation warnings that gives, paths and files from URLs, secrets, iterator types, metrics
  outside a prediction. Values, exceptions (type and message), warnings and output.

Cog's wheel has no schema generator of its own to compare with (its `cog._inspector` is private
and coglet no longer calls it; Cog's CLI writes the OpenAPI document): the schema our runtime
writes is compared with the bytes of Cog's own build in test_sdk_compat.py.

Where ours differs on purpose, ALLOWED says why. `python -m tests.sdk.test_sdk_surface` rewrites
docs/conformance/sdk.md, the table of both surfaces, which a test keeps current.
"""

from __future__ import annotations

import fnmatch
import json
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest

from tests.conformance import sdk_cases
from tests.conftest import REPO, TEST_CACHE

REFERENCE = TEST_CACHE / "cog-0.23.1-venv"
PROBE = REPO / "tests" / "conformance" / "sdk_probe.py"
REPORT = REPO / "docs" / "conformance" / "sdk.md"


@dataclass(frozen=True)
class Allowed:
    """A difference on purpose: the items it covers (fnmatch patterns), why, and how ours reads
    as Cog's (each (ours, Cog's) text replaced); with no replacements, items only ours has."""

    name: str
    items: tuple[str, ...]
    reason: str
    replace: tuple[tuple[str, str], ...] = ()


ALLOWED = (
    Allowed(
        "no default",
        ("cog*.Input*", "cog*.FieldInfo*", "Input: *"),
        "`Input()` without a default is `cog.input.MISSING`, not None: this SDK reads signatures "
        "when it runs and must tell it from `Input(default=None)`, which Cog's build tells "
        "apart by reading the source",
        (("_Missing: <required>", "None"), ("<required>", "None")),
    ),
    Allowed(
        "typed scope",
        ("cog.current_scope",),
        "returns the Scope type it is (Cog's is native code in coglet, annotated `object`): "
        "what type-checks against Cog's still does",
        (("-> Scope", "-> object"),),
    ),
    Allowed(
        "MISSING",
        ("cog.input.MISSING",),
        "the value of `Input()`'s missing default (see 'no default')",
    ),
    Allowed(
        "defined here",
        ("cog.predictor.CancelationException", "cog.types.Opaque"),
        "defined in this module, where Cog imports it from coglet or the private cog._opaque: "
        "the same object as `cog.CancelationException` / `cog.Opaque`",
    ),
    Allowed(
        "cog.scope",
        ("cog.scope", "cog.scope.*"),
        "the scope `current_scope()` returns and its metrics: in Cog, native code in coglet "
        "(`coglet._sdk`); the behaviour is compared through `current_scope()`",
    ),
)


def probe(command: str, ours: bool, given: Any = None) -> Any:
    """The probe's answer about Cog's SDK or ours, run in an empty folder and environment."""
    python = REFERENCE / "bin" / "python"
    if not python.exists():
        pytest.fail(f"Cog 0.23.1 is not installed at {REFERENCE}; run `make test-fixtures`")
    flags = ["-I", "-S", str(PROBE), "--root", str(REPO)] if ours else ["-I", str(PROBE)]
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run(
            [str(python), *flags, command],
            input=json.dumps(given) if given is not None else None,
            capture_output=True,
            text=True,
            cwd=folder,
            env={"PATH": "/usr/bin:/bin", "HOME": folder},
            timeout=120,
            check=False,
        )
    if done.returncode != 0:
        side = "ours" if ours else "Cog's"
        raise AssertionError(f"the probe failed on {side} SDK:\n{done.stderr}")
    return json.loads(done.stdout)


# --- surface: each item as one line of text ------------------------------------------------


def _summary(desc: dict[str, Any]) -> str:
    if "missing" in desc:
        return "missing: " + str(desc["missing"])
    kind = desc["kind"]
    parts = [kind]
    if kind == "class":
        parts.append(desc.get("call") or "(signature unknown)")
        parts.append("bases " + " → ".join(desc["mro"][1:]))
        if desc.get("metaclass"):
            parts.append("metaclass " + desc["metaclass"])
        if desc.get("abstract"):
            parts.append("abstract " + ", ".join(desc["abstract"]))
        if desc.get("dataclass"):
            frozen = "frozen " if desc["dataclass"]["frozen"] else ""
            parts.append(f"{frozen}dataclass [{'; '.join(desc['dataclass']['fields'])}]")
        if desc.get("enum"):
            parts.append("members " + ", ".join(f"{k}={v}" for k, v in desc["enum"].items()))
    elif kind in ("function", "staticmethod", "classmethod", "property"):
        parts.append(desc.get("signature") or "(signature unknown)")
        if desc.get("async"):
            parts.append("async")
        if desc.get("abstract"):
            parts.append("abstract")
        for overload in desc.get("overloads", []):
            parts.append("overload " + overload)
        if desc.get("settable"):
            parts.append("settable")
    elif "value" in desc:
        parts.append(str(desc["value"]))
    for when, said in desc.get("on_access", {}).items():
        parts.append(f"on access ({when}): {json.dumps(said, sort_keys=True)}")
    return "; ".join(parts)


def surface_items(dump: dict[str, Any]) -> dict[str, str]:
    items: dict[str, str] = {}
    for module, entry in dump.items():
        if "missing" in entry:
            items[module] = "missing: " + entry["missing"]
            continue
        declared = entry["all"]
        items[module] = "module" + (f"; __all__ {declared}" if declared is not None else "")
        for name, desc in entry["names"].items():
            items[f"{module}.{name}"] = _summary(desc)
            for member, mdesc in desc.get("members", {}).items():
                items[f"{module}.{name}.{member}"] = _summary(mdesc)
    return items


# --- the comparison ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    item: str
    cog: str | None  # None: Cog has no such item
    ours: str | None
    allowed: str | None  # the name of the Allowed that explains a difference

    @property
    def same(self) -> bool:
        return self.cog == self.ours

    @property
    def differs(self) -> bool:
        return not self.same and self.allowed is None


def _explain(item: str, cog: str | None, ours: str | None) -> str | None:
    for rule in ALLOWED:
        if not any(fnmatch.fnmatchcase(item, pattern) for pattern in rule.items):
            continue
        if not rule.replace:
            if cog is None:
                return rule.name
            continue
        if ours is None or cog is None:
            continue
        for mine, theirs in rule.replace:
            ours = ours.replace(mine, theirs)
        if ours == cog:
            return rule.name
    return None


def compare(cog: dict[str, str], ours: dict[str, str]) -> list[Row]:
    rows = []
    for item in sorted(cog.keys() | ours.keys()):
        a, b = cog.get(item), ours.get(item)
        rows.append(Row(item, a, b, None if a == b else _explain(item, a, b)))
    return rows


def _outcome(result: dict[str, Any]) -> str:
    return json.dumps(result, sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True)
class Comparison:
    surface: list[Row]
    cases: list[Row]
    python: str  # the version of the interpreter that read both (messages depend on it)


@cache
def comparison() -> Comparison:
    cog_dump = probe("surface", ours=False)
    ours_dump = probe("surface", ours=True)
    given = {"prelude": sdk_cases.prelude(cog_dump), "cases": sdk_cases.all_cases(cog_dump)}
    cog_cases = probe("cases", ours=False, given=given)
    ours_cases = probe("cases", ours=True, given=given)
    return Comparison(
        surface=compare(surface_items(cog_dump), surface_items(ours_dump)),
        cases=compare(
            {k: _outcome(v) for k, v in cog_cases.items()},
            {k: _outcome(v) for k, v in ours_cases.items()},
        ),
        python=subprocess.run(
            [
                str(REFERENCE / "bin" / "python"),
                "-I",
                "-c",
                "import platform as p; print(p.python_version())",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip(),
    )


def _listing(rows: list[Row]) -> str:
    return "\n".join(f"- {r.item}\n    Cog:  {r.cog}\n    ours: {r.ours}" for r in rows)


# --- the tests --------------------------------------------------------------------------------


def test_every_public_name_of_cogs_sdk_is_ours_with_its_signature() -> None:
    rows = comparison().surface
    assert len([r for r in rows if r.cog is not None]) > 150, "Cog's surface was not read"
    differing = [r for r in rows if r.differs]
    assert not differing, f"{len(differing)} items differ from Cog 0.23.1's:\n{_listing(differing)}"


def test_the_types_behave_as_cogs() -> None:
    rows = comparison().cases
    assert len(rows) > 500, "too few cases were made from Cog's surface"
    differing = [r for r in rows if r.differs]
    assert not differing, f"{len(differing)} cases differ from Cog 0.23.1:\n{_listing(differing)}"


def test_deprecated_names_warn_in_cogs_words() -> None:
    """Not vacuous: Cog's retired names print their notice once, and loading a legacy
    predictor warns; the tests above hold ours to the same texts."""
    found = {r.item: r.cog for r in comparison().surface}
    for name in ("cog.ExperimentalFeatureWarning", "cog.emit_metric"):
        assert "on access (first)" in (found[name] or ""), name
        assert "on access (again)" not in (found[name] or ""), name
    warned = " ".join(r.cog or "" for r in comparison().cases if "Warning" in (r.cog or ""))
    for text in (
        "BasePredictor is deprecated; use BaseRunner instead",
        "Predictor is deprecated; use Runner instead",
        "Runner.predict() is deprecated; use run() instead",
    ):
        assert text in warned, text


def test_every_allowed_difference_is_used() -> None:
    used = {r.allowed for r in comparison().surface + comparison().cases}
    assert not [a.name for a in ALLOWED if a.name not in used], "an ALLOWED entry explains nothing"


def test_the_report_is_current() -> None:
    assert REPORT.read_text() == report(comparison()), (
        f"{REPORT.relative_to(REPO)} is stale: run `python -m tests.sdk.test_sdk_surface`"
    )


# --- the report -------------------------------------------------------------------------------


def _cell(text: str | None, limit: int = 400) -> str:
    if text is None:
        return "—"
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", "↵").replace("`", "'")


def _status(row: Row) -> str:
    if row.same:
        return "same"
    return f"differs: {row.allowed}" if row.allowed else "**DIFFERS**"


def _tally(rows: list[Row]) -> str:
    same = sum(r.same for r in rows)
    allowed = sum(not r.same and r.allowed is not None for r in rows)
    return (
        f"{len(rows)} items: {same} the same, {allowed} different with a reason below, "
        f"{sum(r.differs for r in rows)} different without one"
    )


def _shape(outcome: str) -> str:
    """A case's outcome in a word: what it returned (its type) or raised, and its warnings."""
    result = json.loads(outcome)
    word = "raises " + str(result["raises"][0]) if "raises" in result else "value"
    if "warnings" in result:
        word += " + " + ", ".join(w[0] for w in result["warnings"])
    if "stderr" in result:
        word += " + stderr"
    return word


def _calls_table(rows: list[Row]) -> list[str]:
    """Generated calls, one line per callable: how many, what came of them."""
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(row.item.split("(", 1)[0], []).append(row)
    lines = []
    for target, group in sorted(groups.items()):
        shapes = Counter(_shape(r.cog) for r in group if r.cog is not None)
        told = ", ".join(f"{n} x {s}" for s, n in sorted(shapes.items()))
        statuses = Counter(_status(r) for r in group)
        ours = (
            "same"
            if set(statuses) == {"same"}
            else ", ".join(f"{n} x {s}" for s, n in sorted(statuses.items()))
        )
        lines.append(
            f"| `{target}(…)` x {len(group)} | {_cell(told)} | {ours} | the_types_behave_as_cogs |"
        )
    return lines


def report(found: Comparison) -> str:
    calls = [r for r in found.cases if r.item.startswith("cog.")]
    scenarios = [r for r in found.cases if not r.item.startswith("cog.")]
    lines = [
        "# The SDK against Cog 0.23.1",
        "",
        "Generated by `python -m tests.sdk.test_sdk_surface` (tests/sdk/test_sdk_surface.py, which",
        "fails when this page is stale or an item differs without a reason). Cog's side is",
        "the `cog` 0.23.1 wheel the tests pin; ours is this repository's `cog/` without the",
        "command line. One probe, tests/conformance/sdk_probe.py, reads both with the same",
        "interpreter; tests/conformance/sdk_cases.py makes the behaviour cases from Cog's",
        "surface. Cog's wheel has no schema generator of its own (its private `_inspector` is",
        "no longer called; its CLI writes the schema): the schema is compared with the bytes",
        "of Cog's build in tests/sdk/test_sdk_compat.py.",
        "",
        f"Read with Python {found.python}, the interpreter of Cog's venv (`make test-fixtures`);",
        "another version words some messages differently: regenerate the page for it.",
        "",
        f"- Public names: {_tally(found.surface)}.",
        f"- Behaviour: {_tally(found.cases)}.",
        "",
        "## Differences on purpose",
        "",
        "| difference | items | reason |",
        "|---|---|---|",
    ]
    for rule in ALLOWED:
        count = sum(r.allowed == rule.name for r in found.surface + found.cases)
        lines.append(f"| {rule.name} | {count} | {_cell(rule.reason)} |")
    lines += [
        "",
        "## Public names",
        "",
        "Each module, name and class member: kind, signature, bases, fields, what touching",
        "it says. `—`: the side has no such item.",
        "",
        "| item | Cog | ours | test |",
        "|---|---|---|---|",
    ]
    for row in found.surface:
        ours = "same" if row.same else _cell(row.ours)
        lines.append(
            f"| `{row.item}` | {_cell(row.cog)} | {ours} | "
            f"every_public_name_of_cogs_sdk_is_ours_with_its_signature: {_status(row)} |"
        )
    lines += [
        "",
        "## Calls made from Cog's signatures",
        "",
        "Each callable with typical and bad values for each parameter, one at a time:",
        "how many calls, and what they gave in Cog (the value or exception of each is compared).",
        "",
        "| callable | Cog | ours | test |",
        "|---|---|---|---|",
        *_calls_table(calls),
        "",
        "## Scenarios",
        "",
        "| case | Cog | ours | test |",
        "|---|---|---|---|",
    ]
    for row in scenarios:
        ours = "same" if row.same else _cell(row.ours)
        lines.append(
            f"| {_cell(row.item)} | {_cell(row.cog)} | {ours} | "
            f"the_types_behave_as_cogs: {_status(row)} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(report(comparison()))
    print(f"wrote {REPORT.relative_to(REPO)}")

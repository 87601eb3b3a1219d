"""The runtime's answers to every failure mode, against coglet's (Cog 0.23.1's server).

Coglet's answers are recorded in `tests/conformance/coglet_runtime.json` by running its own
server (the PyPI wheel, in `$COG_TEST_CACHE/cog-0.23.1-venv`) on each group of
`runtime_cases.py`; ours are taken live, and each case is compared byte for byte after the
normalization below. `python -m tests.conformance.runtime_compare` records coglet's answers
again (it needs Cog's venv); tests/runtime/test_runtime_errors_live.py checks that the recording is
still what coglet answers.

What is normalized, on both sides, and why (everything else is compared as sent):
- what differs by run or machine: `predict_time`, `started_at`/`completed_at`, the port of
  the loopback server, coglet's build stamp and the Python version in `version`, and the slot
  id coglet names when setup fails;
- the logs of a failed or canceled prediction: coglet always answers `""`; ours keeps what the
  prediction printed (and, when the worker died, how it died), which is what a user needs;
- the setup logs in /health-check: after a successful setup coglet's are its own log lines (not
  the model's); after a failed one, coglet's are one sentence, which is also the last line of
  ours, after the setup's own output and traceback (so only that line is compared).
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.jsonbody import dumps
from tests.conformance.runtime_allowlist import ALLOWED
from tests.conformance.runtime_cases import CASES, GROUPS, Answer, Case, Context, Group
from tests.conftest import TEST_CACHE, LoopbackServer, _handler, _serving
from tests.runtime_server import FIXTURES, serve

RECORDING = Path(__file__).with_name("coglet_runtime.json")
REFERENCE = TEST_CACHE / "cog-0.23.1-venv"
LOOPBACK = "http://LOOPBACK/"


@contextmanager
def loopback() -> Iterator[LoopbackServer]:
    state = LoopbackServer()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    yield from _serving(state, server)


# --- normalization -------------------------------------------------------------------------

_STRING = r'"((?:[^"\\]|\\.)*)"'


def _string(text: str) -> str:
    return dumps(text)


def _logs(body: str, change: Any) -> str:
    """`body` with its first `"logs":"..."` replaced by what `change` makes of the text (None:
    the field is left out, with its comma)."""
    found = re.search(r',?"logs":' + _STRING, body)
    if found is None:
        return body
    new = change(json.loads(f'"{found.group(1)}"'))
    if new is None:
        return body[: found.start()] + body[found.end() :]
    comma = "," if found.group(0).startswith(",") else ""
    return body[: found.start()] + f'{comma}"logs":{_string(new)}' + body[found.end() :]


def normalized(answer: Answer, loopback_url: str) -> Answer:
    body = answer.body.replace(loopback_url, LOOPBACK)
    body = re.sub(r'"predict_time":[0-9.e+-]+', '"predict_time":T', body)
    body = re.sub(r'"(started_at|completed_at)":"[^"]+"', r'"\1":"TS"', body)
    body = re.sub(r'"git_sha":"[^"]*","build_time":"[^"]*",', "", body)
    body = re.sub(r"\(slot [0-9a-f-]{36}\)", "(slot SLOT)", body)
    body = re.sub(r'"python":"[0-9.]+"', '"python":"PY"', body)  # whichever ran the test
    try:
        parsed = json.loads(answer.body)
    except json.JSONDecodeError:
        return Answer(answer.code, body)
    if not isinstance(parsed, dict):
        return Answer(answer.code, body)
    if parsed.get("status") in ("failed", "canceled") and "id" in parsed:
        body = _logs(body, lambda logs: "")
    setup = parsed.get("setup")
    if isinstance(setup, dict) and setup.get("status") == "succeeded":
        body = _logs(body, lambda logs: None)
    elif isinstance(setup, dict) and setup.get("status") == "failed":
        body = _logs(body, lambda logs: logs.rsplit("\n", 1)[-1])
    return Answer(answer.code, body)


# --- running the cases ---------------------------------------------------------------------


def _project(group: Group, workdir: Path) -> Path:
    project = workdir / group.name
    shutil.copytree(FIXTURES, project, ignore=shutil.ignore_patterns("__pycache__"))
    for name, text in group.files.items():
        (project / name).write_text(text)
    return project


def run_group(
    group: Group, side: str, lo: LoopbackServer, workdir: Path, schema: str | None = None
) -> tuple[dict[str, Answer], str | None]:
    """Each case's answer from `side` ("ours" or "coglet"), and (ours) the OpenAPI schema that
    coglet validates inputs against, as `cog build` would have written it."""
    project = _project(group, workdir / side)
    context = Context(lo, project)
    args = group.args(context)
    env = dict(group.env)
    options: dict[str, Any] = {}
    if side == "coglet":
        python = REFERENCE / "bin" / "python"
        if not python.exists():
            raise FileNotFoundError(f"Cog 0.23.1 is not installed at {REFERENCE}")
        env["PATH"] = f"{REFERENCE / 'bin'}:{os.environ['PATH']}"
        options = {"python": str(python), "ours": False}
        if schema is not None:
            (project / ".cog").mkdir()
            (project / ".cog" / "openapi_schema.json").write_text(schema)
    answers: dict[str, Answer] = {}
    with serve(group.fixture, *args, cwd=project, env=env, ready=group.ready, **options) as server:
        if side == "ours":
            response = server.http.get("/openapi.json")
            schema = response.text if response.status_code == 200 else None
        for case in group.cases:
            answers[case.id] = normalized(case.probe(server, context), lo.url(""))
    return answers, schema


def run_all(sides: tuple[str, ...]) -> dict[str, dict[str, Answer]]:
    """Every case's answer from each side, by side."""
    out: dict[str, dict[str, Answer]] = {side: {} for side in sides}
    with loopback() as lo, tempfile.TemporaryDirectory(prefix="cog-runtime-errors-") as tmp:
        for group in GROUPS:
            schema = None
            for side in ("ours", "coglet"):
                if side == "ours" or "coglet" in sides:
                    answers, found = run_group(group, side, lo, Path(tmp), schema)
                    schema = found if side == "ours" else schema
                    if side in sides:
                        out[side].update(answers)
    return out


# --- the recording of coglet's answers ----------------------------------------------------


def recorded() -> dict[str, Answer]:
    data = json.loads(RECORDING.read_text())
    return {k: Answer(v["code"], v["body"]) for k, v in data["answers"].items()}


def record(answers: dict[str, Answer]) -> None:
    data = {
        "coglet": "0.23.1 (PyPI wheel coglet-0.23.1, cog-0.23.1)",
        "python": sys.version.split()[0],
        "answers": {k: {"code": a.code, "body": a.body} for k, a in sorted(answers.items())},
    }
    RECORDING.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")


# --- comparing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    case: Case
    coglet: Answer
    ours: Answer
    outcome: str  # same, allowed, differs, stale (allowed but now the same)
    reason: str = ""


def compare(coglet: dict[str, Answer], ours: dict[str, Answer]) -> list[Row]:
    rows = []
    for case_id, case in CASES.items():
        theirs, mine = coglet[case_id], ours[case_id]
        reason = ALLOWED.get(case_id, "")
        if theirs == mine:
            outcome = "stale" if reason else "same"
        else:
            outcome = "allowed" if reason else "differs"
        rows.append(Row(case, theirs, mine, outcome, reason))
    return rows


def main() -> None:
    """Records coglet's answers (and prints how ours compare)."""
    answers = run_all(("ours", "coglet"))
    record(answers["coglet"])
    for row in compare(answers["coglet"], answers["ours"]):
        print(f"{row.outcome:8} {row.case.id}")
        if row.outcome in ("differs", "allowed"):
            print(f"    coglet {row.coglet.code} {row.coglet.body[:300]}")
            print(f"    ours   {row.ours.code} {row.ours.body[:300]}")


if __name__ == "__main__":
    main()

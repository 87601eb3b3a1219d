"""The command line, checked by difference with Cog's: every command, flag, shorthand and flag
form of Cog's CLI (tests/conformance/cog_cli.json, read out of replicate/cog's cobra command
definitions by extract_cog.py) parses in ours as in Cog's, to the same value, with the same
user-visible defaults; `-i` values of every input type are sent as Cog's CLI sends them
(tests/conformance/cog_inputs_oracle.py follows pkg/predict/input.go), and `--secret`, `-e`
and `--json` values are read as Cog reads them. A difference fails unless
tests/conformance/cli_allowlist.py explains it; docs/conformance/cli.md is the generated table.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from cog.cli import main
from tests.conformance import cli_compare, report
from tests.conformance.cli_compare import COMMANDS, DATA, SECTIONS, Row
from tests.conftest import REPO


@pytest.fixture(scope="module")
def rows() -> dict[str, list[Row]]:
    return {name: section() for name, section in SECTIONS.items()}


@pytest.mark.parametrize("section", list(SECTIONS))
def test_each_item_parses_as_in_cog(rows: dict[str, list[Row]], section: str) -> None:
    differing = [f"{r.id}\n  Cog:  {r.cog}\n  ours: {r.ours}" for r in rows[section]]
    differing = [d for d, r in zip(differing, rows[section], strict=True) if r.outcome == "differs"]
    assert not differing, "\n".join(differing)


def test_every_command_and_flag_of_cogs_is_an_item(rows: dict[str, list[Row]]) -> None:
    ids = {r.id for section in rows.values() for r in section}
    for path, spec in COMMANDS.items():
        assert path in ids
        for flag in spec["flags"]:
            if not flag["persistent"] and cli_compare.our_parser(path) is not None:
                assert f"{path} --{flag['name']}: accepted" in ids
    assert DATA["cog"]["repository"] == "replicate/cog" and len(DATA["cog"]["commit"]) == 40
    assert len(COMMANDS) >= 16 and sum(len(s["flags"]) for s in COMMANDS.values()) >= 90


def test_the_allowlist_holds_only_differences_that_exist(rows: dict[str, list[Row]]) -> None:
    every = [r for section in rows.values() for r in section]
    assert cli_compare.stale_allowances(every) == []


def test_the_report_is_current(rows: dict[str, list[Row]]) -> None:
    every = [r for section in rows.values() for r in section]
    assert report.CLI_REPORT.read_text() == report.render_cli(every), (
        "docs/conformance/cli.md is stale: run `python -m tests.conformance.report`"
    )


def parse(*argv: str) -> argparse.Namespace:
    return main.parser(argv[0]).parse_args(list(argv))


def test_cogs_flags_that_mean_nothing_here_are_taken_and_answered(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = parse("build", "--strip", "--openapi-schema", "schema.json", "--timestamp", "0")
    assert (args.cog_strip, args.cog_openapi_schema, args.cog_timestamp) == (True, "schema.json", 0)
    notes = capsys.readouterr().err.splitlines()
    assert len(notes) == 3 and all(n.startswith("note: --") for n in notes)
    assert notes[0].startswith("note: --strip: shared libraries come from pinned packages")
    assert parse("build", "-f", "./cog.yaml").file == "cog.yaml"


def test_setup_timeout_is_cogs_uint32_with_its_default() -> None:
    assert parse("run").setup_timeout == 300
    assert parse("run", "--setup-timeout", "0x10").setup_timeout == 16
    for bad in ("1.5", "-1"):
        with pytest.raises(SystemExit):
            parse("run", f"--setup-timeout={bad}")


def test_use_replicate_token_passes_the_token_to_the_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_abc")
    args = parse("run", "-e", "A=1", "--use-replicate-token", "-e", "B=2")
    assert args.env == ["A=1", "REPLICATE_API_TOKEN=r8_abc", "B=2"]


def test_login_takes_cogs_token_flag_and_default_registry() -> None:
    args = parse("login", "--token-stdin", "-u", "me")
    assert (args.registry, args.password_stdin, args.username) == ("r8.im", True, "me")


def _cog(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cog.cli.main", *args],
        cwd=root,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin", "COG_STORE_DIR": str(root / "store")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_command_line_refuses_as_cog_would_tell(tmp_path: Path) -> None:
    """Through `cog` itself: what cannot be honoured is refused before anything runs, in one
    sentence with a hint; --help lists Cog's flags."""
    other = _cog(tmp_path, "build", "-f", "other.yaml")
    assert other.returncode == 2
    assert "error: argument -f/--file: 'other.yaml': only cog.yaml is read" in other.stderr
    token = _cog(tmp_path, "run", "--use-replicate-token")
    assert token.returncode == 2
    assert (
        "Failed to find REPLICATE_API_TOKEN in the current environment when called with "
        "--use-replicate-token"
    ) in token.stderr
    shown = _cog(tmp_path, "run", "--help")
    assert shown.returncode == 0
    for flag in ("--input", "--output", "--env", "--json", "--setup-timeout", "--file", "--gpus"):
        assert flag in shown.stdout

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
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cog.cli import main
from tests.conformance import cli_compare, extract_cog, report
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


GO_SOURCES = {
    "pkg/cli/root.go": """package cli

func NewRootCommand() (*cobra.Command, error) {
	rootCmd := cobra.Command{
		Use: "cog",
		// cmd.Flags().Bool("in-a-comment", false, "not a flag")
	}
	setPersistentFlags(&rootCmd)
	rootCmd.AddCommand(
		newBuildCommand(),
		newRunCommand(),
	)
	return &rootCmd, nil
}

func setPersistentFlags(cmd *cobra.Command) {
	cmd.PersistentFlags().BoolVar(&debug, "debug", false, "Show debugging output")
	cmd.PersistentFlags().StringVar(&host, "registry", global.Host, "Registry host")
	_ = cmd.PersistentFlags().MarkHidden("registry")
}
""",
    "pkg/cli/build.go": """package cli

var (
	port = 8393
)

func newBuildCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "build",
		Aliases: []string{"b"},
		Long:    `Builds; cmd.Flags().Bool("in-a-string", false, "") is text`,
		Args:    cobra.NoArgs,
	}
	addConfigFlag(cmd)
	addStripFlag(cmd)
	cmd.Flags().IntVarP(&p, "port", "p", port, "Port")
	cmd.Flags().StringArrayVar(&s, "secret", []string{}, "Secrets")
	cmd.Flags().StringVar(&d, "dockerfile", "", "Dockerfile")
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name == "dockerfile" {
			f.Hidden = true
		}
	})
	return cmd
}

func addConfigFlag(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&configFilename, "file", "f", "cog.yaml", "The config file.")
}

func addStripFlag(cmd *cobra.Command) {
	const stripFlag = "strip"
	cmd.Flags().BoolVar(&strip, stripFlag, false, "Strip")
	_ = cmd.Flags().MarkHidden(stripFlag)
}
""",
    "pkg/cli/run.go": """package cli

func newRunCommand() *cobra.Command {
	return newPredictionCommand("run", true)
}

func newPredictionCommand(use string, hidden bool) *cobra.Command {
	cmd := &cobra.Command{
		Use:    use + " [image]",
		Hidden: hidden,
		Args:   cobra.MaximumNArgs(1),
	}
	cmd.Flags().Uint32Var(&timeout, "setup-timeout", 5*60, "Timeout")
	return cmd
}
""",
    "pkg/global/global.go": 'package global\n\nconst Host = "r8.im"\n',
    "pkg/config/config_file.go": """package config

type configFile struct {
	Build *buildFile `json:"build,omitempty" yaml:"build,omitempty"`
}

type buildFile struct {
	GPU *bool `json:"gpu,omitempty" yaml:"gpu,omitempty"`
}
""",
    "pkg/config/config.go": "package config\n",
    "pkg/config/data/config_schema_v1.0.json": '{"type": "object"}',
}


def test_the_extractor_reads_cobra_commands_and_config_structs(tmp_path: Path) -> None:
    """extract_cog.py on a repository of Go sources shaped as Cog's: flags through helpers and
    constructors with parameters, hidden ones, defaults from constants, comments and strings
    that only look like flags."""
    repo = tmp_path / "repo"
    for name, text in GO_SOURCES.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    for argv in (["init", "-q"], ["add", "."], ["commit", "-qm", "x"], ["tag", "v0.1.0"]):
        subprocess.run([*git, *argv], check=True, capture_output=True)
    out = tmp_path / "out"
    out.mkdir()
    extract_cog.main(str(repo / ".git"), "HEAD", out)
    cli = json.loads((out / "cog_cli.json").read_text())
    assert cli["cog"]["version"] == "v0.1.0"
    commands = cli["commands"]
    assert list(commands) == ["cog", "cog build", "cog run"]
    flags = {p: {f["name"]: f for f in c["flags"]} for p, c in commands.items()}
    assert set(flags["cog"]) == {"debug", "registry"}
    assert flags["cog"]["registry"] == {
        "name": "registry",
        "shorthand": "",
        "type": "string",
        "default": "r8.im",
        "default_expr": "global.Host",
        "hidden": True,
        "persistent": True,
    }
    build = flags["cog build"]
    assert list(build) == ["file", "strip", "port", "secret", "dockerfile"]
    assert (build["file"]["shorthand"], build["file"]["default"]) == ("f", "cog.yaml")
    assert [build[n]["hidden"] for n in ("strip", "dockerfile", "port")] == [True, True, False]
    assert (build["port"]["type"], build["port"]["default"]) == ("int", 8393)
    assert (build["secret"]["type"], build["secret"]["default"]) == ("stringArray", [])
    assert commands["cog build"]["aliases"] == ["b"] and commands["cog build"]["args"] == "NoArgs"
    run = commands["cog run"]
    assert (run["use"], run["hidden"], run["args"]) == ("run [image]", True, "MaximumNArgs(1)")
    assert flags["cog run"]["setup-timeout"]["default"] == 300
    config = json.loads((out / "cog_config.json").read_text())
    assert config["structs"]["buildFile"] == [
        {"go": "GPU", "type": "*bool", "yaml": "gpu", "json": "gpu", "omitempty": True}
    ]

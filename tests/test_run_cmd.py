"""`cog run` (and `cog predict`, Cog's deprecated alias): inputs as -i or --json, the
model's environment from -e, and the output printed as Cog's CLI prints it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.projects import cog, project

PREDICTOR = """
import os
from cog import BaseModel, BasePredictor


class Output(BaseModel):
    zeta: bool
    alpha: str
    tag: str


class Predictor(BasePredictor):
    def predict(self, flag: bool, note: str = "") -> Output:
        return Output(zeta=not flag, alpha=note + os.environ.get("GREETING", ""), tag="<&>")
"""


def _project(tmp_path: Path) -> Path:
    root = project("hello-world", tmp_path)
    (root / "predict.py").write_text(PREDICTOR)
    return root


def test_run_takes_json_inputs_and_prints_the_prediction(
    offline: dict[str, str], tmp_path: Path
) -> None:
    root = _project(tmp_path)
    result = cog(root, offline, "run", "--json", '{"flag": true}')
    assert result.returncode == 0, result.stderr[-2000:]
    assert "deprecated" not in result.stderr
    printed = result.stdout
    assert printed.startswith('{\n  "status": "succeeded",\n  "output": {\n    "alpha": ""')
    assert '"zeta": false' in printed and '"tag": "\\u003c\\u0026\\u003e"' in printed
    assert json.loads(printed)["error"] == ""
    (root / "inputs.json").write_text('{"flag": false, "note": "from a file"}')
    from_file = cog(root, offline, "run", "--json", "@inputs.json")
    assert from_file.returncode == 0, from_file.stderr[-2000:]
    assert json.loads(from_file.stdout)["output"]["alpha"] == "from a file"
    stdin = subprocess.run(
        [sys.executable, "-m", "cog.cli.main", "run", "--json", "@-"],
        cwd=root,
        env=offline,
        input='{"flag": false, "note": "stdin"}',
        capture_output=True,
        text=True,
        check=False,
    )
    assert stdin.returncode == 0, stdin.stderr[-2000:]
    assert json.loads(stdin.stdout)["output"]["alpha"] == "stdin"


def test_predict_warns_and_env_reaches_the_model(offline: dict[str, str], tmp_path: Path) -> None:
    root = _project(tmp_path)
    result = cog(root, offline, "predict", "-i", "flag=true", "-e", "GREETING=hi")
    assert result.returncode == 0, result.stderr[-2000:]
    assert '"cog predict" is deprecated, use "cog run"' in result.stderr
    assert json.loads(result.stdout) == {"alpha": "hi", "tag": "<&>", "zeta": False}
    assert result.stdout.index('"alpha"') < result.stdout.index('"zeta"')  # sorted, as Go does


def test_bad_run_input_fails_before_building(offline: dict[str, str], tmp_path: Path) -> None:
    root = _project(tmp_path)
    cases = [
        (["--json", '{"flag": true}', "-i", "flag=true"], "Must use one of --json or --input"),
        (["--json", "{not json"], "--json is not valid JSON"),
        (["--json", "[1]"], "--json must be a JSON object of inputs"),
        (["--json", "@missing.json"], "cannot read the JSON inputs from missing.json"),
        (["-i", "flag=true", "-e", "NOEQUALS"], "is not NAME=VALUE"),
    ]
    for args, message in cases:
        result = cog(root, offline, "run", *args)
        assert result.returncode == 1 and message in result.stderr, (args, result.stderr)
        assert "building " not in result.stderr


def test_runs_resolve_localhost_and_the_host_as_docker_does(
    offline: dict[str, str], tmp_path: Path
) -> None:
    """Webhook and upload URLs name `host.docker.internal`, as in Cog's container; a native
    run (the project, or an image by name) resolves it, and `localhost`, to this host."""
    root = project("hello-world", tmp_path)
    (root / "predict.py").write_text(
        "import socket\nfrom cog import BasePredictor\n\n"
        "class Predictor(BasePredictor):\n"
        "    def predict(self) -> str:\n"
        "        names = ('localhost', 'host.docker.internal')\n"
        "        return ' '.join(socket.gethostbyname(n) for n in names)\n"
    )
    native = cog(root, offline, "run")
    assert native.returncode == 0, native.stderr[-2000:]
    assert native.stdout.strip() == "127.0.0.1 127.0.0.1"
    assert cog(root, offline, "build", "-t", "resolver").returncode == 0
    image = cog(tmp_path, offline, "run", "resolver")
    assert image.returncode == 0, image.stderr[-2000:]
    assert image.stdout.strip() == "127.0.0.1 127.0.0.1"

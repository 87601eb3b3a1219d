"""cog.yaml as Cog reads it: a key set to null is a key not set (Cog decodes cog.yaml into Go
fields that are pointers and slices, and its schema allows null for every list), and a value
of the wrong type is refused in Cog's words, never pydantic's.

Cog's words are its own source's (replicate/cog pkg/config, at v0.22.0 and five commits after
it, the newest in reach: validate.go and errors.go; the schema is data/config_schema_v1.0.json):
a schema breach is `schema error in "FIELD": MESSAGE` (its SchemaError; MESSAGE as
getSchemaErrorDescription words gojsonschema's: `must be a list or null`, an object being a
"mapping" and an array a "list", `KEY is required`, `FIELD must be one of the following:
"secret"`); a rule is `invalid FIELD "VALUE": MESSAGE` (its ValidationError). Where Cog's Go
decoder refuses a wrong type before its schema sees it (`cannot construct !!str ... into
[]config.runItemFile`), the schema's wording stands in, as it names the field rather than a Go
type. tests/conformance/test_conformance_config.py checks every field and type against
Cog's own data.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from derivations.config import load_config
from tests.conftest import REPO
from tests.projects import cog, project

# Every list of Cog's schema (each `"type": ["array", "null"]`) and every mapping, holding
# nothing but a comment, as a cog.yaml has it while a user fills it in.
NULL_KEYS = {
    "build.python_packages": "build:\n  python_version: '3.11'\n  python_packages:\n    # later\n",
    "build.pre_install": "build:\n  python_version: '3.11'\n  pre_install:\n    # later\n",
    "build.system_packages": "build:\n  python_version: '3.11'\n  system_packages:\n    # later\n",
    "build.run": "build:\n  python_version: '3.11'\n  run:\n    # - echo later\n",
    "build.run.mounts": (
        "build:\n  python_version: '3.11'\n  run:\n    - command: echo hi\n      mounts:\n"
    ),
    "environment": "environment:\n  # - HF_HOME=/src/cache\n",
    "weights": "weights:\n  # - name: model\n",
    "build": "build:\n  # python_version: '3.12'\n",
    "concurrency": "concurrency:\n  # max: 4\n",
    "build.gpu": "build:\n  python_version: '3.11'\n  gpu:\n",
    "image": "image: ~\n",
    # A null item of a list is skipped, as Cog's decoder skips it.
    "build.system_packages.0": "build:\n  python_version: '3.11'\n  system_packages: [~]\n",
    "build.run.0": "build:\n  python_version: '3.11'\n  run:\n    -\n",
    "environment.0": "environment: [~]\n",
}


@pytest.mark.parametrize("key", list(NULL_KEYS))
def test_a_key_set_to_null_is_a_key_not_set(tmp_path: Path, key: str) -> None:
    (tmp_path / "cog.yaml").write_text(NULL_KEYS[key] + "predict: predict.py:Predictor\n")
    config = load_config(tmp_path)
    build = config.build
    assert (build.python_packages, build.pre_install, build.system_packages) == ((), (), ())
    assert [(s.command, s.mounts) for s in build.run] == (
        [("echo hi", ())] if key == "build.run.mounts" else []
    )
    assert (config.environment, config.weights, config.concurrency) == ((), (), None)
    assert (build.gpu, config.image, config.predict) == (False, None, "predict.py:Predictor")
    # A build section that holds only comments is none: Cog's default Python, none required.
    assert build.python_version == (
        "3.11" if "python_version: '3.11'" in NULL_KEYS[key] else "3.13"
    )


def test_null_python_version_is_required_as_cog_says(tmp_path: Path) -> None:
    assert run_cog(tmp_path, "build:\n  python_version:\n  gpu: false\n", "build") == (
        "error: cog.yaml: invalid build.python_version: python_version is required. Add it to "
        'the build section of your cog.yaml, e.g. `python_version: "3.13"`\n'
        "hint: fix cog.yaml and retry\n"
    )


def run_cog(root: Path, text: str, *args: str) -> str:
    """stderr of a `cog` command in a project whose cog.yaml is `text` (which must fail)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "cog.yaml").write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "cog.cli.main", *args],
        cwd=root,
        env={"PYTHONPATH": str(REPO), "COG_STORE_DIR": str(root / "store"), "PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    return done.stderr


def test_a_project_of_null_lists_builds_nothing_from_them_through_the_cli(tmp_path: Path) -> None:
    """`cog debug` prints what the build is made of: no apt, no pip of the user's, no steps."""
    (tmp_path / "cog.yaml").write_text(
        "build:\n  python_version: '3.11'\n  system_packages:\n  python_packages:\n"
        "  pre_install:\n  run:\n    # - echo later\nenvironment:\nweights:\nconcurrency:\n"
        "predict: predict.py:Predictor\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "cog.cli.main", "debug"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    runs = [line for line in done.stdout.splitlines() if line.startswith("RUN ")]
    assert runs == ["RUN pip install --no-cache-dir cog==0.23.1"]  # the SDK, nothing else


def test_a_project_of_null_lists_locks(offline: dict[str, str], tmp_path: Path) -> None:
    root = project("hello-world", tmp_path)  # python_packages: the wheel cache's index options
    config = root / "cog.yaml"
    config.write_text(
        config.read_text().replace(
            "build:\n",
            "build:\n  system_packages:\n    # - ffmpeg\n  run:\n    # - echo later\n"
            "  pre_install:\n",
            1,
        )
        + "environment:\nweights:\nconcurrency:\n"
    )
    locked = cog(root, offline, "lock")
    assert locked.returncode == 0, locked.stderr[-2000:]
    lock = json.loads((root / "cog.lock").read_text())
    assert lock["system"]["packages"] == [] and not lock.get("run")
    assert "is ignored" not in locked.stderr  # no null key taken for an unknown one


# Wrong types and broken rules, each as `cog build` says it: the exact sentence.
WRONG = {
    "run-a-string": (
        "build:\n  python_version: '3.11'\n  run: echo hi\n",
        'cog.yaml: schema error in "build.run": must be a list or null',
    ),
    "run-item-a-number": (
        "build:\n  python_version: '3.11'\n  run: [42]\n",
        'cog.yaml: schema error in "build.run.0": must be a string',  # anyOf: its first branch
    ),
    "run-item-without-command": (
        "build:\n  python_version: '3.11'\n  run:\n    - mounts: []\n",
        'cog.yaml: schema error in "build.run.0": command is required',
    ),
    "mount-of-another-type": (
        "build:\n  python_version: '3.11'\n  run:\n    - command: x\n"
        "      mounts: [{type: cache, id: a, target: b}]\n",
        'cog.yaml: schema error in "build.run.0.mounts.0.type": build.run.0.mounts.0.type must '
        'be one of the following: "secret"',
    ),
    "system-packages-a-string": (
        "build:\n  python_version: '3.11'\n  system_packages: ffmpeg\n",
        'cog.yaml: schema error in "build.system_packages": must be a list or null',
    ),
    "python-packages-a-mapping": (
        "build:\n  python_version: '3.11'\n  python_packages: {torch: 2}\n",
        'cog.yaml: schema error in "build.python_packages": must be a list or null',
    ),
    "gpu-not-a-boolean": (
        "build:\n  python_version: '3.11'\n  gpu: sometimes\n",
        'cog.yaml: schema error in "build.gpu": must be a boolean',
    ),
    "python-version-a-list": (
        "build:\n  python_version: [3.11]\n",
        'cog.yaml: schema error in "build.python_version": must be a string or number',
    ),
    "build-a-list": ("build: [1, 2]\n", 'cog.yaml: schema error in "build": must be a mapping'),
    "concurrency-max-a-word": (
        "concurrency:\n  max: two\n",
        'cog.yaml: schema error in "concurrency.max": must be an integer',
    ),
    "concurrency-max-zero": (
        "concurrency:\n  max: 0\n",
        'cog.yaml: invalid concurrency.max "0": must be at least 1',
    ),
    "environment-a-string": (
        "environment: A=1\n",
        'cog.yaml: schema error in "environment": must be a list or null',
    ),
    "environment-name": (
        "environment: [1A=2]\n",
        'cog.yaml: schema error in "environment.0": Does not match pattern '
        "'^[A-Za-z_][A-Za-z0-9_]*=.*$'",
    ),
    "environment-reserved": (
        "environment: [PATH=/x]\n",
        'cog.yaml: invalid environment: environment variable "PATH" is not allowed: '
        "reserved for internal use",
    ),
    "image-a-list": ("image: [a]\n", 'cog.yaml: schema error in "image": must be a string'),
    "weights-a-mapping": (
        "weights: {a: b}\n",
        'cog.yaml: schema error in "weights": must be a list or null',
    ),
    "run-a-list": (
        "run: [predict.py:Predictor]\n",
        'cog.yaml: schema error in "run": must be a string',
    ),
    "run-reference": (
        "run: run.py\n",
        "cog.yaml: invalid run \"run.py\": must be in the form 'run.py:Runner'",
    ),
    "cuda-without-minor": (
        "build:\n  python_version: '3.11'\n  gpu: true\n  cuda: '12'\n",
        'cog.yaml: invalid build.cuda "12": must include both major and minor versions '
        "(e.g., '11.8')",
    ),
    "packages-and-requirements": (
        "build:\n  python_version: '3.11'\n  python_packages: [a]\n  python_requirements: r\n",
        "cog.yaml: invalid build: only one of python_packages or python_requirements can be "
        "set, not both",
    ),
}


@pytest.mark.parametrize("case", list(WRONG))
def test_a_wrong_value_is_refused_in_cogs_words(tmp_path: Path, case: str) -> None:
    text, sentence = WRONG[case]
    reference = "" if text.startswith("run:") else "predict: predict.py:Predictor\n"
    stderr = run_cog(tmp_path, text + reference, "build")
    assert stderr == f"error: {sentence}\nhint: fix cog.yaml and retry\n"
    assert "Input should" not in stderr and "valid tuple" not in stderr

"""`cog doctor [--fix]`: each check, its words and exit code, and the files `--fix` rewrites,
driven through the real CLI in a project on disk."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, CogResult

CLEAN_RUNNER = """\
from cog import BaseRunner


class Runner(BaseRunner):
    def run(self, text: str) -> str:
        return "hello " + text
"""

STARTER_PREDICTOR = """\
from cog import BasePredictor

class Predictor(BasePredictor):
    def predict(self, s: str) -> str:
        return "hello " + s
"""


def doctor(cwd: Path, *args: str, env: dict[str, str] | None = None) -> CogResult:
    proc = subprocess.run(
        [sys.executable, "-m", "cog.cli.main", "doctor", *args],
        cwd=cwd,
        env={
            **os.environ,
            "PYTHONPATH": str(REPO),
            "COG_STORE_DIR": str(cwd.parent / "store"),
            "NO_COLOR": "1",
            **(env or {}),
        },
        capture_output=True,
        timeout=120,
        check=False,
    )
    result = CogResult(proc.returncode, proc.stdout.decode(), proc.stderr.decode())
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    return result


def make_project(tmp_path: Path, config: str, **files: str) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "cog.yaml").write_text(config)
    for name, text in files.items():
        (root / name.replace("_py", ".py")).write_text(text)
    return root


RUN_CONFIG = 'build:\n  python_version: "3.11"\nrun: "run.py:Runner"\n'
PREDICT_CONFIG = 'build:\n  python_version: "3.11"\npredict: "predict.py:Predictor"\n'


def test_a_clean_project_has_no_issues(tmp_path: Path) -> None:
    root = make_project(tmp_path, RUN_CONFIG, run_py=CLEAN_RUNNER)
    result = doctor(root)
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("NOTE: cog doctor is experimental.")
    assert "Running cog doctor...\n" in result.stderr
    assert "Config\n" in result.stderr and "Environment\n" in result.stderr
    assert result.stderr.rstrip().endswith("no issues found")
    assert result.stdout == ""


def test_the_project_is_found_from_a_subdirectory(tmp_path: Path) -> None:
    root = make_project(tmp_path, RUN_CONFIG, run_py=CLEAN_RUNNER)
    (root / "src").mkdir()
    result = doctor(root / "src")
    assert result.returncode == 0 and "no issues found" in result.stderr, result.stderr


def test_without_a_cog_yaml_it_says_so_in_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = doctor(tmp_path / "empty")
    assert result.returncode == 1
    assert "error: cog.yaml not found in" in result.stderr
    assert "\nhint: " in result.stderr


def test_another_config_file_name_is_read_with_f(tmp_path: Path) -> None:
    root = make_project(tmp_path, "build: [", run_py=CLEAN_RUNNER)
    (root / "other.yaml").write_text(RUN_CONFIG)
    assert doctor(root).returncode == 1
    result = doctor(root, "-f", "other.yaml")
    assert result.returncode == 0 and "no issues found" in result.stderr, result.stderr


def test_deprecated_fields_are_warnings_and_exit_zero(tmp_path: Path) -> None:
    config = RUN_CONFIG.replace("build:\n", "build:\n  python_packages:\n    - torch==2.0.0\n")
    root = make_project(tmp_path, config, run_py=CLEAN_RUNNER)
    result = doctor(root)
    assert result.returncode == 0, result.stderr
    assert (
        'cog.yaml — "build.python_packages" is deprecated: use a requirements.txt file instead'
        in result.stderr
    )
    assert "Found 1 warning." in result.stderr
    assert "no issues found" not in result.stderr


def test_invalid_yaml_and_schema_errors_exit_non_zero(tmp_path: Path) -> None:
    root = make_project(tmp_path, 'build:\n  python_version: "3.11\n', run_py=CLEAN_RUNNER)
    result = doctor(root)
    assert result.returncode == 1
    assert "cog.yaml has invalid YAML:" in result.stderr
    (root / "cog.yaml").write_text(RUN_CONFIG.replace("build:\n", "build:\n  gpuu: true\n"))
    result = doctor(root)
    assert result.returncode == 1
    assert "cog.yaml validation failed: unknown key build.gpuu" in result.stderr
    assert "did you mean build.gpu?" in result.stderr
    assert "Found 1 error." in result.stderr


def test_a_reference_to_a_missing_class_is_an_error(tmp_path: Path) -> None:
    config = PREDICT_CONFIG.replace("predict.py:Predictor", "predict.py:DoesNotExist")
    root = make_project(tmp_path, config, predict_py=STARTER_PREDICTOR)
    result = doctor(root)
    assert result.returncode == 1
    assert (
        'predict.py — class "DoesNotExist" not found in predict.py; found: Predictor'
        in result.stderr
    )


def test_a_reference_to_a_file_that_is_not_python_is_an_error(tmp_path: Path) -> None:
    root = make_project(tmp_path, RUN_CONFIG, run_py="class Runner(:\n")
    result = doctor(root)
    assert result.returncode == 1
    assert "cannot parse run.py: invalid syntax at line 1" in result.stderr


def test_fix_prints_the_remediation_of_what_it_cannot_fix(tmp_path: Path) -> None:
    root = make_project(tmp_path, PREDICT_CONFIG)
    result = doctor(root, "--fix")
    assert result.returncode == 1
    assert "Running cog doctor --fix..." in result.stderr
    assert "cog.yaml — predict.py not found" in result.stderr
    assert "Remediation: Create predict.py or update the predict field in cog.yaml" in result.stderr
    assert "because predict.py was not found" in result.stderr
    assert "(no auto-fix available)" not in result.stderr
    assert (root / "cog.yaml").read_text() == PREDICT_CONFIG


def test_a_missing_return_annotation_is_a_warning(tmp_path: Path) -> None:
    runner = CLEAN_RUNNER.replace(" -> str:", ":")
    root = make_project(tmp_path, RUN_CONFIG, run_py=runner)
    result = doctor(root)
    assert result.returncode == 0
    assert "run.py:5 — Runner.run() is missing a return type annotation" in result.stderr


def test_a_python_version_the_channel_lacks_is_an_error(tmp_path: Path) -> None:
    root = make_project(tmp_path, RUN_CONFIG.replace("3.11", "3.14"), run_py=CLEAN_RUNNER)
    result = doctor(root)
    assert result.returncode == 1
    assert "has no Python 3.14 (it has 3.10, 3.11, 3.12, 3.13)" in result.stderr


def test_a_torch_without_kernels_for_this_gpu_is_a_warning(tmp_path: Path) -> None:
    """As Cog's doctor: each GPU's compute capability (nvidia-smi, here a fake one reporting
    an H100 and an RTX 5090) against the floor of torch and CUDA with kernels for it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\nprintf '9.0\\n12.0\\n9.0\\n'\n")
    (bin_dir / "nvidia-smi").chmod(0o755)
    gpu = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    config = RUN_CONFIG.replace(
        "build:\n", 'build:\n  gpu: true\n  python_packages: ["torch==2.5.1"]\n'
    )
    root = make_project(tmp_path, config, run_py=CLEAN_RUNNER)
    result = doctor(root, env=gpu)
    assert result.returncode == 0, result.stderr  # a warning: the image runs on other GPUs
    assert "torch==2.5.1 (CUDA 12.4) ships no kernels for sm_120" in result.stderr
    fixing = doctor(root, "--fix", env=gpu).stderr  # nothing to fix: the remediation is said
    assert "Remediation: sm_120 requires torch>=2.7.0 built against CUDA>=12.8" in fixing
    assert "sm_90" not in result.stderr  # 2.5.1 has Hopper's kernels
    assert "sm_120" not in doctor(root, env=gpu | {"COG_SKIP_GPU_CHECK": "1"}).stderr
    newer = root / "cog.yaml"
    newer.write_text(config.replace("2.5.1", "2.7.1"))
    assert "ships no kernels" not in doctor(root, env=gpu).stderr


DEPRECATED_IMPORT = """\
import warnings
from cog import BaseRunner
from cog.types import ExperimentalFeatureWarning

warnings.filterwarnings("ignore", category=ExperimentalFeatureWarning)


class Runner(BaseRunner):
    def run(self, text: str) -> str:
        return "hello " + text
"""


def test_fix_removes_a_deprecated_import_and_what_used_it(tmp_path: Path) -> None:
    root = make_project(tmp_path, RUN_CONFIG, run_py=DEPRECATED_IMPORT)
    result = doctor(root)
    assert result.returncode == 1
    assert "run.py:3 — ExperimentalFeatureWarning was removed in cog 0.17" in result.stderr
    assert 'Found 1 error. Run "cog doctor --fix" to auto-fix.' in result.stderr
    fixed = doctor(root, "--fix")
    assert fixed.returncode == 0, fixed.stderr
    assert "Fixed: Deprecated imports" in fixed.stderr and "Fixed 1 issue." in fixed.stderr
    assert (root / "run.py").read_text() == CLEAN_RUNNER
    assert "no issues found" in doctor(root).stderr


PYDANTIC_WORKAROUND = """\
from cog import BaseRunner, Path
from pydantic import BaseModel, ConfigDict


class Outputs(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    audio: Path


class Runner(BaseRunner):
    def run(self, text: str) -> Outputs:
        return Outputs(audio="a.wav")
"""


def test_fix_moves_a_pydantic_workaround_to_cog_base_model(tmp_path: Path) -> None:
    root = make_project(tmp_path, RUN_CONFIG, run_py=PYDANTIC_WORKAROUND)
    result = doctor(root)
    assert result.returncode == 1
    assert (
        "run.py:5 — Outputs inherits from pydantic.BaseModel with arbitrary_types_allowed; "
        "use cog.BaseModel instead" in result.stderr
    )
    fixed = doctor(root, "--fix")
    assert fixed.returncode == 0, fixed.stderr
    assert "Fixed: Pydantic BaseModel workaround" in fixed.stderr
    assert (root / "run.py").read_text() == (
        "from cog import BaseRunner, Path, BaseModel\n"
        "\n\n"
        "class Outputs(BaseModel):\n"
        "    audio: Path\n" + PYDANTIC_WORKAROUND.split("    audio: Path\n", 1)[1]
    )
    assert "no issues found" in doctor(root).stderr


def test_fix_keeps_pydantic_for_the_classes_that_still_use_it(tmp_path: Path) -> None:
    source = PYDANTIC_WORKAROUND.replace(
        "class Runner",
        "class Plain(BaseModel):\n    model_config = ConfigDict(frozen=True)\n\n\nclass Runner",
    ).replace(
        "ConfigDict(arbitrary_types_allowed=True)",
        "ConfigDict(arbitrary_types_allowed=True, frozen=True)",
    )
    root = make_project(tmp_path, RUN_CONFIG, run_py=source)
    fixed = doctor(root, "--fix")
    assert fixed.returncode == 0, fixed.stderr
    text = (root / "run.py").read_text()
    assert "from cog import BaseRunner, Path, BaseModel as CogBaseModel\n" in text
    assert "from pydantic import BaseModel, ConfigDict\n" in text
    assert "class Outputs(CogBaseModel):\n    model_config = ConfigDict(frozen=True)\n" in text
    assert "class Plain(BaseModel):" in text
    assert "no issues found" in doctor(root).stderr


def test_fix_of_a_qualified_pydantic_workaround_leaves_a_file_that_runs(tmp_path: Path) -> None:
    source = (
        "import pydantic\n"
        "from cog import BaseRunner, Path\n\n\n"
        "class Outputs(pydantic.BaseModel):\n"
        "    model_config = pydantic.ConfigDict(\n"
        "        arbitrary_types_allowed=True,\n"
        "        frozen=True,\n"
        "    )\n"
        "    audio: Path\n\n\n"
        "class Runner(BaseRunner):\n"
        "    def run(self) -> Outputs:\n"
        "        return Outputs(audio=Path('a.wav'))\n"
    )
    root = make_project(tmp_path, RUN_CONFIG, run_py=source)
    fixed = doctor(root, "--fix")
    assert fixed.returncode == 0, fixed.stderr
    text = (root / "run.py").read_text()
    assert "    model_config = pydantic.ConfigDict(\n        frozen=True,\n    )\n" in text
    assert "import pydantic\n" in text  # still used, so still imported
    loaded = subprocess.run(  # the fixed module imports, and its model is still frozen
        [sys.executable, "-c", "import run; print(run.Outputs.model_config['frozen'])"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": f"{root}:{REPO}"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert loaded.returncode == 0 and loaded.stdout == "True\n", loaded.stderr
    assert "no issues found" in doctor(root).stderr


def test_predict_is_migrated_to_run(tmp_path: Path) -> None:
    root = make_project(tmp_path, PREDICT_CONFIG, predict_py=STARTER_PREDICTOR)
    (root / "predict.py").chmod(0o755)
    result = doctor(root)
    assert result.returncode == 0, result.stderr
    assert "Deprecated predict interface names\n" in result.stderr
    assert "cog.yaml — predict in cog.yaml is deprecated; use run with run.py:Runner" in (
        result.stderr
    )
    assert "predict.py — predict.py uses deprecated Predictor/BasePredictor/predict() names" in (
        result.stderr
    )
    fixed = doctor(root, "--fix")
    assert fixed.returncode == 0, fixed.stderr
    assert "Fixed: Deprecated predict interface names" in fixed.stderr
    assert (root / "cog.yaml").read_text() == PREDICT_CONFIG.replace(
        'predict: "predict.py:Predictor"', 'run: "run.py:Runner"'
    )
    assert not (root / "predict.py").exists()
    assert (root / "run.py").read_text() == (
        "from cog import BaseRunner\n\nclass Runner(BaseRunner):\n"
        '    def run(self, s: str) -> str:\n        return "hello " + s\n'
    )
    assert (root / "run.py").stat().st_mode & 0o777 == 0o755
    assert doctor(root).stderr.rstrip().endswith("no issues found")


def test_migration_keeps_base_predictor_where_it_is_still_used(tmp_path: Path) -> None:
    source = STARTER_PREDICTOR + "\n\nclass Helper(BasePredictor):\n    pass\n"
    root = make_project(tmp_path, PREDICT_CONFIG, predict_py=source)
    assert doctor(root, "--fix").returncode == 0
    text = (root / "run.py").read_text()
    assert text.startswith("from cog import BasePredictor, BaseRunner\n")
    assert "class Runner(BaseRunner):" in text and "class Helper(BasePredictor):" in text


def test_migration_refuses_to_overwrite_run_py(tmp_path: Path) -> None:
    root = make_project(
        tmp_path, PREDICT_CONFIG, predict_py=STARTER_PREDICTOR, run_py=STARTER_PREDICTOR
    )
    result = doctor(root, "--fix")
    assert result.returncode == 1
    assert (
        "Deprecated predict interface names: cannot migrate predict.py to run.py because "
        "run.py already exists" in result.stderr
    )
    assert (root / "predict.py").read_text() == STARTER_PREDICTOR
    assert (root / "cog.yaml").read_text() == PREDICT_CONFIG


def test_a_sandbox_without_its_network_is_a_warning(tmp_path: Path) -> None:
    """Native runs and network steps get a network of their own through slirp4netns: without
    it, doctor says so and how to fix it (bubblewrap itself is there)."""
    root = make_project(tmp_path, RUN_CONFIG, run_py=CLEAN_RUNNER)
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in ("bwrap", "unshare", "mount", "sh", "env"):
        found = subprocess.run(["which", name], capture_output=True, text=True).stdout.strip()
        (tools / name).symlink_to(found)
    result = doctor(root, env={"PATH": str(tools)})
    assert result.returncode == 0, result.stderr  # a warning
    assert "slirp4netns is not installed, so models run natively and build steps" in (result.stderr)
    fixing = doctor(root, "--fix", env={"PATH": str(tools)})
    assert "apt-get install slirp4netns" in fixing.stderr + fixing.stdout

"""cog.yaml: the whole schema, and errors that name the field and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from derivations.config import (
    ConfigError,
    load_config,
    parse_config,
    requirement_lines,
    unknown_keys,
)

FULL = """
build:
  gpu: true
  cuda: "12.1"
  cudnn: "8"
  python_version: "3.11"
  python_requirements: requirements.txt
  system_packages: [ffmpeg, libgl1]
  run:
    - echo hello
    - command: pip download x
      mounts:
        - type: secret
          id: token
          target: /run/secrets/token
  sdk_version: "0.23.1"
image: r8.im/me/model
predict: predict.py:Predictor
train: train.py:train
concurrency:
  max: 4
environment:
  - HF_HOME=/src/cache
  - GREETING=a=b
weights:
  - source: weights/model.bin
    target: /src/weights/model.bin
"""


def test_the_whole_schema_parses() -> None:
    config = parse_config(FULL)
    assert config.build.gpu and config.build.cuda == "12.1"
    assert config.build.system_packages == ("ffmpeg", "libgl1")
    assert config.build.run[0].command == "echo hello"
    assert config.build.run[1].mounts[0].id == "token"
    assert config.concurrency is not None and config.concurrency.max == 4
    assert config.env == {"HF_HOME": "/src/cache", "GREETING": "a=b"}
    assert config.weights[0].target == "/src/weights/model.bin"
    assert parse_config("").build.python_version == "3.13"  # Cog's default, with no build


@pytest.mark.parametrize(
    ("text", "message", "hint"),
    [
        (
            "build:\n  pyton_version: '3.11'\n",
            "unknown key build.pyton_version",
            "build.python_version",
        ),
        ("predicts: predict.py:P\n", "unknown key predicts", "predict"),
        (
            "build:\n  python_version: 3.8\n",  # unquoted, as Cog reads it: "3.8"
            'invalid build.python_version "3.8": minimum supported Python version is 3.10',
            None,
        ),
        (
            "build:\n  python_version: '3.8'\n",
            'invalid build.python_version "3.8": minimum supported Python version is 3.10',
            None,
        ),
        ("build:\n  python_version: 'three'\n", "must include major and minor version", None),
        ("build:\n  python_version: 'x.1'\n", "invalid major version number", None),
        ("build:\n  python_version: '3.y'\n", "invalid minor version number", None),
        ("build:\n  gpu: false\n", "build.python_version: python_version is required", None),
        (
            "environment: [PATH=/x]\n",
            'invalid environment: environment variable "PATH" is not allowed: reserved',
            None,
        ),
        ("environment: [CUDA_HOME=/x]\n", '"CUDA_HOME" is not allowed: reserved', None),
        ("environment: [A=1, A=2]\n", 'variable "A" is already defined', None),
        ("environment: [NOEQUALS]\n", '"NOEQUALS" is not in the KEY=VALUE format', None),
        (
            "predict: predict.py\n",
            "invalid predict \"predict.py\": must be in the form 'predict.py:Predictor'",
            None,
        ),
        ("build:\n  python_packages: [a]\n  python_requirements: r.txt\n", "not both", None),
        (  # without a GPU too, as Cog checks it (the version is then unused)
            "build:\n  python_version: '3.11'\n  cuda: '10.2'\n",
            'invalid build.cuda "10.2": minimum supported CUDA version is 11',
            None,
        ),
        (  # config.Complete's check, where there is a GPU
            "build:\n  python_version: '3.11'\n  gpu: true\n  cuda: '12.x'\n",
            'cog.yaml: invalid minor version in CUDA version "12.x"',
            None,
        ),
        (
            "build:\n  gpu: true\n  cuda: '10.2'\n",
            'invalid build.cuda "10.2": minimum supported CUDA version is 11',
            None,
        ),
        ("build:\n  system_packages: ['Bad Name']\n", "is not a Debian package name", None),
        ("concurrency:\n  max: 0\n", "concurrency.max", None),
        (
            "build:\n  python_version: '3.10'\nconcurrency:\n  max: 2\n",
            'invalid concurrency.max "2": concurrency requires Python 3.11 or higher',
            None,
        ),
        (
            "build:\n  run:\n    - command: x\n      mounts: [{type: cache, id: a, target: b}]\n",
            "build.run.0.mounts.0.type",
            None,
        ),
        ("build: [1, 2]\n", "build", None),
        ("build:\n  gpu: [\n", "not valid YAML at line", None),
        ("- a list\n", "must be a mapping", None),
    ],
)
def test_errors_name_the_field_and_the_problem(text: str, message: str, hint: str | None) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(text, strict=True)  # as `cog doctor` reads it; builds ignore unknown keys
    assert message in str(e.value)
    assert str(e.value).startswith("cog.yaml")
    if hint:
        assert e.value.hint is not None and hint in e.value.hint


def test_requirements_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no cog\.yaml"):
        load_config(tmp_path)
    (tmp_path / "cog.yaml").write_text(
        "build:\n  python_version: '3.11'\n  python_requirements: req.txt\n"
    )
    with pytest.raises(ConfigError) as missing:  # as Cog checks it, when cog.yaml is read
        load_config(tmp_path)
    assert str(missing.value) == (
        'cog.yaml: invalid build.python_requirements "req.txt": file does not exist'
    )
    (tmp_path / "req.txt").write_text("")
    config = load_config(tmp_path)
    (tmp_path / "req.txt").unlink()
    with pytest.raises(ConfigError, match=r"req\.txt does not exist"):
        requirement_lines(config, tmp_path)
    (tmp_path / "req.txt").write_text(
        "# comment\nnumpy==2.1.3  # pinned\n\n--extra-index-url https://x\npillow\n"
    )
    assert requirement_lines(config, tmp_path) == [
        "numpy==2.1.3",
        "--extra-index-url https://x",
        "pillow",
    ]


def test_unquoted_versions_are_read_as_written_as_cog_reads_them() -> None:
    """Go's YAML gives a string field a number's text: 3.10 is "3.10", not 3.1."""
    text = "build:\n  python_version: 3.10\n  gpu: true\n  cuda: 12.1\n  cudnn: 8\n"
    build = parse_config(text).build
    assert (build.python_version, build.cuda, build.cudnn) == ("3.10", "12.1", "8")
    assert parse_config("build:\n  python_version: 3.12\n").build.python_version == "3.12"


def test_buildkit_mount_flags_leading_a_run_line_are_read_as_cog_passes_them() -> None:
    """Cog writes a run string after `RUN `: `--mount=type=cache,…` (pip's cache, a speed-up
    only) is dropped, `--mount=type=secret,…` becomes the step's secret mount."""
    text = (
        "build:\n  python_version: '3.11'\n  run:\n"
        "    - --mount=type=cache,target=/root/.cache/pip pip install cog==0.10.0a15\n"
        "    - --mount=type=secret,id=token --mount=type=cache,target=/x  sh -c 'echo hi'\n"
    )
    first, second = parse_config(text).build.run
    assert (first.command, first.mounts) == ("pip install cog==0.10.0a15", ())
    assert second.command == "sh -c 'echo hi'"
    assert [(m.id, m.target) for m in second.mounts] == [("token", "/run/secrets/token")]
    with pytest.raises(ConfigError, match=r"--mount=type=bind,src=\. is not supported"):
        parse_config("build:\n  run:\n    - --mount=type=bind,src=. make\n")


def test_run_is_cogs_newer_name_for_predict() -> None:
    config = parse_config('build:\n  python_version: "3.11"\nrun: run.py:Runner\n', "cog.yaml")
    assert config.predict == "run.py:Runner"
    with pytest.raises(ConfigError, match="only one of run or predict can be set"):
        parse_config(
            'build:\n  python_version: "3.11"\nrun: run.py:Runner\npredict: p.py:P\n', "cog.yaml"
        )


def test_deprecated_keys_are_warned_as_cog_words_it(tmp_path: Path) -> None:
    from derivations.config import deprecations

    (tmp_path / "cog.yaml").write_text(
        'build:\n  python_version: "3.11"\n  python_packages: [x]\npredict: p.py:P\n'
        "concurrency:\n  max: 2\n"
    )
    assert deprecations(tmp_path) == [
        'deprecated field "predict": use "run" instead',
        'deprecated field "concurrency.max": use "@cog.concurrent(max=...)" instead',
        'deprecated field "build.python_packages": use "build.python_requirements" instead',
    ]
    (tmp_path / "cog.yaml").write_text('build:\n  python_version: "3.11"\nrun: r.py:R\n')
    assert deprecations(tmp_path) == []


def test_unknown_keys_are_ignored_with_a_warning_as_cog_ignores_them() -> None:
    """Cog decodes cog.yaml into its structs, dropping keys it does not know (cog-examples'
    hello-context has `build.fast: false`); a build goes on, and says so."""
    text = 'build:\n  python_version: "3.12"\n  fast: false\n  gpuu: true\nrun: "p.py:run"\n'
    config = parse_config(text)
    assert config.build.python_version == "3.12" and config.build.gpu is False
    assert unknown_keys(text) == [
        "warning: cog.yaml: unknown key build.fast is ignored (remove it)",
        "warning: cog.yaml: unknown key build.gpuu is ignored (did you mean build.gpu?)",
    ]
    with pytest.raises(ConfigError, match=r"unknown key build\.fast"):
        parse_config(text, strict=True)

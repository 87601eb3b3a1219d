"""`--secret` as Cog and BuildKit read it (pkg/docker/build_secrets.go, BuildKit's
secretsprovider): a file or an environment variable, its id and its errors; and a variable's
value reaching the one step that mounts it, as a file, and nothing else."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from builders.build_secrets import EnvSecret, parse_secrets, secret_file
from builders.errors import BuildError
from derivations.config import ConfigError
from tests.builders.test_run_steps import files_holding, image_layers, with_steps
from tests.projects import cog, project


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "token.txt").write_text("from a file")
    monkeypatch.setenv("HF_TOKEN", "from the environment")
    monkeypatch.delenv("token", raising=False)
    return tmp_path


@pytest.mark.parametrize(
    ("spec", "source"),
    [
        ("id=token,src=token.txt", "token.txt"),
        ("ID=token,Source=token.txt", "token.txt"),  # keys in any case, source= as src=
        ("type=file,id=token,src=token.txt", "token.txt"),
        ('"id=token","src=token.txt"', "token.txt"),  # fields may be quoted, as CSV
        ("id=token,env=HF_TOKEN", EnvSecret("HF_TOKEN")),
        ("type=env,id=token,src=HF_TOKEN", EnvSecret("HF_TOKEN")),  # src= names the variable
        ("src=HF_TOKEN,id=token,type=env", EnvSecret("HF_TOKEN")),
        ("id=HF_TOKEN", EnvSecret("HF_TOKEN")),  # a bare id: the variable where it is set...
        ("id=token.txt", "token.txt"),  # ...else the file
    ],
)
def test_secret_sources_are_read_as_buildkit_reads_them(
    here: Path, spec: str, source: str | EnvSecret
) -> None:
    (found,) = parse_secrets([spec], here).values()
    assert found == (here / source if isinstance(source, str) else source)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("id=token,foo=bar", "unexpected key 'foo' in 'foo=bar'"),
        ("token", 'invalid field "token" must be a key=value pair'),
        ("type=ssh,id=token", 'unsupported secret type "ssh"'),
        ("src=token.txt", "secret missing ID"),
        ("id=token,src=missing.txt", "is not a readable file"),
    ],
)
def test_secrets_cog_refuses_are_refused_in_its_words(here: Path, spec: str, words: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_secrets([spec], here)
    assert words in str(refused.value)
    assert "is supported" not in str(refused.value)


def test_a_variable_is_read_when_its_step_runs(here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = here / "scratch"
    scratch.mkdir()
    shown = secret_file("token", EnvSecret("HF_TOKEN"), scratch)
    assert shown.read_text() == "from the environment"
    assert shown.stat().st_mode & 0o777 == 0o600
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(BuildError, match="HF_TOKEN, which is not set"):
        secret_file("token", EnvSecret("HF_TOKEN"), scratch)


ENV_SECRET_STEP = {
    "command": "mkdir -p /opt && python3 -c \"import hashlib; open('/opt/env-token.sha256', 'w')"
    ".write(hashlib.sha256(open('/run/secrets/token', 'rb').read()).hexdigest())\"",
    "mounts": [{"type": "secret", "id": "token", "target": "/run/secrets/token"}],
}


def test_a_secret_from_the_environment_reaches_its_step_and_nothing_else(
    offline: dict[str, str], tmp_path: Path
) -> None:
    root = with_steps(project("hello-world", tmp_path), [ENV_SECRET_STEP])
    value = "env-s3cr3t-" + hashlib.sha256(str(tmp_path).encode()).hexdigest()
    environment = offline | {"MY_BUILD_TOKEN": value}
    built = cog(
        root, environment, "build", "--no-docker-load", "--secret", "id=token,env=MY_BUILD_TOKEN"
    )
    assert built.returncode == 0, built.stderr[-3000:]
    layers = image_layers(root)
    digest = hashlib.sha256(value.encode()).hexdigest().encode()
    assert {"opt/env-token.sha256": digest} in layers  # the step read it at its target
    assert not [name for files in layers for name, data in files.items() if value.encode() in data]
    assert "run/secrets/token" not in {name for files in layers for name in files}
    for where in (Path(offline["COG_STORE_DIR"]), root):  # store paths, .drv, logs, cog.lock
        assert files_holding(where, value.encode()) == []
    assert value not in built.stdout + built.stderr

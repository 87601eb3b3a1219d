"""cog lock: Python packages for the target platform, the runtime apart, drift named."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest

from builders.sandbox.jail import host_tool
from cuda_channels.channel import BUILTIN_DIR
from derivations import pylock
from derivations.buildreqs import on_host
from derivations.lock import Lock, LockError, dumps, loads, mirrored
from derivations.pylock import ResolveError, Wheel
from tests.conftest import REPO, TEST_CACHE
from tests.wheels import make_wheel, simple_index

# The resolver as cog locks with it: an sdist's code runs in the sandbox.
resolve = partial(pylock.resolve, hooks=on_host(host_tool))

WHEELS = TEST_CACHE / "wheels"
SHA = "0" * 64


def deb(name: str) -> dict[str, object]:
    url = f"http://deb.debian.org/debian/pool/main/{name[0]}/{name}/{name}_1.0-1_amd64.deb"
    return {
        "arch": "amd64",
        "name": name,
        "version": "1.0-1",
        "sha256": SHA,
        "size": 1,
        "urls": [url],
    }


def wheel(name: str, file: str, **more: object) -> dict[str, object]:
    url = f"https://files.example/{file}"
    return {"name": name, "version": "1.0", "url": url, "sha256": SHA, "size": 2048, **more}


# Every section a lock can hold, each optional one set: cuda, run, inputs.requirement_files,
# inputs.run, inputs.gpu, system.toolchain, a standalone Python, an sdist's build_requires.
FULL_LOCK: dict[str, object] = {
    "version": 1,
    "inputs": {
        "arch": "amd64",
        "channel": {"name": "debian-bookworm", "revision": SHA},
        "python_version": "3.12",
        "requirements": ["torch==2.8.0", "./dist/spaced pkg-0.1.0.zip", "# naïve ünïcode"],
        "system_packages": ["ffmpeg"],
        "requirement_files": {"./dist/spaced pkg-0.1.0.zip": SHA},
        "run": [
            {"command": "echo hi"},
            {"command": "cat /run/secrets/t", "secrets": [{"id": "t", "target": "/run/secrets/t"}]},
        ],
        "gpu": {"cuda": None, "cudnn": None, "data": {"name": "cuda-2026.08", "revision": SHA}},
    },
    "platform": {"os": "linux", "arch": "amd64", "glibc": "2.36"},
    "python": {
        "source": "python-build-standalone",
        "version": "3.12.14",
        "url": "https://github.com/astral-sh/python-build-standalone/releases/download/x.tar.gz",
        "sha256": SHA,
    },
    "system": {
        "base": [deb("base-files")],
        "python": [],
        "packages": [deb("ffmpeg")],
        "toolchain": [deb("gcc")],
    },
    "python_packages": [
        wheel("torch", "torch-2.8.0-cp312-cp312-manylinux_2_28_x86_64.whl"),
        wheel(
            "spaced-pkg",
            "spaced%20pkg-0.1.0.zip",
            build_requires=[wheel("setuptools", "setuptools-80.0-py3-none-any.whl")],
        ),
    ],
    "runtime_packages": [wheel("trio", "trio-0.30.0-py3-none-any.whl")],
    "cuda": {"version": "12.4", "cudnn": "9", "from": "torch==2.8.0", "wheels": ["x==1"]},
    "run": [
        {"command": "echo hi", "network": False},
        {
            "command": "cat /run/secrets/t",
            "network": True,
            "secrets": [{"id": "t", "target": "/run/secrets/t"}],
            "sha256": SHA,
        },
    ],
}
OPTIONAL = ("cuda", "run", "inputs.requirement_files", "inputs.run", "inputs.gpu")
OPTIONAL += ("system.toolchain", "python.url", "python.sha256")


def without(document: dict[str, object], *keys: str) -> dict[str, object]:
    """`document` less the dotted `keys`."""
    copy = json.loads(json.dumps(document))
    for key in keys:
        *parents, last = key.split(".")
        section = copy
        for parent in parents:
            section = section[int(parent) if isinstance(section, list) else parent]
        del section[last]
    return copy


def text_of(document: object) -> str:
    """A lock document as `cog lock` has always written one."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def committed_locks() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "*cog.lock"], cwd=REPO, capture_output=True, text=True, check=False
    ).stdout.split()
    return sorted({REPO / p for p in listed} | set((REPO / "tests").rglob("cog.lock")))


@pytest.mark.parametrize(
    "text",
    [
        text_of(FULL_LOCK),
        text_of(without(FULL_LOCK, *OPTIONAL)),
        *(p.read_text() for p in committed_locks()),
    ],
)
def test_every_lock_keeps_its_bytes_through_the_model(text: str) -> None:
    lock = loads(text)
    assert isinstance(lock, Lock) and dumps(lock) == text
    assert loads(text.encode()) == lock


def test_unset_sections_stay_out_of_the_file() -> None:
    lock = loads(text_of(without(FULL_LOCK, *OPTIONAL)))
    assert lock.cuda is None and lock.run is None and lock.system.toolchain is None
    assert lock.inputs.gpu is None and lock.python.url is None
    full = loads(text_of(FULL_LOCK))
    assert full.inputs.gpu is not None and full.inputs.gpu.cuda is None  # null, yet written
    assert full.cuda is not None and full.cuda.from_ == "torch==2.8.0"
    sdist = full.python_packages[1]
    assert sdist.is_sdist and [w.name for w in sdist.build_requires] == ["setuptools"]
    assert full.run is not None and full.run[1].sha256 == SHA
    pinned = full.model_copy(update={"run": None})  # what a project without steps gets
    assert "run" not in json.loads(dumps(pinned)) and "cuda" in json.loads(dumps(pinned))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "cog.lock is not valid JSON"),
        (b"\xff\xfe{", "cog.lock is not valid JSON"),
        ("[1]", "cog.lock does not hold a JSON object"),
        (text_of(FULL_LOCK | {"version": 2}), "cog.lock has schema version 2; this cog writes 1"),
        (text_of(without(FULL_LOCK, "version")), "cog.lock has schema version None"),
        (text_of(FULL_LOCK | {"weights": []}), "cog.lock is malformed: weights: extra inputs"),
        (
            text_of(without(FULL_LOCK, "python_packages")),
            "cog.lock is malformed: python_packages: field required",
        ),
        (
            text_of(FULL_LOCK | {"runtime_packages": [wheel("x", "x.whl", size="big")]}),
            "cog.lock is malformed: runtime_packages.0.size: input should be a valid integer",
        ),
        (
            text_of(FULL_LOCK | {"runtime_packages": [wheel("x", "x.whl", extra=1)]}),
            "cog.lock is malformed: runtime_packages.0.extra: unexpected",
        ),
        (
            text_of(without(FULL_LOCK, "run.0.network")),
            "cog.lock is malformed: run.0.network: field required",
        ),
        (text_of(without(FULL_LOCK, "platform", "python")), r"platform: field required \(and 1"),
    ],
)
def test_a_lock_this_cog_cannot_read_is_one_clear_error(text: str | bytes, message: str) -> None:
    with pytest.raises(LockError, match=message) as e:
        loads(text)
    assert e.value.hint == "run `cog lock` to rewrite it"
    assert "\n" not in str(e.value)


@pytest.fixture
def index(tmp_path: Path) -> list[str]:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    make_wheel(wheels, "alpha", "1.0", requires=("beta>=1",))
    make_wheel(wheels, "beta", "1.0")
    make_wheel(wheels, "beta", "2.0")
    make_wheel(wheels, "gamma", "1.0", "cp311-cp311-manylinux_2_17_x86_64")
    make_wheel(wheels, "gamma", "1.0", "cp311-cp311-manylinux_2_17_aarch64")
    make_wheel(wheels, "muslonly", "1.0", "cp311-cp311-musllinux_1_2_x86_64")
    return ["--no-index", f"--find-links {wheels}"]


def test_resolution_is_for_the_target_and_keeps_previous_pins(index: list[str]) -> None:
    pins = resolve([*index, "alpha", "gamma"], "3.11", "amd64", "2.36")
    assert [(p.name, p.version) for p in pins] == [
        ("alpha", "1.0"),
        ("beta", "2.0"),
        ("gamma", "1.0"),
    ]
    assert pins[2].filename.endswith("manylinux_2_17_x86_64.whl")
    arm = resolve([*index, "gamma"], "3.11", "arm64", "2.36")
    assert arm[0].filename.endswith("manylinux_2_17_aarch64.whl")  # not the host's
    for pin in pins:
        data = Path(pin.url.removeprefix("file://")).read_bytes()
        assert pin.sha256 == hashlib.sha256(data).hexdigest() and pin.size == len(data)
    old_beta = Path(pins[1].url.removeprefix("file://")).with_name("beta-1.0-py3-none-any.whl")
    data = old_beta.read_bytes()
    previous = [
        Wheel("beta", "1.0", f"file://{old_beta}", hashlib.sha256(data).hexdigest(), len(data))
    ]
    kept = resolve([*index, "alpha"], "3.11", "amd64", "2.36", previous)
    assert [p.version for p in kept if p.name == "beta"] == ["1.0"]  # still fits: kept
    upgraded = resolve([*index, "alpha"], "3.11", "amd64", "2.36", previous, ["beta"])
    assert [p.version for p in upgraded if p.name == "beta"] == ["2.0"]


def test_unresolvable_requirements_are_clear_errors(index: list[str]) -> None:
    with pytest.raises(ResolveError, match="cannot be resolved for linux/amd64") as e:
        resolve([*index, "nosuch"], "3.11", "amd64", "2.36")
    assert "nosuch" in str(e.value)
    with pytest.raises(ResolveError, match="muslonly"):
        resolve([*index, "muslonly"], "3.11", "amd64", "2.36")


def test_every_index_offers_every_version_as_with_pip(tmp_path: Path) -> None:
    """An extra index (PyTorch's carries old numpy, pillow…) that has a package but not the
    pinned version does not hide the version the main index has: pip's rule, which Cog's
    builds follow."""
    main = simple_index(tmp_path / "main", {"beta": ["1.0", "2.0"]})
    extra = simple_index(tmp_path / "extra", {"beta": ["1.0"], "delta": ["3.0"]})
    options = [f"--index-url {main}", f"--extra-index-url {extra}"]
    pins = resolve([*options, "beta==2.0", "delta"], "3.11", "amd64", "2.36")
    assert [(p.name, p.version, p.url.split("/")[-3]) for p in pins] == [
        ("beta", "2.0", "main"),
        ("delta", "3.0", "extra"),
    ]


@pytest.fixture
def project(tmp_path: Path, debian_mirror: str) -> tuple[Path, dict[str, str]]:
    if not WHEELS.is_dir():
        pytest.fail(f"no wheel cache at {WHEELS}; run `make test-fixtures`")
    channels = tmp_path / "channels"
    channels.mkdir()
    data = json.loads((BUILTIN_DIR / "debian-bookworm.json").read_text())
    for archive in data["archives"]:
        archive["mirror"] = f"{debian_mirror}/{archive['name']}"
    (channels / "debian-bookworm.json").write_text(json.dumps(data))
    root = tmp_path / "project"
    root.mkdir()
    (root / "cog.yaml").write_text(
        'build:\n  python_version: "3.11"\n  python_requirements: requirements.txt\n'
        "predict: predict.py:Predictor\n"
    )
    (root / "requirements.txt").write_text(
        f"--no-index\n--find-links {WHEELS}\nnumpy==2.1.3\npillow\n"
    )
    (root / "predict.py").write_text("from cog import BasePredictor\n")
    env = os.environ | {
        "COG_CHANNEL_PATH": str(channels),
        "PYTHONPATH": str(REPO),
        "UV_CACHE_DIR": str(TEST_CACHE / "uv"),
    }
    return root, env


def cog(project: tuple[Path, dict[str, str]], *args: str) -> subprocess.CompletedProcess[str]:
    root, env = project
    return subprocess.run(
        [sys.executable, "-m", "cog.cli.main", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_cog_lock_pins_everything_deterministically(project: tuple[Path, dict[str, str]]) -> None:
    root, _ = project
    first = cog(project, "lock")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("wrote cog.lock")
    text = (root / "cog.lock").read_text()
    lock = json.loads(text)
    assert lock["version"] == 1 and lock["platform"] == {
        "os": "linux",
        "arch": "amd64",
        "glibc": "2.36",
    }
    assert lock["python"] == {"source": "debian", "version": "3.11"}
    assert {"libc6", "ca-certificates"} <= {p["name"] for p in lock["system"]["base"]}
    assert "python3.11" in {p["name"] for p in lock["system"]["python"]}
    model = {p["name"]: p for p in lock["python_packages"]}
    # The project's packages, and what Cog's SDK brings into a model's environment.
    sdk = {"requests", "pyyaml", "structlog", "typing-extensions", "urllib3"}
    assert {"numpy", "pillow"} | sdk <= set(model) and model["numpy"]["version"] == "2.1.3"
    assert model["pillow"]["url"].endswith("x86_64.whl") and len(model["pillow"]["sha256"]) == 64
    runtime = {p["name"] for p in lock["runtime_packages"]}
    assert {"trio", "h11", "pydantic", "httpx"} <= runtime
    assert "numpy" not in runtime  # the model's and the runtime's environments stay apart
    again = cog(project, "lock")
    assert again.stdout.startswith("unchanged") and (root / "cog.lock").read_text() == text
    (root / "cog.lock").unlink()
    assert cog(project, "lock").returncode == 0 and (root / "cog.lock").read_text() == text
    assert cog(project, "lock", "--check").returncode == 0


def test_lock_check_names_each_drift(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    missing = cog(project, "lock", "--check")
    assert missing.returncode == 1 and "there is no cog.lock" in missing.stderr
    assert cog(project, "lock").returncode == 0
    (root / "predict.py").write_text("from cog import BasePredictor  # edited\n")
    assert cog(project, "lock", "--check").returncode == 0  # code is not locked
    cases = [
        (
            "requirements.txt",
            f"--no-index\n--find-links {WHEELS}\nnumpy==2.1.3\n",
            "Python requirements changed: added nothing; removed pillow",
        ),
        (
            "cog.yaml",
            'build:\n  python_version: "3.12"\n  python_requirements: requirements.txt\n',
            "python_version changed from 3.11 to 3.12",
        ),
        (
            "cog.yaml",
            'build:\n  python_version: "3.11"\n  python_requirements: requirements.txt\n'
            "  system_packages: [ffmpeg]\n",
            "system_packages changed: added ffmpeg",
        ),
    ]
    for name, text, message in cases:
        original = (root / name).read_text()
        (root / name).write_text(text)
        stale = cog(project, "lock", "--check")
        assert stale.returncode == 1 and message in stale.stderr, stale.stderr
        (root / name).write_text(original)
    text = (root / "cog.lock").read_text()
    (root / "cog.lock").write_text(text.replace('"version": 1', '"version": 1, "extra": 0', 1))
    unreadable = cog(project, "lock", "--check")
    assert unreadable.returncode == 1 and "cog.lock is malformed: extra" in unreadable.stderr
    assert "run `cog lock` to rewrite it" in unreadable.stderr
    rewritten = cog(project, "lock")  # as the hint says
    assert rewritten.returncode == 0 and "rewriting it" in rewritten.stderr
    assert (root / "cog.lock").read_text() == text
    channel_file = Path(env["COG_CHANNEL_PATH"]) / "debian-bookworm.json"
    data = json.loads(channel_file.read_text())
    data["base_packages"].append("less")
    channel_file.write_text(json.dumps(data))
    stale = cog(project, "lock", "--check")
    assert stale.returncode == 1 and "channel debian-bookworm changed" in stale.stderr


@pytest.mark.parametrize(
    ("mirror", "lines", "expect"),
    [
        ("", ["numpy==2.1.3"], ["numpy==2.1.3"]),
        (
            "/srv/wheels",
            ["numpy==2.1.3"],
            ["--no-index", "--find-links /srv/wheels", "numpy==2.1.3"],
        ),
        ("file:///srv/wheels", [], ["--no-index", "--find-links /srv/wheels"]),
        ("https://pypi.corp/simple", ["x"], ["--index-url https://pypi.corp/simple", "x"]),
        # The project names its own index: the mirror is not for it.
        ("/srv/wheels", ["-i https://download.pytorch.org/whl/cu121", "torch"], None),
    ],
)
def test_pypi_mirror_replaces_pypi_where_no_index_is_named(
    monkeypatch: pytest.MonkeyPatch, mirror: str, lines: list[str], expect: list[str] | None
) -> None:
    monkeypatch.setenv("COG_PYPI_MIRROR", mirror)
    assert mirrored(lines) == (lines if expect is None else expect)

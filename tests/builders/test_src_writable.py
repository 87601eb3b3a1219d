"""/src is the model's own, as in Cog's image: writable beside the code, when the build reads
the predictor's signature and when it runs (natively or from its image), and holding what the
`build.run` steps wrote there, with the code over it. No write ever reaches the store."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from builders.sandbox.overlay import overlay_works, writable_dir
from store.oci import Layout
from tests.builders.test_run_steps import image_layers, with_steps
from tests.conftest import BUSYBOX, make_tree, require_tool
from tests.projects import cog, project

# A predictor that keeps its logs beside its code, made when it is imported (the build imports
# it to read its signature: a description read from a function defeats the reduced module,
# and Cog's static schema leaves it out; a default so read would make the input required).
BESIDE = """\
import errno
import json
import os
from pathlib import Path

from cog import BasePredictor, Input

HERE = Path(__file__).parent
LOGS = HERE / "logs"
LOGS.mkdir(exist_ok=True)
(LOGS / "imported").write_text("at import")


def describe() -> str:
    return "what to say"


def attempt(write) -> str:
    try:
        write()
        return "written"
    except OSError as e:
        return errno.errorcode[e.errno]


class Predictor(BasePredictor):
    def setup(self) -> None:
        self.code = attempt(lambda: open(__file__, "a").close())  # a file of the code itself
        (HERE / "cache" / "deeper").mkdir(parents=True)

    def predict(self, text: str = Input(default="world", description=describe())) -> str:
        return json.dumps({
            "here": str(HERE),
            "cwd": os.getcwd(),
            "logs": sorted(os.listdir(LOGS)),
            "code": self.code,
            "src": sorted(n for n in os.listdir("/src") if n != "__pycache__"),
            "text": text,
        })
"""

BESIDE_EXPECTED = {
    "here": "/src",
    "cwd": "/src",
    "logs": ["imported"],  # nothing of the build's import or of an earlier run is left
    "code": "written",
    "src": ["cache", "cog.yaml", "logs", "predict.py"],
    "text": "world",
}

STEP = "mkdir -p /src/models && echo hi > /src/models/x"
READS_STEP = """\
import json
import os
from pathlib import Path

from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self) -> str:
        return json.dumps({
            "x": Path("/src/models/x").read_text(),
            "models": sorted(os.listdir("/src/models")),
            "src": sorted(n for n in os.listdir("/src") if n != "__pycache__"),
        })
"""
STEP_EXPECTED = {
    "x": "hi\n",  # the step's file
    "models": ["readme.txt", "x"],  # merged with the project's own models/ folder
    "src": ["cog.yaml", "models", "predict.py"],
}


def _prediction(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert result.returncode == 0, result.stderr[-3000:]
    found: dict[str, object] = json.loads(result.stdout)
    return found


def _store_files(store_dir: Path) -> list[tuple[str, int, int]]:
    """Every file of the store's paths with its mtime and size: a write would change them."""
    found = []
    for path in sorted(store_dir.glob("*-*/**/*")):
        st = path.lstat()
        found.append((str(path), st.st_mtime_ns, st.st_size))
    return found


def _require_overlays(offline: dict[str, str]) -> None:
    if not overlay_works(Path(offline["COG_STORE_DIR"])):
        pytest.fail("overlay mounts do not work here: /src would take new files only")


def test_a_predictor_writes_beside_its_code_at_build_and_run_time(
    offline: dict[str, str], tmp_path: Path
) -> None:
    _require_overlays(offline)
    root = project("hello-world", tmp_path)
    (root / "predict.py").write_text(BESIDE)
    store_dir = Path(offline["COG_STORE_DIR"])

    assert _prediction(cog(root, offline, "run")) == BESIDE_EXPECTED
    before = _store_files(store_dir)
    assert _prediction(cog(root, offline, "run")) == BESIDE_EXPECTED
    assert _store_files(store_dir) == before

    built = cog(root, offline, "build", "-t", "src-beside", "--no-docker-load")
    assert built.returncode == 0, built.stderr[-3000:]
    layers = image_layers(root)
    assert not any(name.startswith("src/logs") for files in layers for name in files)
    assert _prediction(cog(tmp_path, offline, "run", "src-beside")) == BESIDE_EXPECTED
    assert _prediction(cog(tmp_path, offline, "run", "src-beside")) == BESIDE_EXPECTED

    verified = cog(root, offline, "store", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_what_a_step_writes_under_src_is_kept_beside_the_code(
    offline: dict[str, str], tmp_path: Path
) -> None:
    _require_overlays(offline)
    root = with_steps(project("hello-world", tmp_path), [STEP])
    (root / "predict.py").write_text(READS_STEP)
    (root / "models").mkdir()
    (root / "models" / "readme.txt").write_text("from the project\n")

    assert _prediction(cog(root, offline, "run")) == STEP_EXPECTED

    built = cog(root, offline, "build", "-t", "src-step", "--no-docker-load")
    assert built.returncode == 0, built.stderr[-3000:]
    layers = image_layers(root)
    assert {"src/models/x": b"hi\n"} in layers  # the step's layer, below the code's
    [code] = [files for files in layers if "src/predict.py" in files]
    assert code["src/models/readme.txt"] == b"from the project\n"
    assert layers.index({"src/models/x": b"hi\n"}) < layers.index(code)
    assert _prediction(cog(tmp_path, offline, "run", "src-step")) == STEP_EXPECTED

    # Another empty store builds the same image, digest for digest.
    digest = Layout.open((root / ".cog" / "image").resolve()).manifest_digest
    other = offline | {"COG_STORE_DIR": str(tmp_path / "store-2")}
    again = cog(root, other, "build", "--locked", "--no-docker-load")
    assert again.returncode == 0, again.stderr[-3000:]
    assert Layout.open((root / ".cog" / "image").resolve()).manifest_digest == digest


@pytest.mark.parametrize(("scratch_name", "writable"), [("plain", True), ("with,comma", False)])
def test_a_writable_dir_stacks_its_trees_and_never_writes_them(
    tmp_path: Path, scratch_name: str, writable: bool
) -> None:
    """writable_dir, as a build shows /src: the later tree wins and folders merge; what is
    written lands in the scratch directory. Where an overlay cannot be mounted (a scratch path
    its options cannot name), new files can still be made at its top, and nothing else."""
    if not BUSYBOX.exists():
        pytest.fail("/bin/busybox (Debian busybox-static) is required; `make test` installs it")
    steps = make_tree(tmp_path / "steps", {"models/x": "hi\n", "shared": "steps\n"})
    code = make_tree(tmp_path / "code", {"predict.py": "code\n", "shared": "code\n"})
    (code / "models").mkdir()
    (code / "models" / "readme.txt").write_text("project\n")
    trees = {p: p.read_bytes() for p in [*steps.rglob("*"), *code.rglob("*")] if p.is_file()}
    root = make_tree(
        tmp_path / "root", {"bin/busybox": BUSYBOX.read_bytes()}, {"bin/busybox": 0o755}
    )
    for folder in ("proc", "dev", "tmp", "src"):
        (root / folder).mkdir()
    prefix, mounts = writable_dir([steps, code], "/src", tmp_path / scratch_name)
    script = (
        "cd /src && cat models/x shared models/readme.txt && mkdir logs && echo new > logs/f && "
        "cat logs/f; echo more >> predict.py && echo appended; echo deeper > models/y && echo made"
    )
    argv = [*prefix, require_tool("bwrap"), "--unshare-all", "--die-with-parent"]
    argv += ["--ro-bind", str(root), "/", "--proc", "/proc", "--dev", "/dev", *mounts]
    run = subprocess.run(
        [*argv, "--", "/bin/busybox", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.stdout.startswith("hi\ncode\nproject\nnew\n"), run.stdout + run.stderr
    assert run.stdout.endswith("appended\nmade\n" if writable else "new\n"), run.stderr
    assert {p: p.read_bytes() for p in trees} == trees  # the trees are never written
    assert not (steps / "logs").exists() and not (code / "logs").exists()

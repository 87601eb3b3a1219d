"""`cog run` (and `cog predict`, Cog's deprecated alias): inputs as -i or --json, the
model's environment from -e, and the output printed as Cog's CLI prints it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from builders.sandbox.network import host_address
from tests.projects import cog, project
from tests.services import free_port

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
    assert '"cog predict" is deprecated' not in result.stderr
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
    # -o: the prediction's JSON goes to the file (Cog warns where it is not named .json), and
    # a value that is not a string is written there as JSON without --json.
    for args, name in ((["--json", '{"flag": true}'], "out.json"), (["-i", "flag=true"], "v")):
        written = cog(root, offline, "run", *args, "-o", name)
        assert written.returncode == 0, written.stderr[-2000:]
        assert written.stdout == "" and f"Written output to: {name}" in written.stderr
        saved = json.loads((root / name).read_text())
        assert (saved["output"] if name == "out.json" else saved)["zeta"] is False
    (root / "outdir").mkdir()
    unsuffixed = cog(root, offline, "run", "--json", '{"flag": true}', "-o", "outdir/p")
    assert "--output value does not have a .json suffix: p" in unsuffixed.stderr
    assert json.loads((root / "outdir/p").read_text())["status"] == "succeeded"
    into_dir = cog(root, offline, "run", "-i", "flag=true", "-o", "outdir")
    assert into_dir.returncode == 0 and "Written output to: outdir/output" in into_dir.stderr


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
        (["-i", "flag=true", "-e", "=x"], "names no variable"),
    ]
    for args, message in cases:
        result = cog(root, offline, "run", *args)
        assert result.returncode == 1 and message in result.stderr, (args, result.stderr)
        assert "building " not in result.stderr


def test_runs_resolve_localhost_and_the_host_as_docker_does(
    offline: dict[str, str], tmp_path: Path
) -> None:
    """Webhook and upload URLs name `host.docker.internal`, as in Cog's container; a native
    run (the project, or an image by name) resolves it to this host's address (its network is
    its own, as a container's, so not to loopback) and `localhost` to its own loopback."""
    host = host_address()
    assert host is not None, "this test needs a default route"
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
    assert native.stdout.strip() == f"127.0.0.1 {host}"
    assert cog(root, offline, "build", "-t", "resolver").returncode == 0
    image = cog(tmp_path, offline, "run", "resolver")
    assert image.returncode == 0, image.stderr[-2000:]
    assert image.stdout.strip() == f"127.0.0.1 {host}"


def test_exec_runs_a_command_in_the_environment(offline: dict[str, str], tmp_path: Path) -> None:
    root = project("hello-world", tmp_path)
    argv = [sys.executable, "-m", "cog.cli.main", "exec"]

    def run(*args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*argv, *args],
            cwd=root,
            env=offline | env,
            input=stdin,
            capture_output=True,
            text=True,
        )

    piped = run("cat", stdin="hello from stdin\n")
    assert piped.returncode == 0, piped.stderr[-2000:]
    assert piped.stdout == "hello from stdin\n"
    script = 'echo "$GREETING $HOME $PWD"; python -c "import cog"; touch made-here; exit 3'
    shell = run("-e", "GREETING=hi", "sh", "-c", script)
    assert shell.returncode == 3, shell.stderr[-2000:]  # the command's own exit code
    assert shell.stdout == "hi /root /src\n"  # and the SDK imports from the model's env
    assert (root / "made-here").is_file()  # /src is this directory, writable
    # `-e NAME` as `docker run -e NAME`: NAME's value here, and nothing where it has none.
    named = run(
        "-e",
        "FROM_HOST",
        "-e",
        "NOT_HERE",
        "sh",
        "-c",
        "echo ${FROM_HOST-}${NOT_HERE-unset}",
        FROM_HOST="passed-",
    )
    assert named.returncode == 0 and named.stdout == "passed-unset\n", named.stderr[-2000:]
    deep = root / "some" / "sub" / "dir"
    deep.mkdir(parents=True)
    below = subprocess.run(  # cog.yaml is found upwards, as Cog finds it
        [*argv, "echo", "hello", "world"], cwd=deep, env=offline, capture_output=True, text=True
    )
    assert below.returncode == 0 and below.stdout == "hello world\n", below.stderr[-2000:]
    for args, message in (
        ((), "cog exec needs a command to run"),
        (("-p", "99999", "true"), "invalid port '99999'"),
        (("-e", "=x", "true"), "names no variable"),
    ):
        bad = run(*args)
        assert bad.returncode == 1 and message in bad.stderr, (args, bad.stderr)


_CTTY = "exec 3</dev/tty && echo tty is mine"  # only a controlling terminal opens /dev/tty


def test_exec_gives_the_command_a_terminal(offline: dict[str, str], tmp_path: Path) -> None:
    import os
    import pty

    root = project("hello-world", tmp_path)
    assert cog(root, offline, "exec", "true").returncode == 0  # built before the clock runs
    pid, fd = pty.fork()
    if pid == 0:  # the child: cog exec on a terminal
        os.chdir(root)
        os.execve(
            sys.executable,
            [sys.executable, "-m", "cog.cli.main", "exec", "sh", "-c", _CTTY],
            offline,
        )
    seen = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, seen.decode(errors="replace")
    assert b"tty is mine" in seen.splitlines()[-1]


TRAIN = """
def train(n: int) -> str:
    with open("weights.bin", "w") as fh:  # in /src, which is the project itself
        fh.write("a" * n)
    return f"trained {n}"
"""


def test_train_runs_in_the_project_and_keeps_its_weights(
    offline: dict[str, str], tmp_path: Path
) -> None:
    root = project("hello-world", tmp_path)
    (root / "train.py").write_text(TRAIN)
    with open(root / "cog.yaml", "a") as f:
        f.write("train: train.py:train\n")
    result = cog(root, offline, "train", "-i", "n=42")
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'Command "train" is deprecated' in result.stderr
    assert (root / "weights.bin").read_text() == "a" * 42
    assert (root / "weights").read_text() == "trained 42"  # the output, at -o's default
    elsewhere = tmp_path / "empty"
    elsewhere.mkdir()
    refused = cog(elsewhere, offline, "train")
    assert refused.returncode == 1 and "will be removed in a future version" in refused.stderr


FILES = """
from cog import BasePredictor, Path


class Predictor(BasePredictor):
    def predict(self, paths: list[Path]) -> list[Path]:
        outputs = []
        for i, path in enumerate(paths):
            out = Path(f"copy-{i}.txt")  # written in /src, as models do in a container
            out.write_text(path.read_text().upper())
            outputs.append(out)
        return outputs
"""


def test_file_lists_in_and_out_as_cog_names_them(offline: dict[str, str], tmp_path: Path) -> None:
    root = project("hello-world", tmp_path)
    (root / "predict.py").write_text(FILES)
    assert cog(root, offline, "build", "-t", "copier").returncode == 0
    work = tmp_path / "work"
    work.mkdir()
    (work / "1.txt").write_text("one")
    (work / "2.txt").write_text("two")
    for image in ([], ["copier"]):  # the project natively, and its image by name
        cwd = root if not image else work
        if not image:
            for name in ("1.txt", "2.txt"):
                (root / name).write_text((work / name).read_text())
        result = cog(cwd, offline, "run", *image, "-i", "paths=@1.txt", "-i", "paths=@2.txt")
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout == ""  # files are announced on stderr, not printed
        assert "Written output to: output.0.txt" in result.stderr
        assert (cwd / "output.0.txt").read_text() == "ONE"
        assert (cwd / "output.1.txt").read_text() == "TWO"
    unknown = cog(work, offline, "run", "copier", "-i", "nope=1")
    assert unknown.returncode == 1
    assert 'unknown input "nope"; valid inputs are: paths' in unknown.stderr
    assert "image-rootfs" not in unknown.stderr  # refused before the image was unpacked or run


TAGS = """
from cog import BasePredictor


class Predictor(BasePredictor):
    def setup(self) -> None:
        print("setting up now")

    def predict(self, s: str, tags: list[str]) -> str:
        return s + ":" + ",".join(tags)
"""


def test_inputs_checked_and_shaped_as_cogs_cli(offline: dict[str, str], tmp_path: Path) -> None:
    root = project("hello-world", tmp_path)
    (root / "predict.py").write_text(TAGS)
    config = root / "cog.yaml"  # the key Cog deprecated, so its warning is checked too
    config.write_text(config.read_text().replace("\nrun: ", "\npredict: "))
    missing = cog(root, offline, "run", "-i", "tags=a")
    assert missing.returncode == 1 and 'missing required input "s"' in missing.stderr
    assert 'deprecated field "predict": use "run" instead' in missing.stderr  # as Cog warns
    single = cog(root, offline, "run", "-i", "s=x", "-i", "tags=a", "-o", "out.txt")
    assert single.returncode == 0, single.stderr[-2000:]
    assert "setting up now" in single.stderr  # setup's output, as Cog streams it
    assert (root / "out.txt").read_text() == "x:a"  # one value for a list input is a list
    assert "Written output to: out.txt" in single.stderr and single.stdout == ""


def test_a_predictor_in_a_subdirectory_imports_from_the_root(
    offline: dict[str, str], tmp_path: Path
) -> None:
    root = project("hello-world", tmp_path)
    (root / "mylib.py").write_text("def concat(a, b):\n    return a + ' ' + b\n")
    (root / "my-subdir").mkdir()
    (root / "my-subdir" / "predict.py").write_text(
        "from cog import BasePredictor\nfrom mylib import concat\n\n"
        "class Predictor(BasePredictor):\n"
        "    def predict(self, s: str) -> str:\n"
        "        return concat('hello', s)\n"
    )
    (root / "cog.yaml").write_text(
        (root / "cog.yaml").read_text().replace("predict.py:", "my-subdir/predict.py:")
    )
    assert cog(root, offline, "build", "-t", "subdir").returncode == 0
    result = cog(tmp_path, offline, "run", "subdir", "-i", "s=world")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "hello world"
    (root / "cog.yaml").write_text('build:\n  python_version: "3.11"\n')
    refused = cog(root, offline, "build")
    assert refused.returncode == 1 and "there is no run: (or predict:)" in refused.stderr
    assert "building " not in refused.stderr


WRITER = """
import os
from pathlib import Path

from cog import BasePredictor

PLACES = ("~/.cache/torch/hub", "/tmp/scratch", "/var/tmp/scratch", "/home/model", "/src/out")


class Predictor(BasePredictor):
    def setup(self) -> None:
        for place in PLACES:  # as a model caches what it downloads at setup
            folder = Path(os.path.expanduser(place))
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "written").write_text(place)

    def predict(self) -> str:
        read = [Path(os.path.expanduser(p), "written").read_text() for p in PLACES]
        return " ".join(read) + f" {os.environ['HOME']}"
"""


def test_a_model_writes_where_a_container_lets_it(offline: dict[str, str], tmp_path: Path) -> None:
    """$HOME and its cache, the temporary folders, /home and /src take a model's files, in a
    native run of the project and of its image."""
    root = project("hello-world", tmp_path)
    (root / "predict.py").write_text(WRITER)
    expected = "~/.cache/torch/hub /tmp/scratch /var/tmp/scratch /home/model /src/out /root"
    native = cog(root, offline, "run")
    assert native.returncode == 0, native.stderr[-2000:]
    assert native.stdout.strip() == expected
    assert not (root / "out").exists()  # the built code's /src, not the project directory
    built = cog(root, offline, "build", "-t", "writer", "--no-docker-load")
    assert built.returncode == 0, built.stderr[-2000:]
    image = cog(tmp_path, offline, "run", "writer")
    assert image.returncode == 0, image.stderr[-2000:]
    assert image.stdout.strip() == expected


def test_exec_publishes_a_port_as_docker_run_p(offline: dict[str, str], tmp_path: Path) -> None:
    """`cog exec -p HOST:PORT`: the command's network is its own, and what it serves on that
    port (on every address of its namespace) is reached at HOST:PORT on this host."""
    root = project("hello-world", tmp_path)
    port = free_port()
    serve = (
        "import http.server as h\n"
        "class H(h.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200); self.end_headers(); self.wfile.write(b'from inside')\n"
        f"h.HTTPServer(('0.0.0.0', {port}), H).handle_request()\n"
    )
    argv = [sys.executable, "-m", "cog.cli.main", "exec", "-p", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(
        [*argv, "python", "-c", serve], cwd=root, env=offline, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 600  # the environment is built first
        answer = None
        while answer is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                answer = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
            except OSError:
                time.sleep(0.5)
        assert answer == b"from inside", proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.wait()

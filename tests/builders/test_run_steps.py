"""cog.yaml `build.run`: steps as layers, network steps as fixed-output, secrets as mounts.

Real processes, offline: the example project on the frozen Debian mirror and the wheel
cache; a network step fetches from a server on a test host of its own (a network namespace),
which a step with the network reaches and an offline one does not; neither reaches this
machine's loopback services.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

from store.local import Store
from store.oci import Layout
from tests.conftest import LoopbackServer
from tests.projects import cog, project

GREETING_STEP = "mkdir -p /opt/greeting && printf howdy > /opt/greeting/word"
PREDICT = """\
from cog import BasePredictor


class Predictor(BasePredictor):
    def setup(self) -> None:
        self.prefix = open("/opt/greeting/word").read()

    def predict(self, text: str) -> str:
        return f"{self.prefix} {text}"
"""


def with_steps(root: Path, steps: list[object]) -> Path:
    """The project's cog.yaml with these build.run items (JSON is YAML)."""
    config = root / "cog.yaml"
    config.write_text(
        config.read_text().replace("build:\n", f"build:\n  run: {json.dumps(steps)}\n", 1)
    )
    return root


def image_layers(root: Path) -> list[dict[str, bytes]]:
    """Each layer of the project's built image: its regular files, name -> bytes."""
    layout = Layout.open((root / ".cog" / "image").resolve())
    found = []
    for descriptor in layout.manifest["layers"]:
        blob = layout.open_blob(descriptor["digest"])
        try:
            data = blob.read()
        finally:
            blob.close()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        files: dict[str, bytes] = {}
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar:
                if member.isfile():
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    files[member.name] = extracted.read()
        found.append(files)
    return found


def store_path(root: Path, name: str) -> Path:
    return (root / ".cog" / "roots" / name).resolve()


def nar_hash(env: dict[str, str], path: Path) -> str:
    store = Store(env["COG_STORE_DIR"])
    try:
        return store.info(store.parse(f"/cog/store/{path.name}")).nar_hash
    finally:
        store.close()


def test_a_step_is_a_layer_that_runs_and_images_see(
    offline: dict[str, str], tmp_path: Path
) -> None:
    root = with_steps(project("hello-world", tmp_path), [GREETING_STEP])
    (root / "predict.py").write_text(PREDICT)
    result = cog(root, offline, "run", "-i", "text=world")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "howdy world"
    lock = json.loads((root / "cog.lock").read_text())
    assert lock["run"] == [{"command": GREETING_STEP, "network": False}]
    assert lock["inputs"]["run"] == [{"command": GREETING_STEP}]

    built = cog(root, offline, "build", "--no-docker-load")
    assert built.returncode == 0, built.stderr[-3000:]
    layers = image_layers(root)
    [step] = [files for files in layers if "opt/greeting/word" in files]
    assert step == {"opt/greeting/word": b"howdy"}  # only what the step added
    first = store_path(root, "run-1")

    # Another empty store builds the same step layer, byte for byte.
    other = offline | {"COG_STORE_DIR": str(tmp_path / "store-2")}
    again = cog(root, other, "build", "--locked", "--no-docker-load")
    assert again.returncode == 0, again.stderr[-3000:]
    second = store_path(root, "run-1")
    assert second.name == first.name
    assert nar_hash(other, second) == nar_hash(offline, first)

    # An edited command is named as drift.
    config = root / "cog.yaml"
    config.write_text(config.read_text().replace(json.dumps([GREETING_STEP]), '["echo changed"]'))
    stale = cog(root, offline, "lock", "--check")
    assert stale.returncode == 1
    assert "build.run changed: added echo changed" in stale.stderr
    assert "Traceback" not in stale.stderr


def test_a_network_step_is_fixed_output_and_its_drift_is_named(
    offline: dict[str, str], tmp_path: Path, outside_server: LoopbackServer
) -> None:
    outside_server.files["tool"] = b"tool v1"
    url = outside_server.url("tool")
    get = f"import urllib.request as u; u.urlretrieve('{url}', '/opt/tool')"
    fetch = f'mkdir -p /opt && python3 -c "{get}"'
    root = with_steps(project("hello-world", tmp_path), [fetch])
    locked = cog(root, offline, "lock")
    assert locked.returncode == 0, locked.stderr[-3000:]
    assert "fails without the network" in locked.stderr  # tried offline first
    [pin] = json.loads((root / "cog.lock").read_text())["run"]
    assert pin["command"] == fetch and pin["network"] is True and len(pin["sha256"]) == 64
    assert cog(root, offline, "lock", "--check").returncode == 0
    relocked = cog(root, offline, "lock")  # an unchanged step keeps its pin: nothing runs
    assert relocked.returncode == 0 and relocked.stdout.startswith("unchanged:")

    built = cog(root, offline, "build", "--no-docker-load")
    assert built.returncode == 0, built.stderr[-3000:]
    assert {"opt/tool": b"tool v1"} in image_layers(root)
    assert outside_server.hits["tool"] == 1  # the lock's run was kept, not fetched again

    # Another machine (an empty store), after the server's file changed: the pin holds.
    outside_server.files["tool"] = b"tool v2"
    other = offline | {"COG_STORE_DIR": str(tmp_path / "store-2")}
    drifted = cog(root, other, "build", "--locked", "--no-docker-load")
    assert drifted.returncode == 1
    assert f"the build.run step `{fetch}` needs the network and its result changed" in (
        drifted.stderr
    )
    assert "Traceback" not in drifted.stderr

    outside_server.files["tool"] = b"tool v1"
    again = cog(root, other, "build", "--locked", "--no-docker-load")
    assert again.returncode == 0, again.stderr[-3000:]
    assert store_path(root, "run-1").name.endswith("-run-1")
    assert nar_hash(other, store_path(root, "run-1")) == nar_hash(
        offline, store_path(root, "run-1")
    )


SECRET_STEP = {
    "command": "mkdir -p /opt && python3 -c \"import hashlib; open('/opt/token.sha256', 'w').write("
    "hashlib.sha256(open('/run/secrets/token', 'rb').read()).hexdigest())\"",
    "mounts": [{"type": "secret", "id": "token", "target": "/run/secrets/token"}],
}


def files_holding(where: Path, needle: bytes) -> list[Path]:
    found = []
    for path in sorted(where.rglob("*")):
        if path.is_file() and not path.is_symlink() and needle in path.read_bytes():
            found.append(path)
    return found


def test_a_secret_reaches_its_step_and_nothing_else(
    offline: dict[str, str], tmp_path: Path
) -> None:
    root = with_steps(project("hello-world", tmp_path), [SECRET_STEP])
    secret = tmp_path / "secrets" / "token.txt"
    secret.parent.mkdir()
    value = b"s3cr3t-" + hashlib.sha256(str(tmp_path).encode()).hexdigest().encode()
    secret.write_bytes(value)

    missing = cog(root, offline, "build", "--no-docker-load")
    assert missing.returncode == 1
    assert (
        "cog.yaml's build.run mounts the secret 'token', but no --secret id=token,src=FILE "
        "was given" in missing.stderr
    )
    assert "Traceback" not in missing.stderr
    assert "derivations to build" not in missing.stderr  # said before anything was built

    built = cog(root, offline, "build", "--no-docker-load", "--secret", f"id=token,src={secret}")
    assert built.returncode == 0, built.stderr[-3000:]
    layers = image_layers(root)
    digest = hashlib.sha256(value).hexdigest().encode()
    assert {"opt/token.sha256": digest} in layers  # the command saw it
    assert not [name for files in layers for name, data in files.items() if value in data]
    assert "run/secrets/token" not in {name for files in layers for name in files}
    store = Path(offline["COG_STORE_DIR"])
    for where in (store, root):  # every store path, .drv, log and the database; cog.lock
        assert files_holding(where, value) == []
        assert files_holding(where, str(secret).encode()) == []
    assert value not in built.stdout.encode() + built.stderr.encode()


def test_a_failing_step_names_its_command_and_shows_its_output(
    offline: dict[str, str], tmp_path: Path
) -> None:
    root = with_steps(project("hello-world", tmp_path), ["echo step-one > /etc/order"])
    config = root / "cog.yaml"  # pre_install: Cog runs it after the run: commands
    failing = "cat /etc/order && echo boom-before-failing && exit 3"
    config.write_text(
        config.read_text().replace(
            "build:\n", f"build:\n  pre_install: [{json.dumps(failing)}]\n", 1
        )
    )
    result = cog(root, offline, "build", "--no-docker-load")
    assert result.returncode == 1
    assert f"build.run step 2 failed offline and with the network: {failing}" in result.stderr
    assert "step-one" in result.stderr and "boom-before-failing" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_step_whose_program_is_missing_says_which_package_list_to_add_it_to(
    offline: dict[str, str], tmp_path: Path
) -> None:
    """The image holds Cog's tools (curl, wget, git …) and what cog.yaml names; a step that
    runs another program says where to add its package, not only `aria2c: not found`."""
    step = "aria2c -o /usr/local/bin/pget http://127.0.0.1:9/pget && chmod +x /usr/local/bin/pget"
    root = with_steps(project("hello-world", tmp_path), [step])
    result = cog(root, offline, "build", "--no-docker-load")
    assert result.returncode == 1
    assert "aria2c: not found" in result.stderr
    hint = result.stderr.strip().splitlines()[-1]
    assert hint.startswith("hint: aria2c is not in the image: add the Debian package that has it")
    assert "build.system_packages" in hint and "apt-get install" in hint
    assert "see the full log: " in hint


def test_a_network_step_reaches_the_world_but_not_this_machine(
    offline: dict[str, str],
    tmp_path: Path,
    outside_server: LoopbackServer,
    http_server: LoopbackServer,
) -> None:
    """As Docker's RUN: a step with the network gets a namespace of its own with outbound
    access; this machine's loopback services (127.0.0.1, and the gateway address slirp would
    map to them) stay out of reach, and the step is never retried with the host's network."""
    outside_server.files["tool"] = b"from outside"
    http_server.files["secret"] = b"a loopback service"
    gateway = http_server.url("secret").replace("127.0.0.1", "10.0.2.2")
    probe = (
        "import urllib.request as u\n"
        f"open('/opt/outside', 'wb').write(u.urlopen('{outside_server.url('tool')}').read())\n"
        f"for url in ('{http_server.url('secret')}', '{gateway}'):\n"
        "    try:\n"
        "        u.urlopen(url, timeout=3).read()\n"
        "        open('/opt/reached', 'a').write(url)\n"
        "    except OSError:\n"
        "        pass\n"
    )
    encoded = base64.b64encode(probe.encode()).decode()  # a run: command is one line
    step = f"mkdir -p /opt && python3 -c \"import base64; exec(base64.b64decode('{encoded}'))\""
    root = with_steps(project("hello-world", tmp_path), [step])
    locked = cog(root, offline, "lock")
    assert locked.returncode == 0, locked.stderr[-3000:]
    built = cog(root, offline, "build", "--no-docker-load")
    assert built.returncode == 0, built.stderr[-3000:]
    [step] = [files for files in image_layers(root) if "opt/outside" in files]
    assert step == {"opt/outside": b"from outside"}  # nothing under /opt/reached
    assert http_server.hits["secret"] == 0

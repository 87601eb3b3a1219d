"""The OCI image built from store paths: validated by skopeo and umoci, and runnable."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

from tests.conftest import require_tool
from tests.projects import cog, project


def test_image_is_a_valid_oci_layout(offline: dict[str, str], tmp_path: Path) -> None:
    skopeo, umoci = require_tool("skopeo"), require_tool("umoci")
    root = project("hello-world", tmp_path)
    layout = tmp_path / "oci"
    result = cog(root, offline, "build", "--output", f"oci:{layout}")
    assert result.returncode == 0, result.stderr[-2000:]
    digest = next(
        line.split()[1] for line in result.stdout.splitlines() if line.startswith("digest")
    )
    inspect = subprocess.run(
        [skopeo, "inspect", f"oci:{layout}:latest"], capture_output=True, text=True, check=True
    )
    info = json.loads(inspect.stdout)
    assert info["Digest"] == digest and info["Created"] == "1970-01-01T00:00:00Z"
    assert info["Labels"]["run.cog.version"] == "0.23.1"
    assert json.loads(info["Labels"]["run.cog.config"])["predict"] == "predict.py:Predictor"
    assert info["Labels"]["run.cog.lock"].startswith("sha256:")
    schema = json.loads(info["Labels"]["run.cog.openapi_schema"])  # read from the model itself
    text = schema["components"]["schemas"]["Input"]["properties"]["text"]
    assert text["type"] == "string" and "prefix" in text["description"]
    config = subprocess.run(
        [skopeo, "inspect", "--config", f"oci:{layout}:latest"],
        capture_output=True,
        text=True,
        check=True,
    )
    image_config = json.loads(config.stdout)["config"]
    assert image_config["WorkingDir"] == "/src" and "5000/tcp" in image_config["ExposedPorts"]
    assert image_config["Cmd"][1:3] == ["-m", "runtime"]
    copy = tmp_path / "copy"
    subprocess.run(
        [skopeo, "copy", f"oci:{layout}:latest", f"oci:{copy}:latest"],
        capture_output=True,
        check=True,
    )
    bundle = tmp_path / "bundle"
    subprocess.run(
        [umoci, "unpack", "--image", f"{layout}:latest", str(bundle)],
        capture_output=True,
        check=True,
    )
    rootfs = bundle / "rootfs"
    assert (rootfs / "src" / "predict.py").is_file()
    assert stat.S_IMODE(os.stat(rootfs / "tmp").st_mode) == 0o1777
    assert (rootfs / "usr/bin/python3.11").is_file()
    model_env = image_config["Cmd"][-1].removesuffix("/bin/python")
    assert (rootfs / model_env.lstrip("/") / "pyvenv.cfg").is_file()
    # The runtime environment and everything it needs came along (the closure is complete).
    runtime_env = image_config["Cmd"][0]
    run = subprocess.run(
        [
            "chroot",
            str(rootfs),
            runtime_env,
            "-c",
            "import runtime.main, trio, quart_trio; print('ok')",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.stdout.strip() == "ok", run.stderr

"""`cog weights status` against a real registry (Debian's docker-registry, htpasswd auth),
through the CLI as a subprocess: each status Cog names, its table, its JSON and its exit code."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.test_weights import env, weights_project
from tests.projects import cog
from tests.services import Registry

__all__ = ["env"]  # the fixture: the CLI's environment, logged in to the registry


def test_status_follows_cog_yaml_the_lock_and_the_registry(
    env: dict[str, str], oci_registry: Registry, tmp_path: Path
) -> None:
    root = weights_project(tmp_path, "status")
    pending = cog(root, env, "weights", "status")
    assert pending.returncode == 1
    assert pending.stdout.splitlines()[0].split() == [
        *("NAME", "TARGET", "STATUS", "SIZE", "LAYERS", "DIGEST")
    ]
    assert [line.split()[:3] for line in pending.stdout.splitlines()[1:]] == [
        ["alpha", "/src/weights/alpha", "pending"],
        ["beta", "/opt/weights/beta", "pending"],
    ]
    assert "not all weights are ready" in pending.stderr
    assert "Traceback" not in pending.stderr

    assert cog(root, env, "weights", "import").returncode == 0
    lock = {w["name"]: w for w in json.loads((root / "weights.lock").read_text())["weights"]}
    ready = cog(root, env, "weights", "status", "--json")
    assert ready.returncode == 0, ready.stderr
    shown = json.loads(ready.stdout)["weights"]
    assert [(w["name"], w["status"]) for w in shown] == [("alpha", "ready"), ("beta", "ready")]
    beta = shown[1]
    assert list(beta) == [
        *("name", "target", "status", "size", "sizeCompressed", "layerCount", "fileCount"),
        *("digest", "source", "layers"),
    ]  # Cog's struct, in its order
    assert (beta["size"], beta["fileCount"], beta["digest"]) == (1024, 1, lock["beta"]["digest"])
    assert beta["source"]["uri"] == "file://./src-beta"
    assert [layer["status"] for layer in beta["layers"]] == ["ready"] * beta["layerCount"]

    verbose = cog(root, env, "weights", "status", "-v")
    assert verbose.returncode == 0, verbose.stderr
    lines = verbose.stdout.splitlines()
    beta_line = next(line for line in lines if line.startswith("beta "))
    assert beta_line.split()[2:] == [
        "ready",
        "1.0KB",
        "1",
        f"sha256:{lock['beta']['digest'][7:19]}",
    ]
    assert lines[lines.index(beta_line) + 1].split()[:2] == ["└─", "ready"]
    header = lines[0]
    assert beta_line.index("ready") == header.index("STATUS")  # one column, two spaces apart

    # Another repository has none of the layers; a changed target is stale; a weight cog.yaml
    # no longer has is orphaned, after those it has.
    config = root / "cog.yaml"
    text = config.read_text().replace("test/status", "test/elsewhere")
    text = text.replace("/opt/weights/beta", "/opt/weights/beta2")
    config.write_text(text)
    changed = cog(root, env, "weights", "status")
    assert changed.returncode == 1
    assert [line.split()[:3] for line in changed.stdout.splitlines()[1:]] == [
        ["alpha", "/src/weights/alpha", "incomplete"],
        ["beta", "/opt/weights/beta2", "stale"],
    ]
    alpha_only = text[: text.index("  - name: beta")]
    config.write_text(alpha_only.replace("test/elsewhere", "test/status"))
    orphaned = cog(root, env, "weights", "status")
    assert [line.split()[:3] for line in orphaned.stdout.splitlines()[1:]] == [
        ["alpha", "/src/weights/alpha", "ready"],
        ["beta", "/opt/weights/beta", "orphaned"],
    ]
    assert orphaned.returncode == 1

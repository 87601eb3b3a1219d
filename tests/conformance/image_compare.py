"""The image's labels and config, Cog's (cog_image.json, read from its source) against ours:
for each of Cog's items, what ours holds and a check of it on a built image. The table is
static, so the report is rendered without building;
tests/conformance/test_conformance_image.py builds one image and runs every check."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA: dict[str, Any] = json.loads((Path(__file__).parent / "cog_image.json").read_text())


@dataclass(frozen=True)
class Built:
    """What a check reads: the image's config, the project it was built from, and what the
    build is expected to have written there."""

    config: dict[str, Any]
    project: Path
    cog_version: str
    schema: str  # the static generator's document for the project
    predict: str

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.config["config"].get("Labels") or {})

    @property
    def env(self) -> dict[str, str]:
        return dict(e.split("=", 1) for e in self.config["config"].get("Env") or [])


Check = Callable[[Built], bool]


@dataclass(frozen=True)
class Expectation:
    ours: str
    check: Check  # true when ours is as `ours` says
    same: bool
    reason: str = ""


NO_INIT = (
    "ours has no init process: the runtime is the image's PID 1 and Cmd (`python -m runtime`, "
    "a trio server that handles SIGTERM and reaps the one worker it starts); a platform that "
    "reads has_init to decide whether to add one will add one"
)
NO_BASE = "ours never builds on Cog's base images (r8.im/cog-base): its layers are store paths"
NO_GIT = (
    "left out on purpose: the image digest would change with every commit of the repository "
    "around the project, even of files outside it; ours is reproducible from cog.yaml, "
    "cog.lock and the project's files alone"
)
BUILD_ONLY = "a build-time variable of Cog's Dockerfile (reset or only read while it builds)"

LABELS: dict[str, Expectation] = {
    "run.cog.version": Expectation(
        "the SDK's version", lambda b: b.labels.get("run.cog.version") == b.cog_version, True
    ),
    "run.cog.config": Expectation(
        "cog.yaml as JSON",
        lambda b: json.loads(b.labels.get("run.cog.config", "{}")).get("predict") == b.predict,
        True,
    ),
    "run.cog.openapi_schema": Expectation(
        "Cog's static document, byte for byte",
        lambda b: b.labels.get("run.cog.openapi_schema") == b.schema,
        True,
    ),
    "run.cog.pip_freeze": Expectation(
        "the model environment's distributions, `name==version` a line",
        lambda b: (
            "run.cog.pip_freeze" in b.labels
            and all(
                re.fullmatch(r"[A-Za-z0-9_.\-]+==\S+", line)
                for line in b.labels["run.cog.pip_freeze"].splitlines()
            )
        ),
        True,
    ),
    "run.cog.has_init": Expectation(
        "absent", lambda b: "run.cog.has_init" not in b.labels, False, NO_INIT
    ),
    "run.cog.cog-base-image-name": Expectation(
        "absent", lambda b: "run.cog.cog-base-image-name" not in b.labels, False, NO_BASE
    ),
    "run.cog.cog-base-image-last-layer-sha": Expectation(
        "absent", lambda b: "run.cog.cog-base-image-last-layer-sha" not in b.labels, False, NO_BASE
    ),
    "run.cog.cog-base-image-last-layer-idx": Expectation(
        "absent", lambda b: "run.cog.cog-base-image-last-layer-idx" not in b.labels, False, NO_BASE
    ),
    "org.opencontainers.image.revision": Expectation(
        "absent", lambda b: "org.opencontainers.image.revision" not in b.labels, False, NO_GIT
    ),
    "org.opencontainers.image.version": Expectation(
        "absent", lambda b: "org.opencontainers.image.version" not in b.labels, False, NO_GIT
    ),
}

CONFIG: dict[str, Expectation] = {
    "WORKDIR": Expectation(
        "WorkingDir /src", lambda b: b.config["config"].get("WorkingDir") == "/src", True
    ),
    "EXPOSE": Expectation(
        "ExposedPorts 5000/tcp", lambda b: "5000/tcp" in b.config["config"]["ExposedPorts"], True
    ),
    "CMD": Expectation(
        "the runtime environment's python -m runtime (the server on port 5000)",
        lambda b: b.config["config"]["Cmd"][1:3] == ["-m", "runtime"],
        False,
        "the same server by another path: Cog's `python -m cog.server.http` is coglet; ours "
        "starts its own runtime from its own environment (and `python -m cog.server.http` "
        "hands over to it, for images run with Cog's command)",
    ),
    "ENTRYPOINT": Expectation(
        "none", lambda b: not b.config["config"].get("Entrypoint"), False, NO_INIT
    ),
    "ENV COG_PREDICT_TYPE_STUB": Expectation(
        "cog.yaml's predict",
        lambda b: b.env.get("COG_PREDICT_TYPE_STUB") == b.predict,
        True,
    ),
    "ENV COG_TRAIN_TYPE_STUB": Expectation(
        "cog.yaml's train, when it has one (here: none, and absent as in Cog)",
        lambda b: "COG_TRAIN_TYPE_STUB" not in b.env,
        True,
    ),
    "ENV COG_MAX_CONCURRENCY": Expectation(
        "cog.yaml's concurrency.max, when it sets one (here: none, and absent as in Cog)",
        lambda b: "COG_MAX_CONCURRENCY" not in b.env,
        True,
    ),
    "ENV PYTHONUNBUFFERED": Expectation(
        "PYTHONUNBUFFERED=1", lambda b: b.env.get("PYTHONUNBUFFERED") == "1", True
    ),
    "ENV DEBIAN_FRONTEND": Expectation(
        "absent",
        lambda b: "DEBIAN_FRONTEND" not in b.env,
        False,
        "set while ours runs apt in build steps (builders/run_step.py), not left in the image",
    ),
    "ENV LD_LIBRARY_PATH": Expectation(
        "GPU images only: the NVIDIA wheels' libraries, then Cog's directories",
        lambda b: "LD_LIBRARY_PATH" not in b.env,
        False,
        "Cog's preamble sets it in every image; ours only where a driver can be (gpu: true), "
        "with the same directories after the NVIDIA wheels' (builders/image.py nvidia_env)",
    ),
    "ENV NVIDIA_DRIVER_CAPABILITIES": Expectation(
        "GPU images only: all",
        lambda b: "NVIDIA_DRIVER_CAPABILITIES" not in b.env,
        False,
        "Cog's preamble sets it in every image; ours in GPU images only",
    ),
    "ENV SSL_CERT_FILE": Expectation(
        "when COG_CA_CERT is given (here not)",
        lambda b: "SSL_CERT_FILE" not in b.env,
        True,
    ),
    "ENV REQUESTS_CA_BUNDLE": Expectation(
        "when COG_CA_CERT is given (here not)",
        lambda b: "REQUESTS_CA_BUNDLE" not in b.env,
        True,
    ),
    "ENV CFLAGS": Expectation("absent", lambda b: "CFLAGS" not in b.env, False, BUILD_ONLY),
    "ENV UV_SYSTEM_PYTHON": Expectation(
        "absent", lambda b: "UV_SYSTEM_PYTHON" not in b.env, False, BUILD_ONLY + " (uv)"
    ),
    "ENV UV_PYTHON": Expectation(
        "absent", lambda b: "UV_PYTHON" not in b.env, False, BUILD_ONLY + " (uv)"
    ),
    "ENV PATH": Expectation(
        "the model environment's bin first, then the system's",
        lambda b: "/bin" in b.env.get("PATH", ""),
        True,
    ),
    "ENV R8_COG_VERSION": Expectation(
        "absent", lambda b: "R8_COG_VERSION" not in b.env, False, NO_BASE
    ),
    "ENV R8_PYTHON_VERSION": Expectation(
        "absent", lambda b: "R8_PYTHON_VERSION" not in b.env, False, NO_BASE
    ),
}


@dataclass(frozen=True)
class Row:
    item: str
    cog: str
    ours: str
    outcome: str  # same, allowed, differs (an item of Cog's that the table does not know)
    reason: str = ""


def _rows() -> list[tuple[Row, Expectation | None]]:
    rows: list[tuple[Row, Expectation | None]] = []
    for label in DATA["labels"]:
        when = "" if label["when"] == "always" else f" (when {label['when']})"
        cog = f"{label['value']}{when}"
        rows.append(_row(f"label {label['label']}", cog, LABELS.get(label["label"])))
    for item in DATA["config"]:
        cog = f"{item['value']} ({item['file']}:{item['line']})"
        rows.append(_row(item["item"], cog, CONFIG.get(item["item"])))
    return rows


def _row(item: str, cog: str, expectation: Expectation | None) -> tuple[Row, Expectation | None]:
    if expectation is None:
        return Row(item, cog, "?", "differs", "no check of ours for this item"), None
    outcome = "same" if expectation.same else "allowed"
    return Row(item, cog, expectation.ours, outcome, expectation.reason), expectation


def rows_from_saved() -> list[Row]:
    return [row for row, _ in _rows()]


def failed_checks(built: Built) -> list[str]:
    return [row.item for row, exp in _rows() if exp is None or not exp.check(built)]

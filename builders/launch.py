"""How a built model is started: one description, used by the image's config (`Cmd`, `Env`)
and by native runs (builders.sandbox.model), so that a native run is the image's run.

The runtime's environment runs the server (`python -m runtime`), which starts the
predictor's worker with the model's environment: two environments over one interpreter.
"""

from __future__ import annotations

from collections.abc import Mapping

from store.paths import StorePath

BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def server_command(model_env: StorePath, runtime_env: StorePath) -> list[str]:
    return [f"{runtime_env}/bin/python", "-m", "runtime", "--python", f"{model_env}/bin/python"]


def model_environment(model_env: StorePath, env: Mapping[str, str]) -> dict[str, str]:
    """The variables a model runs with: the model's environment first on PATH, root's HOME
    (as Docker gives a root container), UTF-8, unbuffered output, then cog.yaml's own."""
    return {
        "PATH": f"{model_env}/bin:{BASE_PATH}",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        **env,
    }

"""Docker's saved registry credentials: config.json (`DOCKER_CONFIG`), credential helpers and
the credential store, read as docker reads them and written as `docker login` writes them."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from store.errors import RegistryError


def docker_config_path() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"


def saved_credentials(host: str, config_path: Path) -> str | None:
    """The base64 `user:password` Docker saved for `host` (or, for a registry on this
    machine, for it under the other loopback name): inline in config.json, else from the
    host's credential helper, else from the credential store."""
    config = load_docker_config(config_path)
    auths: dict[str, Any] = config.get("auths", {})
    helpers: dict[str, Any] = config.get("credHelpers", {})
    names = [host]
    if "localhost" in host:
        names.append(host.replace("localhost", "127.0.0.1"))
    elif "127.0.0.1" in host:
        names.append(host.replace("127.0.0.1", "localhost"))
    for name in names:
        entry = auths.get(name)
        if isinstance(entry, dict) and entry.get("auth"):
            return str(entry["auth"])
        for helper in (helpers.get(name), config.get("credsStore")):
            if helper and (found := _from_helper(str(helper), name)):
                return found
    return None


def _from_helper(helper: str, host: str) -> str | None:
    """`docker-credential-HELPER get` for `host`, as base64 `user:secret`; None when the
    helper is missing, fails or has nothing for the host (docker goes on the same way)."""
    try:
        done = subprocess.run(
            [f"docker-credential-{helper}", "get"],
            input=host.encode(),
            capture_output=True,
            check=True,
            timeout=60,
        )
        answer = json.loads(done.stdout)
        user, secret = str(answer["Username"]), str(answer["Secret"])
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError):
        return None
    return base64.b64encode(f"{user}:{secret}".encode()).decode()


def load_docker_config(path: Path) -> dict[str, Any]:
    """Docker's config.json as it is ({} when there is none); a file that docker itself could
    not read either is one sentence naming it."""
    hint = f"fix {path}, or move it away and run `cog login HOST` again"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise RegistryError(f"cannot read the Docker config {path}: {e.strerror}") from None
    try:
        config = json.loads(data)
    except json.JSONDecodeError as e:
        raise RegistryError(
            f"the Docker config {path} is not valid JSON "
            f"(line {e.lineno}, column {e.colno}: {e.msg})",
            hint=hint,
        ) from None
    except ValueError:  # not UTF-8 (or UTF-16/32) text
        raise RegistryError(f"the Docker config {path} is not JSON text", hint=hint) from None
    if not isinstance(config, dict):
        raise RegistryError(f"the Docker config {path} is not a JSON object", hint=hint)
    for key in ("auths", "credHelpers"):
        if not isinstance(config.get(key, {}), dict):
            raise RegistryError(
                f"{key} in the Docker config {path} is not a JSON object", hint=hint
            )
    return config


def save_credentials(host: str, credentials: str) -> Path:
    """Saves base64 `user:password` for `host` in config.json (only its owner can read it)."""
    path = docker_config_path()
    config = load_docker_config(path)
    config.setdefault("auths", {})[host] = {"auth": credentials}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(config, indent=2) + "\n")
    partial.chmod(0o600)
    partial.replace(path)
    return path

"""`cog serve` and `cog predict`: the predictor in the current directory, this interpreter.

Until images run from the store, both start the runtime (`python -m cog.server.http`) on the
project in the current directory with the current Python. `cog predict` starts it on a free
loopback port, sends one prediction, prints the output (file outputs are written next to
you, as Cog does), and stops it.
"""

from __future__ import annotations

import argparse
import base64
import json
import mimetypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from cog.cli.errors import UsageError
from store.local import Store


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("serve", help="serve the predictor in this directory over Cog's HTTP API")
    p.add_argument("-p", "--port", type=int, default=5000)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--upload-url", default=None, help="PUT file outputs under this URL")
    p.add_argument("--ref", help="predictor reference (default: cog.yaml's predict)")
    p.add_argument("--here", action="store_true", help="serve with this interpreter, unbuilt")
    _build_flags(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("predict", help="run one prediction with the predictor in this directory")
    p.add_argument(
        "-i",
        "--input",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an input; VALUE @file sends that file",
    )
    p.add_argument("-o", "--output", type=Path, help="where to write a file output")
    p.add_argument("--ref", help="predictor reference (default: cog.yaml's predict)")
    p.add_argument("--setup-timeout", type=float, default=600.0)
    p.add_argument(
        "--here",
        action="store_true",
        help="run with this interpreter instead of building the project and running it natively",
    )
    _build_flags(p)
    p.set_defaults(func=cmd_predict)


def _build_flags(p: argparse.ArgumentParser) -> None:
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--locked", action="store_true", help="refuse a missing or stale cog.lock")
    mode.add_argument("--frozen", action="store_true", help="use cog.lock as it is")
    p.add_argument("--arch", default="amd64", help=argparse.SUPPRESS)
    p.add_argument("-j", "--jobs", type=int, default=None, help=argparse.SUPPRESS)


def _env(ref: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if ref:
        env["COG_PREDICT_TYPE_STUB"] = ref
    elif not (Path.cwd() / "cog.yaml").is_file() and "COG_PREDICT_TYPE_STUB" not in env:
        raise UsageError(
            "there is no cog.yaml here to say which predictor to run",
            hint="run it in your project's directory, or pass --ref predict.py:Predictor",
        )
    return env


def _native_mode(args: argparse.Namespace) -> bool:
    return not args.here and not args.ref and (Path.cwd() / "cog.yaml").is_file()


def cmd_serve(args: argparse.Namespace, store: Store) -> int:
    server_args = ["--host", args.host]
    if args.upload_url:
        server_args += ["--upload-url", args.upload_url]
    if _native_mode(args):
        with store.temp_dir("serve-") as scratch:
            argv = _native(store, args, args.port, scratch, server_args)
            return subprocess.call(argv)
    env = _env(args.ref) | {"PORT": str(args.port)}
    return subprocess.call([sys.executable, "-m", "cog.server.http", *server_args], env=env)


def parse_inputs(items: list[str]) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise UsageError(f"input {item!r} is not NAME=VALUE", hint="e.g. -i prompt='a cat'")
        if value.startswith("@"):
            path = Path(value[1:])
            if not path.is_file():
                raise UsageError(f"input file {path} does not exist")
            mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            inputs[name] = f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"
        elif value.startswith("["):  # a list input; objects are not an input type
            try:
                inputs[name] = json.loads(value)
            except json.JSONDecodeError:
                inputs[name] = value
        else:
            inputs[name] = value
    return inputs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _save(value: Any, target: Path | None, index: list[int]) -> Any:
    """Data-URI outputs become files (output.ext, output.1.ext, …); the rest stays as is."""
    if isinstance(value, str) and value.startswith("data:") and ";base64," in value:
        header, payload = value.split(",", 1)
        ext = mimetypes.guess_extension(header[5:].split(";")[0]) or ""
        n = index[0]
        index[0] += 1
        path = (
            target if target is not None and n == 0 else Path(f"output{f'.{n}' if n else ''}{ext}")
        )
        path.write_bytes(base64.b64decode(payload))
        return f"written to {path}"
    if isinstance(value, list):
        return [_save(v, target, index) for v in value]
    if isinstance(value, dict):
        return {k: _save(v, target, index) for k, v in value.items()}
    return value


def _native(
    store: Store, args: argparse.Namespace, port: int, scratch: Path, server_args: list[str]
) -> list[str]:
    """Builds the project here and returns the command that serves it under bubblewrap."""
    from builders.native import server_argv
    from cog.cli.build_cmd import build
    from derivations.config import load_config

    config = load_config(Path.cwd())
    if not config.predict:
        raise UsageError("cog.yaml has no predict:", hint="add predict: predict.py:Predictor")
    _, _, built = build(store, Path.cwd(), args)
    env = config.env | {"PORT": str(port), "COG_PREDICT_TYPE_STUB": config.predict}
    return server_argv(store, built, scratch / "root", env, server_args)


def cmd_predict(args: argparse.Namespace, store: Store) -> int:
    inputs = parse_inputs(args.input)
    port = _free_port()
    with store.temp_dir("predict-") as scratch:
        if _native_mode(args):
            argv = _native(store, args, port, scratch, ["--host", "127.0.0.1"])
            env = dict(os.environ)
        else:
            argv = [sys.executable, "-m", "cog.server.http", "--host", "127.0.0.1"]
            env = _env(args.ref) | {"PORT": str(port)}
        server = subprocess.Popen(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        return _predict(server, port, inputs, args)


def _predict(
    server: subprocess.Popen[bytes], port: int, inputs: dict[str, Any], args: argparse.Namespace
) -> int:
    url = f"http://127.0.0.1:{port}"
    try:
        health = _wait_ready(url, server, args.setup_timeout)
        if health.get("status") != "READY":
            logs = health.get("setup", {}).get("logs", "").strip()
            raise UsageError(f"the predictor's setup failed:\n{logs}")
        response = httpx.post(f"{url}/predictions", json={"input": inputs}, timeout=None)
        body = response.json()
        if response.status_code == 422:
            problems = "; ".join(
                f"{'.'.join(map(str, d['loc'][2:]))}: {d['msg']}" for d in body["detail"]
            )
            raise UsageError(f"invalid input: {problems}", hint="check the names and types with -i")
        if body.get("logs"):
            sys.stderr.write(body["logs"])
        if body.get("status") != "succeeded":
            raise UsageError(f"the prediction {body.get('status')}: {body.get('error')}")
        output = _save(body.get("output"), args.output, [0])
        print(output if isinstance(output, str) else json.dumps(output, indent=2))
        return 0
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)


def _wait_ready(url: str, server: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            err = server.stderr.read().decode(errors="replace") if server.stderr else ""
            raise UsageError(f"the server exited before it was ready: {err.strip()[-500:]}")
        try:
            health: dict[str, Any] = httpx.get(f"{url}/health-check", timeout=5).json()
            if health.get("status") not in ("STARTING", None):
                return health
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise UsageError(f"setup did not finish within {timeout:g} seconds")

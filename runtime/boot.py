"""`python -m cog.server.http` up to the moment the server stack is imported.

Everything here is the standard library, and runs first: the arguments and the port are
checked, then the worker (the predictor's process) is started at once, so the predictor's
imports and `setup()` run while this process imports trio and h11, instead of
after. Only then is `runtime.main` imported to serve.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
from pathlib import Path

from runtime.spawn import Spawned, WorkerSpec, spawn_worker


def predictor_ref(train: bool, cwd: Path) -> str | None:
    """From COG_PREDICT_TYPE_STUB / COG_TRAIN_TYPE_STUB, else cog.yaml's predict/train."""
    ref = os.environ.get("COG_TRAIN_TYPE_STUB" if train else "COG_PREDICT_TYPE_STUB")
    if ref:
        return ref
    config = cwd / "cog.yaml"
    if config.is_file():
        key = "train" if train else "predict"
        for line in config.read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() in (key, "run" if not train else "train") and not line.startswith(" "):
                value = value.strip().strip("'\"")
                if value:
                    return value
    return None


def _bind_error(host: str, port: int) -> str | None:
    """Why the server could not listen on host:port (bound as trio's listeners bind, then
    released)."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _, address in addresses:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(address)
    except OverflowError as e:  # not a TCP port
        return str(e)
    except OSError as e:
        return "the port is in use" if e.errno == errno.EADDRINUSE else str(e.strerror or e)
    return None


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="cog.server.http", description="Cog HTTP server")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument(
        "--await-explicit-shutdown",
        type=lambda v: v.lower() in ("1", "true", "yes"),
        default=False,
        help="ignore SIGTERM; exit on POST /shutdown (or SIGINT)",
    )
    p.add_argument("--x-mode", dest="mode", choices=["predict", "train"], default="predict")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--upload-url", default=None, help="PUT file outputs under this URL")
    p.add_argument("--python", default=sys.executable, help="the model environment's python")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    cwd = Path.cwd()
    train = args.mode == "train"
    ref = predictor_ref(train, cwd)
    if not ref:
        var = "COG_TRAIN_TYPE_STUB" if train else "COG_PREDICT_TYPE_STUB"
        print(
            f"error: no predictor: set {var} (e.g. predict.py:Predictor) or add "
            f"`{'train' if train else 'predict'}:` to cog.yaml",
            file=sys.stderr,
        )
        return 1
    port = int(os.environ.get("PORT", "5000"))
    taken = _bind_error(args.host, port)  # now, not after the model's setup has run
    if taken is not None:
        print(f"error: cannot listen on {args.host} port {port}: {taken}", file=sys.stderr)
        print("hint: set PORT to another port, or stop what listens on it", file=sys.stderr)
        return 1
    spec = WorkerSpec(ref=ref, cwd=cwd, python=args.python, train=train)
    try:
        spawned: Spawned | OSError = spawn_worker(spec)
    except OSError as e:  # reported as the setup's failure, by the server
        spawned = e
    from runtime.main import run_server  # the server stack: imported while the worker starts

    return run_server(args, port, spawned)

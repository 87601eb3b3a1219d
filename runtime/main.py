"""`python -m cog.server.http`: Cog's server entry point, with Cog's flags and variables."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from runtime.app import App
from runtime.predictions import Runtime, env_float
from runtime.worker import WorkerSpec


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
    """Why the server could not listen on host:port (bound as hypercorn binds, then released)."""
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


async def serve_runtime(runtime: Runtime, host: str, port: int, explicit_shutdown: bool) -> None:
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.include_server_header = False  # as coglet: no Server header
    config.graceful_timeout = 1.0
    app: Any = App(runtime)  # an ASGI application (hypercorn's types are narrower)
    async with trio.open_nursery() as nursery:
        await nursery.start(runtime.run)

        async def on_signals() -> None:
            wanted = {signal.SIGINT} if explicit_shutdown else {signal.SIGINT, signal.SIGTERM}
            if explicit_shutdown:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            with trio.open_signal_receiver(*wanted) as signals:
                async for _ in signals:
                    runtime.shutdown_requested.set()
                    return

        nursery.start_soon(on_signals)
        await nursery.start(
            lambda task_status=trio.TASK_STATUS_IGNORED: serve(
                app,
                config,
                shutdown_trigger=runtime.shutdown_requested.wait,
                task_status=task_status,
            )
        )
        await runtime.shutdown_requested.wait()
        await runtime.shutdown()
        nursery.cancel_scope.cancel()


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
    concurrency = os.environ.get("COG_MAX_CONCURRENCY")
    runtime = Runtime(
        WorkerSpec(ref=ref, cwd=cwd, python=args.python, train=train),
        upload_url=args.upload_url,
        setup_timeout=env_float("COG_SETUP_TIMEOUT"),
        max_concurrency=int(concurrency) if concurrency and concurrency.isdigit() else None,
    )
    trio.run(serve_runtime, runtime, args.host, port, args.await_explicit_shutdown)
    return 0

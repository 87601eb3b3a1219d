"""The server: hypercorn serving `runtime.app` over a `Runtime`, until a signal or /shutdown.

Started by `runtime.boot`, which has already checked the arguments and started the worker."""

from __future__ import annotations

import argparse
import os
import signal
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from runtime.app import App
from runtime.boot import Spawned
from runtime.predictions import Runtime, env_float


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


def run_server(args: argparse.Namespace, port: int, spawned: Spawned | OSError) -> int:
    """Serves the started worker's predictor on host:port until shutdown."""
    concurrency = os.environ.get("COG_MAX_CONCURRENCY")
    runtime = Runtime(
        spawned,
        train=args.mode == "train",
        upload_url=args.upload_url,
        setup_timeout=env_float("COG_SETUP_TIMEOUT"),
        max_concurrency=int(concurrency) if concurrency and concurrency.isdigit() else None,
    )
    trio.run(serve_runtime, runtime, args.host, port, args.await_explicit_shutdown)
    return 0

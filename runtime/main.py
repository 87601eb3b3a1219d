"""The server: `runtime.app` over a `Runtime`, served by `runtime.http` until a signal or /shutdown.

Started by `runtime.boot`, which has already checked the arguments and started the worker."""

from __future__ import annotations

import argparse
import os
import signal

import trio

from runtime.app import TOO_LARGE, App
from runtime.http import Limits, Server
from runtime.predictions import Runtime
from runtime.spawn import Spawned


async def serve_runtime(runtime: Runtime, host: str, port: int, explicit_shutdown: bool) -> None:
    server = Server(App(runtime), too_large=TOO_LARGE, limits=Limits.from_env())
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
        await nursery.start(server.serve, host, port)
        await runtime.shutdown_requested.wait()
        await runtime.shutdown()
        with trio.move_on_after(1.0):  # the answers of what shutdown ended are sent first
            await server.drained()
        nursery.cancel_scope.cancel()


def env_float(name: str) -> float | None:
    """A number from the environment; None where it is unset or not a number."""
    value = os.environ.get(name)
    try:
        return float(value) if value else None
    except ValueError:
        return None


def run_server(args: argparse.Namespace, port: int, spawned: Spawned | OSError) -> int:
    """Serves the started worker's predictor on host:port until shutdown."""
    concurrency = os.environ.get("COG_MAX_CONCURRENCY")
    runtime = Runtime(
        spawned,
        train=args.mode == "train",
        upload_url=args.upload_url,
        setup_timeout=env_float("COG_SETUP_TIMEOUT"),
        setup_log_interval=env_float("COG_SETUP_LOG_INTERVAL"),
        max_concurrency=int(concurrency) if concurrency and concurrency.isdigit() else None,
    )
    trio.run(serve_runtime, runtime, args.host, port, args.await_explicit_shutdown)
    return 0

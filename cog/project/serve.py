"""Starting a model's server: the project built here and run natively under bubblewrap, an
image (a store path, an OCI directory or a registry reference) run natively over its
unpacked file system, either of them in the Docker engine, or the project unbuilt with this
interpreter. Each is a `Server` to wait on and stop."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cog.project.errors import UsageError
from cog.project.inputs import check_inputs
from cog.project.options import BuildOptions
from store.local import Store
from store.oci import Layout

if TYPE_CHECKING:  # imported where used: the CLI starts without them
    from builders.sandbox.gpu import HostGpu
    from builders.sandbox.jail import Launch


@dataclass(frozen=True)
class Target:
    """What to serve: `image`, or else the project at `project`; in the Docker engine
    (`docker`); unbuilt with this interpreter (`here`, or `ref`, a predictor reference);
    with `gpus` (as `docker run --gpus` takes them) and the variables `env`; for training.
    `inputs`, when given, are checked against an image's schema before it starts (typed as
    the schema says when they came from `-i` flags)."""

    project: Path
    image: str | None = None
    docker: bool = False
    here: bool = False
    ref: str | None = None
    gpus: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    training: bool = False
    inputs: dict[str, Any] | None = None
    inputs_from_flags: bool = True

    @property
    def native(self) -> bool:
        return not self.here and not self.ref and (self.project / "cog.yaml").is_file()


class Server(Protocol):
    def failure(self) -> str | None:
        """None while it runs; what it said, once it has exited."""

    def wait(self) -> int: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class _Start:
    """One server start: what to serve, how to build it, where it listens and works."""

    store: Store
    target: Target
    options: BuildOptions
    port: int
    scratch: Path
    server_args: list[str]
    gpu: HostGpu | None


def start_server(
    store: Store,
    target: Target,
    options: BuildOptions,
    port: int,
    scratch: Path,
    server_args: list[str],
    quiet: bool,
) -> Server:
    """Starts the server for `target`, listening on `port` (built first where it needs to
    be); `quiet` keeps its output for `failure` instead of passing it through."""
    gpu = None if target.docker else host_gpu(target.gpus)  # before anything is built
    start = _Start(store, target, options, port, scratch, server_args, gpu)
    if target.image or target.docker:
        return _start_image(start, quiet)
    if target.native:
        launch, release = _native(start)
        return ServerProcess(launch, dict(os.environ), quiet, cleanup=release)
    from builders.sandbox.jail import Launch

    env = _unbuilt_env(target.ref) | {"PORT": str(port)}
    here = Launch([sys.executable, "-m", "cog.server.http", *server_args], None)
    return ServerProcess(here, env, quiet)


def host_gpu(gpus: str | None) -> HostGpu | None:
    """`--gpus` for a native run: the host's GPU, or one sentence saying why not, before
    anything is built or started."""
    from builders.sandbox.gpu import discover

    return discover(gpus) if gpus else None


def _unbuilt_env(ref: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if ref:
        env["COG_PREDICT_TYPE_STUB"] = ref
    elif not (Path.cwd() / "cog.yaml").is_file() and "COG_PREDICT_TYPE_STUB" not in env:
        raise UsageError(
            "there is no cog.yaml here to say which predictor to run",
            hint="run it in your project's directory, or pass --ref predict.py:Predictor",
        )
    return env


def check_port(host: str, port: int) -> None:
    """Fails now, before anything is built or started, if the server could not listen on
    host:port: bound as the server binds it (SO_REUSEADDR), then released."""
    if not 0 <= port <= 65535:
        raise UsageError(f"port {port} is not a TCP port", hint="pass -p a port from 1 to 65535")
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise UsageError(
            f"cannot listen on {host}: {e.strerror}",
            hint="pass --host an address of this machine, e.g. 127.0.0.1 or 0.0.0.0",
        ) from None
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise UsageError(
                        f"port {port} is in use on {host}, so the server cannot listen there",
                        hint=f"serve on another port with -p (e.g. -p {free_port()}), "
                        "or stop what listens on it",
                    ) from None
                raise UsageError(
                    f"cannot listen on {host} port {port}: {e.strerror}",
                    hint="pass -p another port, or --host an address of this machine",
                ) from None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    def __init__(
        self,
        launch: Launch,
        env: dict[str, str],
        quiet: bool,
        cleanup: Callable[[], None] | None = None,
    ) -> None:
        self.launch = launch
        self.cleanup = cleanup  # run once the process is stopped (weight mounts)
        try:
            self.process = launch.start(
                env=env,
                stdout=subprocess.DEVNULL if quiet else None,
                stderr=subprocess.PIPE if quiet else None,
                start_new_session=True,
            )
        except BaseException:
            if cleanup is not None:
                cleanup()
            raise

    def failure(self) -> str | None:
        if self.process.poll() is None:
            return None
        err = self.process.stderr.read() if self.process.stderr else b""
        return err.decode(errors="replace")

    def wait(self) -> int:
        return self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.launch.stop()
        if self.cleanup is not None:
            self.cleanup()


class ServerContainer:
    def __init__(self, container: Any) -> None:
        self.container = container

    def failure(self) -> str | None:
        self.container.reload()
        if self.container.status in ("created", "running"):
            return None
        return str(self.container.logs().decode(errors="replace"))

    def wait(self) -> int:
        for line in self.container.logs(stream=True, follow=True):
            sys.stdout.buffer.write(line)
            sys.stdout.flush()
        return int(self.container.wait()["StatusCode"])

    def stop(self) -> None:
        from docker.errors import DockerException

        with contextlib.suppress(DockerException):  # already gone
            self.container.remove(force=True)


def _start_image(start: _Start, quiet: bool) -> Server:
    from builders.sandbox.model import image_argv
    from cog.project import docker_engine
    from cog.project.build import build_image
    from cog.project.images import image_path, unpacked

    store, target, options = start.store, start.target, start.options
    if target.image:
        path = image_path(store, target.image, options.arch)
        layout = Layout.open(store.real_path(path))
        label = layout.config().get("config", {}).get("Labels", {}).get("run.cog.openapi_schema")
        if label and target.inputs is not None:  # before anything starts
            schema = json.loads(label)
            check_inputs(target.inputs, schema, target.training, target.inputs_from_flags)
    else:
        if not (target.project / "cog.yaml").is_file():
            raise UsageError("there is no cog.yaml here to build", hint="name an IMAGE to run")
        path = build_image(store, target.project, options).path
        layout = Layout.open(store.real_path(path))
    env = dict(target.env) | {"PORT": str(start.port)}
    if target.docker:
        tag = f"cog-run:{layout.manifest_digest.split(':')[1][:16]}"
        docker_engine.load(layout, tag, start.scratch)
        return ServerContainer(docker_engine.run(tag, env, target.gpus))
    rootfs = unpacked(store, path)
    config = layout.config()
    launch = image_argv(rootfs, config, env, start.server_args, start.scratch, start.gpu)
    return ServerProcess(launch, dict(os.environ), quiet)


def _native(start: _Start) -> tuple[Launch, Callable[[], None]]:
    """Builds the project and returns the command that serves it under bubblewrap, with
    what releases its managed weights' mounts once it has stopped."""
    from builders.image import layers_env
    from builders.sandbox.model import server_argv
    from cog.project.build import build, concurrency_env
    from cog.project.weights_mounts import prepare_mounts
    from derivations.config import load_config

    store, target, options = start.store, start.target, start.options
    project = target.project
    config = load_config(project)
    if target.training and not config.train:
        raise UsageError("cog.yaml has no train:", hint="add train: train.py:train")
    if not target.training and not config.predict:
        raise UsageError("cog.yaml has no predict:", hint="add predict: predict.py:Predictor")
    mounts = prepare_mounts(project, config)
    try:
        plan = build(store, project, options)
        env = layers_env(store, config, plan.layers, options.arch)
        # concurrency.max as the image has it, under what cog.yaml's environment and -e set
        env |= concurrency_env(config) | config.env | dict(target.env) | {"PORT": str(start.port)}
        if config.predict:
            env["COG_PREDICT_TYPE_STUB"] = config.predict
        view = start.scratch / "root"
        # A training writes where it runs, so it gets the project itself at /src, as in Cog.
        src = None
        if target.training:
            env["COG_TRAIN_TYPE_STUB"] = config.train or ""
            src = project
        binds = mounts.binds
        launch = server_argv(
            store, plan.layers, view, env, start.server_args, src=src, mounts=binds, gpu=start.gpu
        )
        return launch, mounts.release
    except BaseException:
        mounts.release()
        raise

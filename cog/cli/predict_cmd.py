"""`cog serve` and `cog predict`: a model served over Cog's HTTP API, and one prediction.

What runs: the project in the current directory, built and run natively under bubblewrap from
the store; an IMAGE (a store path, an OCI directory, or a registry reference, pulled into the
store), run natively over its unpacked file system; either of them in the Docker engine with
`--docker`; or, with `--here`/`--ref`, the project with the current interpreter, unbuilt.
`cog predict` starts the server on a free loopback port, sends one prediction, prints the output
(file outputs are written next to you, as Cog does), and stops it.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import errno
import json
import mimetypes
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from cog.cli.compat import add_compat_flags
from cog.cli.project import has_project, project_dir
from cog.project.errors import UsageError
from store.local import Store
from store.oci import Layout

if TYPE_CHECKING:  # imported where used: the CLI starts without them
    from builders.sandbox.gpu import HostGpu
    from builders.sandbox.jail import Launch


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("serve")
    p.add_argument("image", nargs="?", help="a store path, OCI directory or registry reference")
    p.add_argument("-p", "--port", type=int, default=8393, help="default 8393, as Cog")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--upload-url", default=None, help="PUT file outputs under this URL")
    p.add_argument("--ref", help="predictor reference (default: cog.yaml's predict)")
    p.add_argument("--here", action="store_true", help="serve with this interpreter, unbuilt")
    _build_flags(p)
    p.set_defaults(func=cmd_serve)

    for name in ("run", "predict"):
        _prediction_parser(sub.add_parser(name))
    p = sub.add_parser("train")
    _prediction_parser(p)
    p.set_defaults(func=cmd_train, output=Path("weights"))


def _prediction_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", nargs="?", help="a store path, OCI directory or registry reference")
    p.add_argument(
        "-i",
        "--input",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an input; VALUE @file sends that file",
    )
    p.add_argument(
        "--json",
        metavar="JSON",
        help="the inputs as a JSON object, or @file.json, or @- (stdin); prints the whole "
        "prediction as JSON",
    )
    p.add_argument(
        "-e",
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for the model",
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
    add_compat_flags(p)
    p.add_argument("--docker", action="store_true", help="run in the Docker engine, not bwrap")
    p.add_argument(
        "--gpus",
        help="GPUs to pass in, as `docker run --gpus` takes them: all, a count, or device=0,1",
    )
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
    return not args.here and not args.ref and has_project()


def cmd_serve(args: argparse.Namespace, store: Store) -> int:
    # In the Docker engine the image's own command listens on every address (host network).
    check_port("0.0.0.0" if args.docker else args.host, args.port)
    server_args = ["--host", args.host]
    if args.upload_url:
        server_args += ["--upload-url", args.upload_url]
    with store.temp_dir("serve-") as scratch:
        server = _start(store, args, args.port, scratch, server_args, quiet=False)
        try:
            return server.wait()
        finally:
            server.stop()


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
                        hint=f"serve on another port with -p (e.g. -p {_free_port()}), "
                        "or stop what listens on it",
                    ) from None
                raise UsageError(
                    f"cannot listen on {host} port {port}: {e.strerror}",
                    hint="pass -p another port, or --host an address of this machine",
                ) from None


class _Server(Protocol):
    def failure(self) -> str | None:
        """None while it runs; what it said, once it has exited."""

    def wait(self) -> int: ...

    def stop(self) -> None: ...


class _Process:
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


class _Container:
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


def _start(
    store: Store,
    args: argparse.Namespace,
    port: int,
    scratch: Path,
    server_args: list[str],
    quiet: bool,
) -> _Server:
    """Starts the server for what the arguments name, listening on `port`."""
    gpu = None if args.docker else host_gpu(args.gpus)  # before anything is built
    if args.image or args.docker:
        return _start_image(store, args, port, scratch, server_args, quiet, gpu)
    if _native_mode(args):
        launch, release = _native(store, args, port, scratch, server_args, gpu)
        return _Process(launch, dict(os.environ), quiet, cleanup=release)
    from builders.sandbox.jail import Launch

    env = _env(args.ref) | {"PORT": str(port)}
    here = Launch([sys.executable, "-m", "cog.server.http", *server_args], None)
    return _Process(here, env, quiet)


def _start_image(
    store: Store,
    args: argparse.Namespace,
    port: int,
    scratch: Path,
    server_args: list[str],
    quiet: bool,
    gpu: HostGpu | None = None,
) -> _Server:
    from builders.sandbox.model import image_argv
    from cog.cli import docker_engine
    from cog.cli.build_cmd import build_image
    from cog.cli.images import image_path, unpacked

    if args.image:
        path = image_path(store, args.image, args.arch)
        layout = Layout.open(store.real_path(path))
        label = layout.config().get("config", {}).get("Labels", {}).get("run.cog.openapi_schema")
        if label and getattr(args, "inputs", None) is not None:  # before anything starts
            training = getattr(args, "train", False)
            check_inputs(args.inputs, json.loads(label), training, args.json is None)
    else:
        if not has_project():
            raise UsageError("there is no cog.yaml here to build", hint="name an IMAGE to run")
        _, path, _ = build_image(store, project_dir(), args)
        layout = Layout.open(store.real_path(path))
    env = model_env(getattr(args, "env", [])) | {"PORT": str(port)}
    if args.docker:
        tag = f"cog-run:{layout.manifest_digest.split(':')[1][:16]}"
        docker_engine.load(layout, tag, scratch)
        return _Container(docker_engine.run(tag, env, args.gpus))
    rootfs = unpacked(store, path)
    launch = image_argv(rootfs, layout.config(), env, server_args, scratch, gpu)
    return _Process(launch, dict(os.environ), quiet)


def _name_value(item: str, flag: str, example: str) -> tuple[str, str]:
    name, eq, value = item.partition("=")
    if not eq or not name:
        raise UsageError(f"{flag} {item!r} is not NAME=VALUE", hint=f"e.g. {flag} {example}")
    return name, value


def parse_inputs(items: list[str]) -> dict[str, Any]:
    """`-i name=value` flags; a name given more than once is a list, as in Cog."""
    values: dict[str, list[Any]] = {}
    for item in items:
        name, value = _name_value(item, "-i", "prompt='a cat'")
        values.setdefault(name, []).append(_input_value(value))
    return {name: found[0] if len(found) == 1 else found for name, found in values.items()}


def _input_value(value: str) -> Any:
    if value.startswith("@"):
        return _data_uri(Path(value[1:]))
    if value.startswith("["):  # a list input; objects are not an input type
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def check_inputs(
    inputs: dict[str, Any], schema: dict[str, Any], training: bool, from_flags: bool
) -> None:
    """Cog's CLI checks, stricter than the server's, before the prediction is sent: every name
    declared, every required one given, each value of its type and within its bounds; `-i`
    values typed as the schema says (a single one for a list input becomes a list)."""
    components = schema.get("components", {}).get("schemas", {})
    component = components.get("TrainingInput" if training else "Input") or components.get("Input")
    if component is None:
        return
    properties: dict[str, Any] = component.get("properties") or {}
    valid = sorted(properties)
    unknown = sorted(name for name in inputs if name not in valid)
    suffix = f"valid inputs are: {', '.join(valid)}" if valid else "model does not accept inputs"
    if len(unknown) == 1:
        raise UsageError(f'unknown input "{unknown[0]}"; {suffix}')
    if unknown:
        raise UsageError(f"unknown inputs {', '.join(map(json.dumps, unknown))}; {suffix}")
    missing = [name for name in component.get("required") or [] if name not in inputs]
    if missing:
        raise UsageError(f'missing required input "{missing[0]}"')
    for name, value in inputs.items():
        prop = _resolved(properties[name], components)
        if from_flags:
            if prop.get("type") == "array" and not isinstance(value, list):
                value = [value]
            value = inputs[name] = _typed(value, prop)
        problem = _problem(value, prop, components)
        if problem:
            raise UsageError(f'invalid input "{name}": {problem}')


# A value's JSON type by its Python type (exact: a bool is not an integer here).
_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array"}


def _resolved(prop: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """An input's schema with its `allOf`/`$ref` (how choices are written) merged in."""
    merged = {k: v for k, v in prop.items() if k != "allOf"}
    for part in prop.get("allOf", []):
        ref = part.get("$ref", "")
        merged |= components.get(ref.rsplit("/", 1)[-1], {}) if ref else part
    return merged


def _typed(value: Any, prop: dict[str, Any]) -> Any:
    """A `-i` string as the JSON value its input's type wants, as Cog's CLI sends it; a value
    that does not parse stays a string (and is reported as one)."""
    if isinstance(value, list):
        return [_typed(v, prop.get("items", {})) for v in value]
    kind = prop.get("type")
    if not isinstance(value, str) or kind not in ("integer", "number", "boolean"):
        return value
    try:
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value)
    except ValueError:
        return value
    return {"true": True, "false": False}.get(value.lower(), value)


def _problem(value: Any, prop: dict[str, Any], components: dict[str, Any]) -> str | None:
    """What is wrong with one input value, in Cog's words (its CLI checks the schema before
    anything runs); None when the server may have it."""
    if value is None:
        return "must not be null (omit the input to use its default)"
    kind = prop.get("type")
    got = _JSON_TYPES.get(type(value), "object")
    fits = {
        "integer": got == "integer",
        "number": got in ("integer", "number"),
        "string": got == "string",
        "boolean": got == "boolean",
        "array": got == "array",
    }.get(kind or "", True)
    if not fits:
        return f"expected {kind}, got {'number' if got == 'integer' else got}"
    if kind == "array":
        items = _resolved(prop.get("items", {}), components)
        return next((p for v in value if (p := _problem(v, items, components))), None)
    if "enum" in prop and value not in prop["enum"]:
        return f"must be one of: {', '.join(str(v) for v in prop['enum'])}"
    if kind in ("integer", "number"):
        if "minimum" in prop and value < prop["minimum"]:
            return f"number must be at least {prop['minimum']}"
        if "maximum" in prop and value > prop["maximum"]:
            return f"number must be at most {prop['maximum']}"
    if kind == "string":
        if "minLength" in prop and len(value) < prop["minLength"]:
            return f"minimum string length is {prop['minLength']}"
        if "maxLength" in prop and len(value) > prop["maxLength"]:
            return f"maximum string length is {prop['maxLength']}"
        if "pattern" in prop and not re.search(prop["pattern"], value):
            return f'string doesn\'t match the regular expression "{prop["pattern"]}"'
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _is_file(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("data:") and ";base64," in value


def _write_file(value: str, destination: Path) -> str:
    """A data-URI output written to `destination`, announced as Cog announces it; a name with
    no extension (or a number for one, as in `output.0`) gets the MIME type's."""
    header, payload = value.split(",", 1)
    ext = destination.suffix
    if not ext or ext[1:].isdigit():
        ext = mimetypes.guess_extension(header[5:].split(";")[0]) or ""
        destination = destination.with_name(destination.name + ext)
    destination.write_bytes(base64.b64decode(payload))
    print(f"Written output to: {destination}", file=sys.stderr)
    return str(destination)


def _save(value: Any, target: Path | None) -> tuple[Any, bool]:
    """File outputs written as Cog writes them (`output.ext`, or `output.0.ext`, `output.1.ext`
    … for a list; `-o` names them); returns the output to show, and whether it was files
    (then nothing is printed)."""
    destination = target or Path("output")
    if _is_file(value):
        return _write_file(value, destination), True
    if isinstance(value, list) and value and all(_is_file(v) for v in value):
        stem, ext = destination.with_suffix(""), destination.suffix
        return [
            _write_file(v, stem.with_name(f"{stem.name}.{i}{ext}")) for i, v in enumerate(value)
        ], True
    if isinstance(value, dict):  # files inside an object too, shown by their paths
        count = [0]

        def write(v: Any) -> Any:
            if _is_file(v):
                n, count[0] = count[0], count[0] + 1
                return _write_file(v, destination if n == 0 else Path(f"{destination}.{n}"))
            if isinstance(v, dict):
                return {k: write(x) for k, x in v.items()}
            if isinstance(v, list):
                return [write(x) for x in v]
            return v

        return write(value), False
    return value, False


def _native(
    store: Store,
    args: argparse.Namespace,
    port: int,
    scratch: Path,
    server_args: list[str],
    gpu: HostGpu | None = None,
) -> tuple[Launch, Callable[[], None]]:
    """Builds the project here and returns the command that serves it under bubblewrap, with
    what releases its managed weights' mounts once it has stopped."""
    from cog.project.weights_mounts import prepare_mounts
    from derivations.config import load_config

    project = project_dir()
    mounts = prepare_mounts(project, load_config(project))
    try:
        launch = _native_argv(store, args, port, scratch, server_args, mounts.binds, gpu)
        return launch, mounts.release
    except BaseException:
        mounts.release()
        raise


def _native_argv(
    store: Store,
    args: argparse.Namespace,
    port: int,
    scratch: Path,
    server_args: list[str],
    mounts: list[tuple[Path, str]],
    gpu: HostGpu | None = None,
) -> Launch:
    from builders.image import layers_env
    from builders.sandbox.model import server_argv
    from cog.cli.build_cmd import build
    from derivations.config import load_config

    project = project_dir()
    config = load_config(project)
    training = getattr(args, "train", False)
    if training and not config.train:
        raise UsageError("cog.yaml has no train:", hint="add train: train.py:train")
    if not training and not config.predict:
        raise UsageError("cog.yaml has no predict:", hint="add predict: predict.py:Predictor")
    _, _, built = build(store, project, args)
    env = layers_env(store, config, built, args.arch)
    env |= config.env | model_env(getattr(args, "env", [])) | {"PORT": str(port)}
    if config.predict:
        env["COG_PREDICT_TYPE_STUB"] = config.predict
    view = scratch / "root"
    if not training:
        return server_argv(store, built, view, env, server_args, mounts=mounts, gpu=gpu)
    # A training writes where it runs, so it gets the project itself at /src, as in Cog.
    env["COG_TRAIN_TYPE_STUB"] = config.train or ""
    return server_argv(store, built, view, env, server_args, src=project, mounts=mounts, gpu=gpu)


def host_gpu(gpus: str | None) -> HostGpu | None:
    """`--gpus` for a native run: the host's GPU, or one sentence saying why not, before
    anything is built or started."""
    from builders.sandbox.gpu import discover

    return discover(gpus) if gpus else None


def json_inputs(text: str) -> dict[str, Any]:
    """`--json`: a JSON object given inline, as @file or as @- (stdin); string values
    `@path` become data URIs of that file, as Cog sends them."""
    source = text[1:] if text.startswith("@") else text
    if text in ("-", "@-"):
        raw = sys.stdin.read()
    elif text.startswith("@"):
        try:
            raw = Path(source).read_text()
        except OSError as e:
            raise UsageError(f"cannot read the JSON inputs from {source} ({e.strerror})") from None
    else:
        raw = text
    try:
        inputs = json.loads(raw)
    except json.JSONDecodeError as e:
        raise UsageError(f"--json is not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(inputs, dict):
        example = """e.g. --json '{"s": "x"}'"""
        raise UsageError("--json must be a JSON object of inputs", hint=example)
    return {
        name: _data_uri(Path(value[1:]))
        if isinstance(value, str) and value.startswith("@")
        else value
        for name, value in inputs.items()
    }


def _data_uri(path: Path) -> str:
    if not path.is_file():
        raise UsageError(f"input file {path} does not exist")
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def model_env(items: list[str]) -> dict[str, str]:
    return dict(_name_value(item, "-e", "HF_HOME=/tmp/hf") for item in items)


def cmd_train(args: argparse.Namespace, store: Store) -> int:
    print(
        'Command "train" is deprecated, the train command will be removed in a future version '
        "of Cog",
        file=sys.stderr,
    )
    if not args.image and not has_project():
        raise UsageError("there is no cog.yaml here to train", hint="name an IMAGE to train")
    args.train = True
    return cmd_predict(args, store)


def cmd_predict(args: argparse.Namespace, store: Store) -> int:
    if args.command == "predict":
        print('"cog predict" is deprecated, use "cog run"', file=sys.stderr)
    if args.json is not None and args.input:
        raise UsageError("Must use one of --json or --input to provide model inputs")
    inputs = json_inputs(args.json) if args.json is not None else parse_inputs(args.input)
    args.inputs = inputs
    model_env(args.env)  # a malformed -e fails now, before the build
    port = _free_port()
    with store.temp_dir("predict-") as scratch:
        server_args = ["--host", "127.0.0.1"]
        if getattr(args, "train", False):
            server_args += ["--x-mode", "train"]
        server = _start(store, args, port, scratch, server_args, quiet=True)
        try:
            return _predict(server, port, inputs, args)
        finally:
            server.stop()


def _predict(server: _Server, port: int, inputs: dict[str, Any], args: argparse.Namespace) -> int:
    url = f"http://127.0.0.1:{port}"
    health = _wait_ready(url, server, args.setup_timeout)
    if health.get("status") != "READY":
        logs = health.get("setup", {}).get("logs", "").strip()
        raise UsageError(f"the predictor's setup failed:\n{logs}")
    training = getattr(args, "train", False)
    setup_logs = health.get("setup", {}).get("logs")
    if setup_logs:  # what setup() printed, on stderr, as Cog streams the container's output
        sys.stderr.write(setup_logs if setup_logs.endswith("\n") else setup_logs + "\n")
    schema = httpx.get(f"{url}/openapi.json", timeout=30)
    if schema.status_code == 200:
        check_inputs(inputs, schema.json(), training, args.json is None)
    endpoint = "trainings" if training else "predictions"
    response = httpx.post(f"{url}/{endpoint}", json={"input": inputs}, timeout=None)
    body = response.json()
    if response.status_code == 422:
        problems = "; ".join(
            f"{'.'.join(map(str, d['loc'][2:]))}: {d['msg']}" for d in body["detail"]
        )
        raise UsageError(f"invalid input: {problems}", hint="check the names and types with -i")
    if body.get("logs"):
        sys.stderr.write(body["logs"])
    if args.json is not None:  # the prediction as Cog prints it: status, output, error, metrics
        # With -o, the JSON goes to that file and file outputs beside it, named by its stem.
        target = _output_path(args.output, "output.json")
        if args.output is not None and target.suffix != ".json":
            print(f"⚠ --output value does not have a .json suffix: {target.name}", file=sys.stderr)
        output, _ = _save(body.get("output"), target.with_suffix(""))
        shown = {"status": body.get("status"), "output": output, "error": body.get("error") or ""}
        if body.get("metrics"):
            shown["metrics"] = body["metrics"]
        _show(go_json(shown, struct=True), target if args.output is not None else None)
        return 0 if body.get("status") == "succeeded" else 1
    if body.get("status") != "succeeded":
        raise UsageError(f"the prediction {body.get('status')}: {body.get('error')}")
    if body.get("output") is None:  # as Cog's CLI says it (a warning, exit 0)
        print("⚠ No output generated", file=sys.stderr)
        return 0
    target = _output_path(args.output, "output")
    output, files = _save(body.get("output"), target)
    if not files:  # a value: printed, or with -o written to that file
        text = output if isinstance(output, str) else go_json(output)
        _show(text, target if args.output is not None else None)
    return 0


def _output_path(given: Path | None, fallback: str) -> Path:
    """Where -o writes, as Cog resolves it: the path given, `fallback` inside it where it is a
    directory, `fallback` here where none was given."""
    if given is None:
        return Path(fallback)
    return given / fallback if given.is_dir() else given


def _show(text: str, target: Path | None) -> None:
    if target is None:
        print(text)
        return
    target.write_text(text)
    print(f"Written output to: {target}", file=sys.stderr)


def go_json(value: Any, struct: bool = False) -> str:
    """JSON as Cog's CLI prints it (Go's encoder, indented by two): object keys sorted (but at
    the top of a `struct`, which keeps its field order), UTF-8 kept, and <, > and & escaped."""

    def sort(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: sort(v[k]) for k in sorted(v)}
        if isinstance(v, list):
            return [sort(x) for x in v]
        return v

    top = {k: sort(v) for k, v in value.items()} if struct else sort(value)
    text = json.dumps(top, indent=2, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _wait_ready(url: str, server: _Server, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        err = server.failure()
        if err is not None:
            raise UsageError(f"the server exited before it was ready: {err.strip()[-500:]}")
        try:
            health: dict[str, Any] = httpx.get(f"{url}/health-check", timeout=5).json()
            if health.get("status") not in ("STARTING", None):
                return health
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise UsageError(f"setup did not finish within {timeout:g} seconds")

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
import json
import mimetypes
import sys
from pathlib import Path
from typing import Any

from cog.cli.build_flags import add_lock_mode_flags, build_options
from cog.cli.cog_flags import add_config_flag, add_noted_flag, add_replicate_token_flag, uint32
from cog.cli.compat import add_compat_flags
from cog.cli.values import add_env_flag, json_inputs, parse_env, parse_inputs
from cog.project.errors import UsageError
from cog.project.locate import has_project, project_dir
from cog.project.predict import predict
from cog.project.serve import Target, check_port, free_port, start_server
from store.local import Store


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("serve")
    p.add_argument("image", nargs="?", help="a store path, OCI directory or registry reference")
    p.add_argument("-p", "--port", type=int, default=8393, help="default 8393, as Cog")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--upload-url", default=None, help="PUT file outputs under this URL")
    p.add_argument("--ref", help="predictor reference (default: cog.yaml's predict)")
    p.add_argument("--here", action="store_true", help="serve with this interpreter, unbuilt")
    _build_flags(p)
    add_noted_flag(p, "--playground", "there is no playground here; /openapi.json describes it")
    add_noted_flag(p, "--playground-port", "there is no playground here", takes="PORT", kind=int)
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
    add_env_flag(p)
    p.add_argument("-o", "--output", type=Path, help="where to write a file output")
    p.add_argument("--ref", help="predictor reference (default: cog.yaml's predict)")
    p.add_argument(
        "--setup-timeout",
        type=uint32,
        default=300,
        metavar="SECONDS",
        help="how long the predictor's setup may take (default 300, as Cog's)",
    )
    add_replicate_token_flag(p)
    p.add_argument(
        "--here",
        action="store_true",
        help="run with this interpreter instead of building the project and running it natively",
    )
    _build_flags(p)
    p.set_defaults(func=cmd_predict)


def _build_flags(p: argparse.ArgumentParser) -> None:
    add_compat_flags(p)
    add_config_flag(p)
    p.add_argument("--docker", action="store_true", help="run in the Docker engine, not bwrap")
    p.add_argument(
        "--gpus",
        help="GPUs to pass in, as `docker run --gpus` takes them: all, a count, or device=0,1",
    )
    add_lock_mode_flags(p)
    p.add_argument("--arch", default="amd64", help=argparse.SUPPRESS)
    p.add_argument("-j", "--jobs", type=int, default=None, help=argparse.SUPPRESS)


def cmd_serve(args: argparse.Namespace, store: Store) -> int:
    # In the Docker engine the image's own command listens on every address (host network).
    check_port("0.0.0.0" if args.docker else args.host, args.port)
    server_args = ["--host", args.host]
    if args.upload_url:
        server_args += ["--upload-url", args.upload_url]
    target = _target(args)
    with store.temp_dir("serve-") as scratch:
        server = start_server(
            store, target, build_options(args), args.port, scratch, server_args, quiet=False
        )
        try:
            return server.wait()
        finally:
            server.stop()


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
    target = _target(args, inputs)  # a malformed -e fails now, before the build
    port = free_port()
    with store.temp_dir("predict-") as scratch:
        server_args = ["--host", "127.0.0.1"]
        if target.training:
            server_args += ["--x-mode", "train"]
        options = build_options(args)
        server = start_server(store, target, options, port, scratch, server_args, quiet=True)
        try:
            body = predict(
                server,
                f"http://127.0.0.1:{port}",
                inputs,
                target.training,
                args.json is None,
                args.setup_timeout,
            )
        finally:
            server.stop()
    return _print_prediction(body, args)


def _target(args: argparse.Namespace, inputs: dict[str, Any] | None = None) -> Target:
    return Target(
        project=project_dir(),
        image=args.image,
        docker=args.docker,
        here=getattr(args, "here", False),
        ref=args.ref,
        gpus=args.gpus,
        env=parse_env(getattr(args, "env", [])),
        training=getattr(args, "train", False),
        inputs=inputs,
        inputs_from_flags=getattr(args, "json", None) is None,
    )


def _print_prediction(body: dict[str, Any], args: argparse.Namespace) -> int:
    """The prediction as Cog's CLI shows it: logs on stderr, then the output printed or
    written as files; the exit code."""
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
        status = json.dumps(body.get("status"))  # as Go's %q quotes it
        raise UsageError(f"Prediction failed with status {status}: {body.get('error')}")
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

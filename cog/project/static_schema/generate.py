"""Cog's build-time schema from a project's source: the checks `cog build` makes before it
builds (pkg/image/build.go: the predictor's metadata, then the schema), and the document.
Errors are Cog's sentences; the caller prefixes them as `cog build` does ("image build
failed: ...")."""

from __future__ import annotations

import ast
import posixpath
from pathlib import Path

from cog.project.static_schema.document import PredictorInfo, document, document_bytes
from cog.project.static_schema.errors import SchemaError, invalid_predict_ref, prefixed
from cog.project.static_schema.gojson import encode, round_trip
from cog.project.static_schema.hints import parse as parse_hint
from cog.project.static_schema.predictor import (
    FileContext,
    Function,
    concurrency_max,
    extract_inputs,
    file_context,
    find_target,
    supports_streaming,
)
from cog.project.static_schema.source import Source
from cog.project.static_schema.types import resolve_output

MINIMUM_SDK = (0, 17, 0)


def _split_ref(ref: str) -> tuple[str, str]:
    path, sep, name = ref.partition(":")
    if not sep or not path or not name:
        raise invalid_predict_ref(ref)
    clean = posixpath.normpath(path)
    if clean.startswith("/") or clean == ".." or clean.startswith("../"):
        raise SchemaError(
            "Other", f"predictor source path {_go_quote(path)} is outside source directory"
        )
    return clean, name


def _go_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _load(root: Path, ref: str, train: bool) -> tuple[FileContext, Function, str]:
    path, name = _split_ref(ref)
    full = root / path
    try:
        text = full.read_bytes()
    except OSError as e:
        verb = "read" if isinstance(e, IsADirectoryError) else "open"
        reason = (e.strerror or str(e)).lower() if e.strerror else str(e)
        raise SchemaError(
            "Other", f"failed to read predictor source {full}: {verb} {full}: {reason}"
        ) from None
    try:
        src = Source.parse(text, str(full))
    except (SyntaxError, ValueError) as e:
        # tree-sitter reads past a syntax error; `ast` cannot, so this is ours, not Cog's.
        line = getattr(e, "lineno", None)
        where = f"{path}, line {line}" if line else path
        raise SchemaError("Syntax", f"{where}: {getattr(e, 'msg', e)}") from None
    ctx = file_context(src, root, path, train, {}, set())
    function, target_ctx = find_target(ctx, name)
    return target_ctx, function, name


def predictor_metadata(root: Path, ref: str, train: bool) -> tuple[bool, int | None]:
    """generatePredictorMetadata: whether the target is async, and its @concurrent max."""
    ctx, function, _ = _load(root, ref, train)
    is_async = isinstance(function, ast.AsyncFunctionDef)
    maximum = concurrency_max(ctx, function)
    if maximum is not None and maximum > 1 and not is_async:
        raise SchemaError(
            "UnsupportedType", "@concurrent(max > 1) requires an async run() or predict() method"
        )
    return is_async, maximum


def generate_info(root: Path, ref: str, train: bool) -> PredictorInfo:
    ctx, function, _ = _load(root, ref, train)
    method = function.name
    inputs = extract_inputs(ctx, function, method)
    is_async = isinstance(function, ast.AsyncFunctionDef)
    if function.returns is None:
        raise SchemaError("MissingReturnType", method)
    output = resolve_output(parse_hint(ctx.src, function.returns), ctx.imports, ctx.models)
    streaming = supports_streaming(ctx, function)
    if streaming and output.kind not in ("iterator", "concat"):
        raise SchemaError(
            "UnsupportedType",
            "@streaming requires Iterator[...], AsyncIterator[...], ConcatenateIterator[...] or "
            "AsyncConcatenateIterator[...] return type",
        )
    maximum = concurrency_max(ctx, function)
    if maximum is not None and maximum > 1 and not is_async:
        raise SchemaError(
            "UnsupportedType", "@concurrent(max > 1) requires an async run() or predict() method"
        )
    return PredictorInfo(inputs, output, train, streaming, maximum, is_async)


def generate_combined(root: Path, predict: str | None, train: str | None, version: str) -> str:
    """GenerateCombined: the label's bytes for the predictor, the trainer, or both merged
    (then, as Cog's, re-read and written indented with sorted keys)."""
    if not predict and not train:
        raise SchemaError("Other", "no predict or train reference found in cog.yaml")
    if not train:
        return document_bytes(generate_info(root, str(predict), False), version)
    if not predict:
        return document_bytes(generate_info(root, train, True), version)
    try:
        predicted = document(generate_info(root, predict, False), version)
    except SchemaError as e:
        raise prefixed("predict schema", e) from None
    try:
        trained = document(generate_info(root, train, True), version)
    except SchemaError as e:
        raise prefixed("train schema", e) from None
    merged = round_trip(predicted)
    other = round_trip(trained)
    for key, value in other["paths"].items():
        merged["paths"].setdefault(key, value)
    for key, value in other["components"]["schemas"].items():
        merged["components"]["schemas"].setdefault(key, value)
    return encode(merged, indent="  ")


def check_sdk_version(sdk_version: str | None) -> None:
    """ValidateSDKVersion: an SDK pinned below 0.17.0 has no static schema."""
    if not sdk_version:
        return
    import re

    match = re.match(r"^(\d+)\.(\d+)\.(\d+)", sdk_version)
    if match is None:
        return
    if tuple(int(g) for g in match.groups()) >= MINIMUM_SDK:
        return
    raise SchemaError(
        "Other",
        f"SDK version {sdk_version} is not supported by static schema generation; use 0.17.0 "
        "or newer",
    )


def check_concurrency(configured: int | None, is_async: bool) -> None:
    """configWithDecoratorConcurrency: cog.yaml's concurrency.max above 1 needs an async
    predictor."""
    if configured is not None and configured > 1 and not is_async:
        raise SchemaError(
            "Other", "concurrency.max > 1 requires an async run() or predict() method"
        )

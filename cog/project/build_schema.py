"""The image's `run.cog.openapi_schema` label, as `cog build` makes it: Cog's static
generator over the project's source (cog.project.static_schema), run before anything is
built so that a signature Cog refuses fails the build at once, in Cog's words."""

from __future__ import annotations

import os
from pathlib import Path

from cog.project.errors import UsageError
from cog.project.static_schema.errors import SchemaError
from cog.project.static_schema.generate import (
    check_concurrency,
    check_sdk_version,
    generate_combined,
    predictor_metadata,
)
from derivations.config import CogConfig


def schema_label(project: Path, config: CogConfig, version: str) -> str | None:
    """The label's text; None when cog.yaml names neither a predictor nor a trainer.
    COG_OPENAPI_SCHEMA names a file to use instead, as with Cog."""
    override = os.environ.get("COG_OPENAPI_SCHEMA")
    if override:
        try:
            return Path(override).read_text()
        except OSError as e:
            raise UsageError(
                f"COG_OPENAPI_SCHEMA: failed to read {override}: {e.strerror or e}",
                hint="point COG_OPENAPI_SCHEMA at a schema file, or unset it",
            ) from None
    if not config.predict and not config.train:
        return None
    ref = str(config.predict or config.train)
    try:  # Cog's order: the predictor's metadata, the SDK's version, then the schema
        is_async, _ = predictor_metadata(project, ref, train=not config.predict)
        check_sdk_version(config.build.sdk_version)
        label = generate_combined(project, config.predict, config.train, version)
        check_concurrency(config.concurrency.max if config.concurrency else None, is_async)
        return label
    except SchemaError as e:
        raise UsageError(
            f"image build failed: {e.message}",
            hint=f"fix the signature of {ref} and build again",
        ) from None

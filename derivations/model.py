"""The derivation: a plain-data recipe (builder kind and version, inputs, args, env, outputs)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from store.errors import InvalidStorePath
from store.paths import StorePath, check_name

_SHA256 = re.compile(r"[0-9a-f]{64}")


class FixedOutput(BaseModel):
    """The declared SHA-256 of a fixed-output derivation's single file output."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    sha256: str

    @field_validator("sha256")
    @classmethod
    def _hex(cls, v: str) -> str:
        v = v.lower().removeprefix("sha256:")
        if not _SHA256.fullmatch(v):
            raise ValueError("must be 64 hexadecimal characters")
        return v


class DrvInput(BaseModel):
    """An output of another derivation."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    drv: Derivation
    output: str = "out"


class SrcInput(BaseModel):
    """A path already in the store (added sources)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    path: str

    @field_validator("path")
    @classmethod
    def _store_path(cls, v: str) -> str:
        return str(StorePath.parse(v))


class Derivation(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    builder: str  # the builder kind, e.g. "fetch", "unpack", "command"
    builder_version: str  # part of every hash: a builder whose output bytes change bumps it
    inputs: dict[str, DrvInput | SrcInput] = Field(default_factory=dict)
    args: dict[str, Any] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    outputs: tuple[str, ...] = ("out",)
    fixed_output: FixedOutput | None = None
    _memo: dict[str, Any] = PrivateAttr(default_factory=dict)  # hashes, computed once

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        try:
            return check_name(v)
        except InvalidStorePath as e:
            raise ValueError(str(e)) from None

    @field_validator("outputs")
    @classmethod
    def _outputs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if (
            not v
            or len(set(v)) != len(v)
            or not all(re.fullmatch(r"[a-z][a-z0-9_]*", o) for o in v)
        ):
            raise ValueError("outputs must be distinct lower-case names, at least one")
        return tuple(sorted(v))

    @model_validator(mode="after")
    def _fixed_has_one_output(self) -> Derivation:
        if self.fixed_output is not None and self.outputs != ("out",):
            raise ValueError("a fixed-output derivation has exactly one output, 'out'")
        return self

    def dep(self, output: str = "out") -> DrvInput:
        """This derivation's `output` as an input of another."""
        if output not in self.outputs:
            raise ValueError(f"{self.name} has no output {output!r}")
        return DrvInput(drv=self, output=output)


DrvInput.model_rebuild()

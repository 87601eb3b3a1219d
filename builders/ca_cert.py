"""The image's layer for COG_CA_CERT: the certificate where Cog's Dockerfile puts it
(/usr/local/share/ca-certificates/cog-ca-cert.crt) and the system bundle of the layers below
with it appended, as `update-ca-certificates` then Cog's `cat >>` leave them. It sits over the
system packages and under the build.run steps, so the steps and the model trust it; the image
names the bundle in SSL_CERT_FILE and REQUESTS_CA_BUNDLE."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from builders.base import Args, BuildContext, derive
from derivations.ca_cert import joined
from derivations.model import Derivation, DrvInput

BUNDLE = "etc/ssl/certs/ca-certificates.crt"
CERT = "usr/local/share/ca-certificates/cog-ca-cert.crt"
ENV = {name: f"/{BUNDLE}" for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")}


def ca_cert_derivation(pem: str, below: Sequence[Derivation]) -> Derivation:
    """The layer trusting `pem` over the root layers `below` (lowest first)."""
    inputs: dict[str, DrvInput] = {f"layer-{i:02d}": d.dep() for i, d in enumerate(below)}
    return derive(CaCertBuilder, "rootfs-ca-cert", inputs=inputs, args={"pem": pem})


class CaCertArgs(Args):
    pem: str


class CaCertBuilder:
    kind = "ca-cert"
    version = "1"
    runs_foreign_code = False

    def build(self, ctx: BuildContext) -> None:
        pem = ctx.args(CaCertArgs).pem
        layers = ctx.layers()
        for rel, text in ((CERT, pem), (BUNDLE, joined(trusted_by(layers), pem))):
            (ctx.out / rel).parent.mkdir(parents=True, exist_ok=True)
            (ctx.out / rel).write_text(text)
        # update-ca-certificates' link for it, beside the ones rootfs made for Debian's.
        os.symlink(f"../../../{CERT}", ctx.out / "etc/ssl/certs/cog-ca-cert.pem")
        ctx.say(f"trusting {pem.count('BEGIN CERTIFICATE')} certificate(s) from COG_CA_CERT")


def trusted_by(layers: Sequence[Path]) -> str:
    """The system bundle of root layers stacked lowest first (the topmost one's); empty when
    none has one. A link is not followed: it would point outside."""
    for layer in reversed(layers):
        bundle = layer / BUNDLE
        if bundle.is_file() and not bundle.is_symlink():
            return bundle.read_text()
    return ""

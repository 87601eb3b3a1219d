"""Builds the test userland (base + python3.11, Cog's tools, ffmpeg, libgl1) into a store; prints
its paths.

Run as its own process by the tests so that two builds can differ in umask, time zone, locale
and store directory, as two machines would.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from builders.realise import realise
from builders.userland import userland
from cuda_channels.channel import load
from derivations.apt import resolve_root
from derivations.hashing import output_path
from derivations.model import DrvInput
from store.local import Store
from tests.debian_mirror import ARCH, PYTHON, SYSTEM_PACKAGES, mirrored


def main(store_dir: str, mirror_url: str) -> None:
    channel = mirrored(load(), mirror_url)
    pins = resolve_root(channel, ARCH, PYTHON, SYSTEM_PACKAGES)
    layers = userland(channel, ARCH, PYTHON, pins)
    store = Store(Path(store_dir))
    realise(store, list(layers.root_layers), jobs=4)
    debs = [
        d.drv
        for layer in layers.root_layers
        for d in layer.inputs.values()
        if isinstance(d, DrvInput) and d.drv.fixed_output
    ]
    paths = {
        "base": str(output_path(layers.base)),
        "python": str(output_path(layers.python_layer)),
        "system": str(output_path(layers.system)),
        "tools": str(output_path(layers.tools)) if layers.tools is not None else "",
        "debs": sorted({str(output_path(d)) for d in debs}),  # listed ones twice
    }
    print(json.dumps(paths))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

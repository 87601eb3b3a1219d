"""Benchmark: the root filesystem for `system_packages: [ffmpeg]`, against debootstrap.

Ours, from empty (a fresh store and an empty index cache): resolve the channel's signed indexes,
fetch the .debs, build the base and system root layers. Then warm: the same build again from
the resolved pins (what `cog build --locked` does), with everything already in the store.
The anchor, in the same run, on the same mirror: `debootstrap --variant=minbase bookworm`,
then `chroot … apt-get install -y ffmpeg` with the same suites (bookworm, -updates, -security).

Run as root: `python bench/rootfs.py [WORKDIR]`. Prints a table; `--json` for raw numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from builders.realise import realise
from builders.rootfs import root_layer_derivation
from cuda_channels.channel import load
from derivations.apt import RootPins, resolve_root
from derivations.model import Derivation
from store.local import Store

PACKAGES = ["ffmpeg"]
ARCH = "amd64"
MIRROR = "http://deb.debian.org/debian"
SECURITY = "http://deb.debian.org/debian-security"


def du_bytes(*paths: Path) -> int:
    argv = ["du", "-s", "-B1", "-c", *map(str, paths)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    return int(out.stdout.splitlines()[-1].split()[0])


def layers(pins: RootPins) -> tuple[Derivation, Derivation]:
    """The derivations from pins alone, as a locked build makes them."""
    base = root_layer_derivation("rootfs-base", pins.base, ARCH)
    return base, root_layer_derivation("rootfs-system", pins.system, ARCH, [base])


def ours(work: Path) -> dict[str, float]:
    store_dir, cache = work / "store", work / "cache"
    for d in (store_dir, cache):
        shutil.rmtree(d, ignore_errors=True)
    os.environ["COG_CACHE_DIR"] = str(cache)
    channel = load()
    subprocess.run(["sync"], check=True)
    t0 = time.perf_counter()
    pins = resolve_root(channel, ARCH, None, PACKAGES)
    resolve_s = time.perf_counter() - t0
    store = Store(store_dir)
    b, s = realise(store, list(layers(pins)), jobs=8)
    subprocess.run(["sync"], check=True)
    cold_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    realise(store, list(layers(pins)), jobs=8)
    warm_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    resolve_root(channel, ARCH, None, PACKAGES)
    relock_s = time.perf_counter() - t0

    debs = [p for p in store_dir.iterdir() if p.name.endswith(".deb")]
    result = {
        "cold_s": cold_s,
        "cold_resolve_s": resolve_s,
        "warm_s": warm_s,
        "relock_warm_cache_s": relock_s,
        "rootfs_bytes": du_bytes(store.real_path(b["out"]), store.real_path(s["out"])),
        "debs_bytes": du_bytes(*debs),
        "packages": len(pins.base) + len(pins.system),
    }
    store.close()
    return result


def debootstrap(work: Path) -> dict[str, float]:
    root = work / "debootstrap"
    shutil.rmtree(root, ignore_errors=True)
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
    subprocess.run(["sync"], check=True)
    start = time.perf_counter()
    subprocess.run(
        ["debootstrap", "--variant=minbase", "bookworm", str(root), MIRROR],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    (root / "etc/apt/sources.list").write_text(
        f"deb {MIRROR} bookworm main\ndeb {MIRROR} bookworm-updates main\n"
        f"deb {SECURITY} bookworm-security main\n"
    )
    shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
    for step in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *PACKAGES]):
        subprocess.run(["chroot", str(root), *step], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["sync"], check=True)
    elapsed = time.perf_counter() - start
    with_debs = du_bytes(root)
    subprocess.run(["chroot", str(root), "apt-get", "clean"], check=True, env=env)
    subprocess.run(["sh", "-c", f"rm -rf {root}/var/lib/apt/lists/*"], check=True)
    return {"cold_s": elapsed, "rootfs_bytes": du_bytes(root), "with_debs_bytes": with_debs}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir", nargs="?", default="/tmp/cog-bench-rootfs", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    mine = ours(args.workdir)
    anchor = debootstrap(args.workdir)
    if args.json:
        print(json.dumps({"cog": mine, "debootstrap": anchor}, indent=2))
        return
    mib = 1024 * 1024
    debs = mine["debs_bytes"] / mib
    print(f"packages: {mine['packages']} (.debs kept in the store: {debs:.0f} MiB)")
    print(f"{'':28}{'cog':>12}{'debootstrap':>14}{'ratio':>8}")
    print(
        f"{'cold (s)':28}{mine['cold_s']:>12.1f}{anchor['cold_s']:>14.1f}"
        f"{mine['cold_s'] / anchor['cold_s']:>8.2f}"
    )
    print(f"{'  of which resolving (s)':28}{mine['cold_resolve_s']:>12.1f}")
    print(f"{'warm, from pins (s)':28}{mine['warm_s']:>12.2f}")
    print(f"{'re-resolve, warm cache (s)':28}{mine['relock_warm_cache_s']:>12.2f}")
    print(
        f"{'rootfs on disk (MiB)':28}{mine['rootfs_bytes'] / mib:>12.0f}"
        f"{anchor['rootfs_bytes'] / mib:>14.0f}"
        f"{mine['rootfs_bytes'] / anchor['rootfs_bytes']:>8.2f}"
    )


if __name__ == "__main__":
    main()

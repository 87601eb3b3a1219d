"""Benchmark: `cog store add` against `nix-store --add` and `sha256sum`, same data, same run.

Datasets: one 1 GiB file, and a 1 GiB tree of 10,000 files. Every contender reads from a warm
page cache (the data is read once before timing) and adds into a fresh, empty store.
Reports wall time, throughput (MiB/s) and peak RSS, and the ratios against nix-store.

usage: python bench/store_add.py [WORKDIR]   (needs Debian's nix-bin; ~10 GiB of disk, as the
stores are kept until the end; see measure())
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

GIB = 1 << 30
ROUNDS = 3
REPO = Path(__file__).resolve().parent.parent


def make_data(work: Path) -> dict[str, Path]:
    big = work / "one-file" / "big.bin"
    tree = work / "tree" / "files"
    if not big.exists():
        big.parent.mkdir(parents=True, exist_ok=True)
        with open(big, "wb") as f:
            for _ in range(GIB // (64 << 20)):
                f.write(os.urandom(64 << 20))
    if not tree.exists():
        size = GIB // 10_000
        for i in range(10_000):
            d = tree / f"d{i % 100:02d}"
            d.mkdir(parents=True, exist_ok=True)
            (d / f"f{i:05d}.bin").write_bytes(os.urandom(size))
    return {"1 GiB file": big, "1 GiB tree, 10,000 files": tree}


def warm(path: Path) -> None:
    subprocess.run(
        f"find {path} -type f -print0 | xargs -0 cat > /dev/null", shell=True, check=True
    )


def settle(data: Path) -> None:
    """The same memory state before every run: nothing dirty (`sync`, so that no contender
    pays for another's writeback), and as root the page cache emptied and then only `data`
    read back into it. On this VM, writing into memory that other runs' copies had filled
    cost up to three times as much as writing into memory just freed, which made a run's
    time depend on what ran before it."""
    subprocess.run(["sync"], check=True)
    if os.geteuid() == 0:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    warm(data)


def measure(
    command: Callable[[Path], str], work: Path, env: dict[str, str], used: list[Path]
) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one run into a fresh empty store.

    GNU time starts the command from a small process: a child forked from this (large) Python
    process would inherit its memory high-water mark. The stores are deleted only at the end
    (`used`): ext4 without a journal (this VM's disk) skips inodes freed in the last minute
    or more when it creates a file, so creating 10,000 files right after deleting 10,000 took
    several times as long, and whoever ran after a deletion paid for it.
    """
    scratch = Path(tempfile.mkdtemp(dir=work))
    used.append(scratch)
    report = scratch / "time"
    start = time.perf_counter()
    subprocess.run(
        [
            "/usr/bin/time",
            "-o",
            str(report),
            "-f",
            "%M",
            "sh",
            "-c",
            command(scratch) + " > /dev/null",
        ],
        env=env,
        check=True,
    )
    wall = time.perf_counter() - start
    return wall, int(report.read_text().split()[-1]) / 1024


def remove(scratch: Path) -> None:
    subprocess.run(["chmod", "-R", "u+w", str(scratch)], check=False)
    shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    work = Path(sys.argv[1] if len(sys.argv) > 1 else "/var/tmp/cog-bench")
    work.mkdir(parents=True, exist_ok=True)
    if shutil.which("nix-store") is None:
        raise SystemExit("nix-store is missing: apt-get install nix-bin")
    sys.path.insert(0, str(REPO))
    from bench.push import byte_compile

    byte_compile()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    rows, used = [], []
    for label, data in make_data(work).items():
        warm(data)
        files = [p for p in data.rglob("*") if p.is_file()] if data.is_dir() else [data]
        size = sum(p.stat().st_size for p in files)
        contenders: dict[str, Callable[[Path], str]] = {
            "cog store add": lambda s, d=data: (
                f"COG_STORE_DIR={s}/store {sys.executable} -m cog.cli.main store add {d}"
            ),
            "nix-store --add": lambda s, d=data: f"nix-store --store {s}/nix --add {d}",
            "sha256sum": (
                (lambda s, d=data: f"find {d} -type f -print0 | sort -z | xargs -0 sha256sum")
                if data.is_dir()
                else (lambda s, d=data: f"sha256sum {d}")
            ),
        }
        # Rounds interleave the contenders, so that a slow spell of this VM's disk (file
        # creation here varies several-fold from minute to minute) falls on all of them.
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
        for _ in range(ROUNDS):
            for name, cmd in contenders.items():
                settle(data)
                runs[name].append(measure(cmd, work, env, used))
        results = {
            name: (min(w for w, _ in got), max(r for _, r in got)) for name, got in runs.items()
        }
        for name, (wall, rss) in results.items():
            ratio = results["nix-store --add"][0] / wall
            speed = f"{size / wall / (1 << 20):.0f} MiB/s"
            each = " / ".join(f"{w:.2f}" for w, _ in runs[name])
            rows.append(
                f"| {label} | {name} | {wall:.2f} s | {each} | {speed} | {rss:.0f} MiB "
                f"| {ratio:.2f}x |"
            )
    for scratch in used:
        remove(scratch)
    print(
        f"| data | tool | wall (best of {ROUNDS}) | each run | throughput | peak RSS "
        "| speed vs nix-store |"
    )
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

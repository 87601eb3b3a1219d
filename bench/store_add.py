"""Benchmark: `cog store add` against `nix-store --add` and `sha256sum`, same data, same run.

Datasets: one 1 GiB file, and a 1 GiB tree of 10,000 files. Every contender reads from a warm
page cache (the data is read once before timing) and adds into a fresh, empty store.
Reports wall time, throughput (MiB/s) and peak RSS, and the ratios against nix-store.

usage: python bench/store_add.py [WORKDIR]   (needs Debian's nix-bin; ~3 GiB of disk)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GIB = 1 << 30
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


def measure(cmd: list[str] | str, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of the command and its waited-for children."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, shell=isinstance(cmd, str), env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd} failed")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    work = Path(sys.argv[1] if len(sys.argv) > 1 else "/var/tmp/cog-bench")
    work.mkdir(parents=True, exist_ok=True)
    cog = [sys.executable, "-m", "cog.cli.main"]
    nix = shutil.which("nix-store")
    if nix is None:
        raise SystemExit("nix-store is missing: apt-get install nix-bin")
    rows = []
    for label, data in make_data(work).items():
        warm(data)
        size = (
            sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
            if data.is_dir()
            else data.stat().st_size
        )
        results = {}
        for name in ("cog store add", "nix-store --add", "sha256sum"):
            scratch = Path(tempfile.mkdtemp(dir=work))
            try:
                if name == "cog store add":
                    env = {
                        **os.environ,
                        "COG_STORE_DIR": str(scratch / "store"),
                        "PYTHONPATH": str(REPO),
                    }
                    results[name] = measure([*cog, "store", "add", str(data)], env)
                elif name == "nix-store --add":
                    results[name] = measure(
                        [nix, "--store", str(scratch / "nix"), "--add", str(data)]
                    )
                elif data.is_dir():
                    results[name] = measure(
                        f"find {data} -type f -print0 | sort -z | xargs -0 sha256sum"
                    )
                else:
                    results[name] = measure(["sha256sum", str(data)])
            finally:
                subprocess.run(["chmod", "-R", "u+w", str(scratch)], check=False)
                shutil.rmtree(scratch, ignore_errors=True)
        for name, (wall, rss) in results.items():
            ratio = results["nix-store --add"][0] / wall
            rows.append(
                f"| {label} | {name} | {wall:.2f} s | {size / wall / (1 << 20):.0f} MiB/s | {rss:.0f} MiB | {ratio:.2f}x |"
            )
    print("| data | tool | wall | throughput | peak RSS | speed vs nix-store |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

"""Benchmark: this runtime against Cog 0.23.1's own server (coglet), one predictor at a time.

(a) trivial predictor, sequential requests: p50/p99 latency; (b) a 10 ms predictor,
sequential: throughput; (c) an async predictor sleeping 50 ms with 8 slots, 8 clients:
throughput; (d) the server process's RSS (the parent, not the worker) after the runs.
Both servers validate against the same schema (`.cog/openapi_schema.json`, from ours).

    python bench/runtime/bench.py [COG_VENV]    # default /var/cache/cog-tests/cog-0.23.1-venv
"""

from __future__ import annotations

import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.runtime_server import Server, serve

HERE = Path(__file__).parent


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


REFUSED = {"409": 0}


def post(http: httpx.Client, x: int) -> httpx.Response:
    """One prediction; a 409 is retried at once and counted (coglet can answer 409 to the
    next sequential request while it frees the slot of the previous one)."""
    while True:
        response = http.post("/predictions", json={"input": {"x": x}})
        if response.status_code != 409:
            return response
        REFUSED["409"] += 1


def latency(server: Server, n: int) -> tuple[float, float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        response = post(server.http, 2)
        times.append(time.perf_counter() - start)
        assert response.json().get("output") == 2, response.text
    times.sort()
    return statistics.median(times) * 1000, times[int(0.99 * len(times)) - 1] * 1000


def throughput(server: Server, n: int, clients: int) -> float:
    def worker(count: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for _ in range(count):
                assert post(http, 1).json()["status"] == "succeeded"

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, [n // clients] * clients))
    return n / (time.perf_counter() - start)


def run(ref: str, reference: Path | None, measure: str, work: Path) -> tuple[float, ...]:
    project = work / (ref.replace(":", "-") + ("-cog" if reference else "-ours"))
    shutil.copytree(HERE, project)
    env = {"COG_MAX_CONCURRENCY": "8"} if "Async" in ref else {}
    if reference is None:
        with serve(ref, cwd=project, env=env) as server:
            return measured(server, measure)
    with serve(ref, cwd=project, env=env) as ours:  # for the schema only
        (project / ".cog").mkdir()
        (project / ".cog/openapi_schema.json").write_text(ours.http.get("/openapi.json").text)
    path = f"{reference / 'bin'}:{os.environ['PATH']}"
    with serve(
        ref, cwd=project, env=env | {"PATH": path}, python=str(reference / "bin/python"), ours=False
    ) as server:
        return measured(server, measure)


def ready_seconds(ref: str, reference: Path | None, work: Path, tries: int = 3) -> float:
    """Best of `tries`: from starting the server process to its first READY health check."""
    project = work / (ref.replace(":", "-") + ("-ready-cog" if reference else "-ready-ours"))
    if not project.exists():
        shutil.copytree(HERE, project)
        if reference is not None:
            with serve(ref, cwd=project) as ours:  # coglet reads the schema ours writes
                (project / ".cog").mkdir()
                (project / ".cog/openapi_schema.json").write_text(
                    ours.http.get("/openapi.json").text
                )
    best = math.inf
    for _ in range(tries):
        start = time.perf_counter()
        if reference is None:
            context = serve(ref, cwd=project, ready=())
        else:
            path = f"{reference / 'bin'}:{os.environ['PATH']}"
            context = serve(
                ref,
                cwd=project,
                env={"PATH": path},
                python=str(reference / "bin/python"),
                ours=False,
                ready=(),
            )
        with context as server:
            server.wait_for("READY", timeout=60, interval=0.005)
            best = min(best, time.perf_counter() - start)
    return best


def measured(server: Server, measure: str) -> tuple[float, ...]:
    for _ in range(20):  # warm up
        post(server.http, 1)
    REFUSED["409"] = 0
    if measure == "latency":
        result: tuple[float, ...] = latency(server, 1000)
    elif measure == "sequential":
        result = (throughput(server, 300, 1),)
    else:
        result = (throughput(server, 800, 8),)
    return (*result, rss_mib(server.process.pid), REFUSED["409"])


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    reference = Path(args[0] if args else "/var/cache/cog-tests/cog-0.23.1-venv")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print(f"{'READY after start (best of 3)':<34}{'ours s':>9}{'coglet s':>10}{'ratio':>8}")
        for ref in (
            "predictors.py:Trivial",
            "heavy_import.py:Predictor",
            "predictors.py:SlowSetup",
        ):
            ours_s, cog_s = ready_seconds(ref, None, work), ready_seconds(ref, reference, work)
            print(f"{ref:<34}{ours_s:>9.2f}{cog_s:>10.2f}{ours_s / cog_s:>8.2f}")
        if "--ready-only" in sys.argv:
            return
        rows = []
        for ref, measure in (
            ("predictors.py:Trivial", "latency"),
            ("predictors.py:TenMs", "sequential"),
            ("predictors.py:Async50ms", "concurrent"),
        ):
            ours = run(ref, None, measure, work)
            cog = run(ref, reference, measure, work)
            rows.append((ref.split(":")[1], measure, ours, cog))
    print(f"{'case':<28}{'ours':>14}{'coglet':>14}{'ratio':>8}")
    for name, measure, ours, cog in rows:
        if measure == "latency":
            print(f"{name + ' p50 ms':<28}{ours[0]:>14.2f}{cog[0]:>14.2f}{ours[0] / cog[0]:>8.2f}")
            print(f"{name + ' p99 ms':<28}{ours[1]:>14.2f}{cog[1]:>14.2f}{ours[1] / cog[1]:>8.2f}")
        else:
            print(f"{name + ' req/s':<28}{ours[0]:>14.1f}{cog[0]:>14.1f}{ours[0] / cog[0]:>8.2f}")
        print(f"{name + ' server RSS MiB':<28}{ours[-2]:>14.1f}{cog[-2]:>14.1f}")
        print(f"{name + ' 409s retried':<28}{ours[-1]:>14.0f}{cog[-1]:>14.0f}")


if __name__ == "__main__":
    main()

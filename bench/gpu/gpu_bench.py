"""Runtime on a GPU: our server against coglet 0.23.1, same predictors, same machine, one run.

Copied from shared/gpu/bench.py (the run in shared/gpu/README.md); changed only so that the
request counts can be lowered (GPU_BENCH_RESNET_N, GPU_BENCH_TOKENS_N; defaults as there),
and formatted for this repository's ruff.
Run on a lent device by bench/gpu/run.sh.

python bench.py PYTHON OURS_PYTHONPATH COGLET_PYTHONPATH
Each predictor is also timed in-process (no server) so the server's own overhead shows.
"""

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(python: str, ref: str, src: str | None) -> tuple[subprocess.Popen, str, float]:
    port = free_port()
    env = dict(os.environ, PORT=str(port), COG_PREDICT_TYPE_STUB=ref)
    env.pop("PYTHONPATH", None)
    env["PATH"] = f"{Path(python).parent}:{env['PATH']}"
    if src:
        env["PYTHONPATH"] = src
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [python, "-m", "cog.server.http", "--host", "127.0.0.1"],
        cwd=HERE,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=open(f"/tmp/server-{port}.log", "wb"),  # noqa: SIM115
    )
    url = f"http://127.0.0.1:{port}"
    while time.perf_counter() - t0 < 180:
        try:
            if httpx.get(url + "/health-check", timeout=2).json().get("status") == "READY":
                return proc, url, time.perf_counter() - t0
        except Exception:
            pass
        if proc.poll() is not None:
            raise SystemExit(
                f"server exited: {Path(f'/tmp/server-{port}.log').read_text()[-2000:]}"
            )
        time.sleep(0.05)
    raise SystemExit("server never READY")


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def measure(url: str, n: int) -> dict:
    times, r409 = [], 0
    with httpx.Client(base_url=url, timeout=120) as http:
        for i in range(n + 20):
            t = time.perf_counter()
            while True:
                r = http.post("/predictions", json={"input": {"x": 1}})
                if r.status_code != 409:
                    break
                r409 += 1
            body = r.json()
            assert body.get("status") == "succeeded", r.text[:500]
            if i >= 20:
                times.append(time.perf_counter() - t)
    times.sort()
    return {
        "p50_ms": statistics.median(times) * 1e3,
        "p99_ms": times[int(0.99 * len(times)) - 1] * 1e3,
        "req_s": len(times) / sum(times),
        "409": r409,
    }


def in_process(ref: str, n: int, python: str, path: str) -> dict:
    code = f"""
import sys, time, statistics, json, inspect
sys.path.insert(0, {str(HERE)!r})
import gpu_predictors as predictors
p = getattr(predictors, {ref!r})(); p.setup()
def once():
    out = p.predict(x=1)
    if inspect.isgenerator(out): out = list(out)
    return out
for _ in range(20): once()
ts = []
for _ in range({n}):
    t = time.perf_counter(); once(); ts.append(time.perf_counter() - t)
ts.sort(); print(json.dumps({{"p50_ms": statistics.median(ts)*1e3, "p99_ms": ts[int(0.99*len(ts))-1]*1e3}}))
"""  # noqa: E501
    env = dict(os.environ, PYTHONPATH=path)
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    py, ours_path, cog_path = sys.argv[1:4]
    rows = {}
    counts = (
        ("ResNet", int(os.environ.get("GPU_BENCH_RESNET_N", "500"))),
        ("Tokens", int(os.environ.get("GPU_BENCH_TOKENS_N", "60"))),
    )
    for ref, n in counts:
        rows[ref] = {"bare": in_process(ref, n, py, ours_path)}
        for name, path in (
            ("ours", ours_path),
            ("coglet", cog_path),
            ("ours2", ours_path),
            ("coglet2", cog_path),
        ):
            proc, url, ready = start(py, f"gpu_predictors.py:{ref}", path)
            try:
                if (
                    name == "ours"
                ):  # coglet validates against the same schema (the Go CLI writes it at build)
                    (HERE / ".cog").mkdir(exist_ok=True)
                    (HERE / ".cog/openapi_schema.json").write_text(
                        httpx.get(url + "/openapi.json").text
                    )
                rows[ref][name] = measure(url, n) | {"ready_s": ready}
            finally:
                stop(proc)
        print(ref, json.dumps(rows[ref], indent=1), flush=True)
    Path(os.environ.get("OUT", "/tmp"), "gpu_runtime.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

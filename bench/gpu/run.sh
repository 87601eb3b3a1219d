#!/usr/bin/env bash
# The GPU runtime benchmark (gpu_bench.py: our server against coglet 0.23.1) on a lent device.
# Run from the repository root on the device machine (no internet; python3 3.12 with torch,
# torchvision and httpx), with the ignored .gpu-carry/ carried along (filled here by
# bench/gpu/fetch_wheels.sh). Writes $OUT/gpu-bench.txt (everything printed), $OUT/gpu_runtime.json
# (gpu_bench.py's numbers) and $OUT/server-logs.txt (the start and end of each server's log).
#
# Knobs: PYTHON (default python3), GPU_BENCH_RESNET_N (500), GPU_BENCH_TOKENS_N (60),
# GPU_BENCH_TIMEOUT (seconds for gpu_bench.py, default 360).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-/tmp/gpu-bench-out}
mkdir -p "$OUT"
export OUT
PY=${PYTHON:-python3}
CARRY=$ROOT/.gpu-carry
WORK=$(mktemp -d /tmp/gpu-bench.XXXXXX)
OURS_SITE=$WORK/ours-site
COGLET_SITE=$WORK/coglet-site

install_wheels() {  # DIR WHEEL...: unpack the wheels into DIR, nothing else
    local dir=$1
    shift
    [ $# -gt 0 ] && [ -f "$1" ] || { echo "FAIL: no wheels for $dir (was .gpu-carry carried?)"; exit 2; }
    if "$PY" -m pip --version >/dev/null 2>&1; then
        env -u PIP_FIND_LINKS -u PIP_CONSTRAINT -u PIP_EXTRA_INDEX_URL -u PIP_INDEX_URL \
            PIP_CONFIG_FILE=/dev/null PIP_REQUIRE_VIRTUALENV=0 PIP_DISABLE_PIP_VERSION_CHECK=1 \
            PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore \
            "$PY" -m pip install --quiet --no-index --no-deps --target "$dir" "$@"
    else  # none of these wheels has a .data directory: unpacking is installing
        echo "no pip for $PY: unpacking the wheels with zipfile"
        "$PY" -c 'import sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in sys.argv[2:]]' "$dir" "$@"
    fi
}

main() {
    echo "== $(date -u +%FT%TZ) $(uname -r), repository $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
    nvidia-smi -L
    "$PY" - <<'EOF'
import sys, torch, torchvision, httpx
print("python", sys.version.split()[0], sys.executable)
print("torch", torch.__version__, "cuda", torch.version.cuda, "torchvision", torchvision.__version__,
      "httpx (machine's)", httpx.__version__)
if not torch.cuda.is_available():
    raise SystemExit("FAIL: torch sees no CUDA device")
print("device", torch.cuda.get_device_name(0))
EOF

    echo "== installing the carried wheels into $WORK"
    local t0=$SECONDS
    install_wheels "$OURS_SITE" "$CARRY"/ours/*.whl
    install_wheels "$COGLET_SITE" "$CARRY"/coglet/*.whl
    echo "installed in $((SECONDS - t0)) s"
    # Checked from a neutral directory: the repository root on sys.path would shadow coglet's cog.
    (cd "$WORK" && PYTHONPATH="$OURS_SITE:$ROOT" "$PY" -c '
import sys, trio, h11, httpx, pydantic, cog, runtime.main
assert cog.__file__.startswith(sys.argv[1]), cog.__file__
print("ours:", "trio", trio.__version__, "pydantic", pydantic.__version__, "httpx", httpx.__version__, "cog from", cog.__file__)
' "$ROOT/")
    (cd "$WORK" && PYTHONPATH="$COGLET_SITE" "$PY" -c '
import sys, coglet, cog, cog.server
assert cog.__file__.startswith(sys.argv[1]), cog.__file__
print("coglet:", coglet.__version__, "cog from", cog.__file__)
' "$COGLET_SITE/")

    echo "== gpu_bench.py (ResNet ${GPU_BENCH_RESNET_N:-500} requests, Tokens ${GPU_BENCH_TOKENS_N:-60}; each server twice)"
    t0=$SECONDS
    # SIGINT on timeout: gpu_bench.py's `finally` then stops the server it started (its own session).
    local rc=0
    PYTHONPATH="$OURS_SITE" timeout -s INT --kill-after=15 "${GPU_BENCH_TIMEOUT:-360}" \
        "$PY" -u bench/gpu/gpu_bench.py "$PY" "$OURS_SITE:$ROOT" "$COGLET_SITE" || rc=$?
    if [ "$rc" -ne 0 ]; then
        [ "$rc" -eq 124 ] && echo "FAIL: gpu_bench.py ran past ${GPU_BENCH_TIMEOUT:-360} s (GPU_BENCH_TIMEOUT)"
        echo "FAIL: gpu_bench.py exited $rc"
        exit "$rc"
    fi
    echo "== gpu_bench.py done in $((SECONDS - t0)) s"
}

save_logs() {  # one file: the device tool brings back at most 8 files from $OUT
    local f
    for f in /tmp/server-*.log; do  # gpu_bench.py's logs, written since $WORK was made
        [ -f "$f" ] && [ "$f" -nt "$WORK" ] || continue
        echo "=== $f ($(stat -c %s "$f") bytes)"
        if [ "$(stat -c %s "$f")" -le 16000 ]; then
            cat "$f"
        else  # start-up and end of a long log
            head -c 8000 "$f"
            printf '\n[...]\n'
            tail -c 8000 "$f"
        fi
        echo
    done >"$OUT/server-logs.txt"
    return 0
}
trap save_logs EXIT

main 2>&1 | tee "$OUT/gpu-bench.txt"

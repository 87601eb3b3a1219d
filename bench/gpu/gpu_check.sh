#!/usr/bin/env bash
# Device check: a GPU model's image run natively with `--gpus all` by our CLI on a lent GPU
# machine. Asserts that the model sees CUDA and computes the right result through `cog run` and
# through `cog serve`, that `--gpus 1` does the same, and that without --gpus the same image runs
# on the CPU with the same result.
#
# usage (from the repository root, on the device): bash bench/gpu/gpu_check.sh [LAYOUT...]
# Each LAYOUT (default .gpu-carry/cuda-gpu-oci) is an example's image, built beforehand where
# there is internet (the device has none, and takes at most 64 MiB a call):
#   (cd examples/cuda-gpu && ../../.venv/bin/cog build --compression zstd \
#       --output oci:../../.gpu-carry/cuda-gpu-oci)
# examples/cuda-gpu (43 MB as a layout) fits; examples/torch-gpu (~3 GB) does not, but its
# predictor prints the same `cuda=… sum=…` line, so its layout is checked the same way on a
# machine it can reach. Our CLI's wheels for the device's python3 (3.12) and Debian's bubblewrap
# .deb (the device has no bwrap) are fetched by `bash bench/gpu/fetch_wheels.sh` into
# .gpu-carry/cli/ and .gpu-carry/bubblewrap_*.deb. Writes $OUT/gpu-check.txt. Exit 0 only when
# every run of every layout passes.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-/tmp/gpu-check-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
CARRY=$ROOT/.gpu-carry
WORK=$(mktemp -d /tmp/gpu-check.XXXXXX)
EXPECT_SUM=16773120  # both predictors' sum for n=64: 2 * (0 + 1 + ... + 4095)
PORT=8393

fail() { echo "FAIL: $*"; exit 1; }

expect() {  # OUTPUT CUDA: the line must say cuda=CUDA and the right sum
    [[ $1 == *"cuda=$2"* ]] || fail "expected cuda=$2, got: $1"
    [[ $1 == *"sum=$EXPECT_SUM"* ]] || fail "expected sum=$EXPECT_SUM, got: $1"
}

check_serve() {  # LAYOUT: cog serve --gpus all, one prediction over HTTP
    local log=$WORK/serve.log pid t0=$SECONDS got
    cog serve "$1" --gpus all -p $PORT >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 120); do
        got=$(curl -fsS "http://127.0.0.1:$PORT/health-check" 2>/dev/null || true)
        [[ $got == *'"READY"'* ]] && break
        kill -0 $pid 2>/dev/null || { cat "$log"; fail "cog serve exited before READY"; }
        sleep 1
    done
    [[ $got == *'"READY"'* ]] || { cat "$log"; fail "cog serve not READY in 120 s"; }
    echo "READY after $((SECONDS - t0)) s"
    got=$(curl -fsS -H 'Content-Type: application/json' -d '{"input": {"n": 64}}' \
        "http://127.0.0.1:$PORT/predictions")
    echo "$got"
    curl -fsS -X POST "http://127.0.0.1:$PORT/shutdown" >/dev/null || true
    wait $pid || true
    expect "$got" True
}

check() {  # LAYOUT
    local layout=$1 t0 got
    echo "== $layout"
    [ -f "$layout/index.json" ] || fail "no OCI layout at $layout (was .gpu-carry carried?)"

    echo "-- cog run --gpus all"
    t0=$SECONDS
    got=$(cog run "$layout" --gpus all -i n=64) || fail "cog run --gpus all exited $?"
    echo "$got ($((SECONDS - t0)) s, the image unpacked into the store included)"
    expect "$got" True

    echo "-- cog run --gpus 1"
    t0=$SECONDS
    got=$(cog run "$layout" --gpus 1 -i n=64) || fail "cog run --gpus 1 exited $?"
    echo "$got ($((SECONDS - t0)) s)"
    expect "$got" True

    echo "-- cog serve --gpus all"
    check_serve "$layout"

    echo "-- cog run (no --gpus: CPU)"
    t0=$SECONDS
    got=$(cog run "$layout" -i n=64) || fail "cog run exited $?"
    echo "$got ($((SECONDS - t0)) s)"
    expect "$got" False
}

main() {
    echo "== $(date -u +%FT%TZ) $(uname -r), repository $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
    nvidia-smi -L || fail "nvidia-smi does not run: is this a GPU machine?"
    ls -l /dev/nvidia* /etc/cdi /var/run/cdi 2>&1 || true

    if ! command -v bwrap >/dev/null; then  # Debian's bubblewrap, unpacked (it works as root)
        local deb
        deb=$(ls "$CARRY"/bubblewrap_*.deb 2>/dev/null | head -1)
        [ -n "$deb" ] || fail "no bwrap here and no .gpu-carry/bubblewrap_*.deb"
        dpkg -x "$deb" "$WORK/bwrap"
        export PATH=$WORK/bwrap/usr/bin:$PATH
    fi
    bwrap --version

    # Our CLI with its dependencies for this python (no pip needed: wheels unpacked in place).
    ls "$CARRY"/cli/*.whl >/dev/null 2>&1 || fail "no .gpu-carry/cli wheels (run fetch_wheels.sh)"
    "$PY" -c 'import sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in sys.argv[2:]]' \
        "$WORK/site" "$CARRY"/cli/*.whl
    export PYTHONPATH=$WORK/site:$ROOT COG_STORE_DIR=$WORK/store
    cog() { (cd "$WORK" && "$PY" -m cog.cli.main "$@"); }

    local layouts=("$@")
    [ ${#layouts[@]} -gt 0 ] || layouts=("$CARRY/cuda-gpu-oci")
    for layout in "${layouts[@]}"; do
        check "$layout"
    done
    echo "PASS"
}

main "$@" 2>&1 | tee "$OUT/gpu-check.txt"
exit "${PIPESTATUS[0]}"

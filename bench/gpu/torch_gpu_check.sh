#!/usr/bin/env bash
# Device check: examples/torch-gpu run natively with `--gpus all` on a lent GPU machine; asserts
# that torch sees CUDA and that the computed result is right, then that the same image without
# --gpus runs on CPU with the same result.
#
# usage (from the repository root, on the device): bash bench/gpu/torch_gpu_check.sh [LAYOUT]
# LAYOUT (default .gpu-carry/torch-gpu-oci) is the example's image, built beforehand where there
# is internet (the device has none):
#   (cd examples/torch-gpu && ../../.venv/bin/cog build --compression zstd \
#       --output oci:../../.gpu-carry/torch-gpu-oci)
# and our CLI's own wheels for the device's python3 (3.12) plus Debian's bubblewrap .deb (the
# device has no bwrap), fetched by `bash bench/gpu/fetch_wheels.sh` into .gpu-carry/cli/ and
# .gpu-carry/bubblewrap_*.deb. Writes $OUT/torch-gpu-check.txt. Exit 0 only when both runs pass.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-/tmp/torch-gpu-check-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
CARRY=$ROOT/.gpu-carry
LAYOUT=${1:-$CARRY/torch-gpu-oci}
WORK=$(mktemp -d /tmp/torch-gpu-check.XXXXXX)
EXPECT_SUM=16773120  # predict.py's sum for n=64: 2 * (0 + 1 + ... + 4095)

fail() { echo "FAIL: $*"; exit 1; }

main() {
    echo "== $(date -u +%FT%TZ) $(uname -r), repository $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
    nvidia-smi -L || fail "nvidia-smi does not run: is this a GPU machine?"
    [ -f "$LAYOUT/index.json" ] || fail "no OCI layout at $LAYOUT (was .gpu-carry carried?)"

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

    echo "== cog run LAYOUT --gpus all"
    local t0=$SECONDS got
    got=$(cog run "$LAYOUT" --gpus all -i n=64) || fail "cog run --gpus all exited $?"
    echo "$got ($((SECONDS - t0)) s, the image unpacked into the store included)"
    [[ $got == *"cuda=True"* ]] || fail "torch.cuda.is_available() is False with --gpus all"
    [[ $got == *"sum=$EXPECT_SUM"* ]] || fail "the result is not sum=$EXPECT_SUM"

    echo "== cog run LAYOUT (no --gpus: CPU)"
    t0=$SECONDS
    got=$(cog run "$LAYOUT" -i n=64) || fail "cog run exited $?"
    echo "$got ($((SECONDS - t0)) s)"
    [[ $got == *"cuda=False"* ]] || fail "torch saw CUDA without --gpus"
    [[ $got == *"sum=$EXPECT_SUM"* ]] || fail "the CPU result is not sum=$EXPECT_SUM"
    echo "PASS"
}

main 2>&1 | tee "$OUT/torch-gpu-check.txt"

#!/usr/bin/env bash
# The store demo: add a tree twice, inspect it, verify, root it, collect garbage.
set -euo pipefail
cog=${1:-cog}
export COG_STORE_DIR=${COG_STORE_DIR:-$(mktemp -d)/store}
work=$(mktemp -d)
mkdir -p "$work/model/weights"
echo 'print("hello")' > "$work/model/predict.py"
head -c 1048576 /dev/urandom > "$work/model/weights/w.bin"
echo "store: $COG_STORE_DIR"
p=$($cog store add "$work/model")
echo "added:   $p"
touch -d '2001-01-01' "$work/model/predict.py"
echo "again:   $($cog store add "$work/model")   (same path: mtimes do not matter)"
$cog store path-info "$p"
$cog store verify
$cog store add "$work/model" --root demo >/dev/null
echo "other" > "$work/other.txt"
$cog store add "$work/other.txt" >/dev/null
$cog store roots
$cog store gc
rm -rf "$work"

#!/usr/bin/env bash
# Run here (with the internet), from the repository root: fills the ignored .gpu-carry/ with the
# wheels run.sh installs on the device (CPython 3.12, x86_64 Linux, no internet there).
# The host's pip configuration (constraints, extra indexes, find-links) is switched off.
set -euo pipefail
cd "$(dirname "$0")/../.."
for side in ours coglet; do
    rm -rf ".gpu-carry/$side"
    mkdir -p ".gpu-carry/$side"
    env -u PIP_FIND_LINKS -u PIP_CONSTRAINT -u PIP_EXTRA_INDEX_URL PIP_CONFIG_FILE=/dev/null \
        python3 -m pip download --quiet --dest ".gpu-carry/$side" \
        --index-url https://pypi.org/simple --only-binary=:all: --no-deps \
        --python-version 3.12 --implementation cp \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux_2_28_x86_64 --platform any \
        -r "bench/gpu/$side-requirements.txt"
done
# For gpu_check.sh: our CLI's dependencies (pyproject.toml's, with theirs) for the device's
# python3, and Debian's bubblewrap (the device has none). Running an image needs neither uv
# (locking) nor cryptography (signing, imported only where a key is used): left out, the
# wheels are 14 MB, which leaves room for a 43 MB layout in the device tool's 64 MiB.
rm -rf .gpu-carry/cli && mkdir -p .gpu-carry/cli
python3 -c 'import tomllib; print("\n".join(d for d in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"] if not d.startswith(("uv", "cryptography"))))' \
    >.gpu-carry/cli-requirements.txt
env -u PIP_FIND_LINKS -u PIP_CONSTRAINT -u PIP_EXTRA_INDEX_URL PIP_CONFIG_FILE=/dev/null \
    python3 -m pip download --quiet --dest .gpu-carry/cli \
    --index-url https://pypi.org/simple --only-binary=:all: \
    --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_28_x86_64 --platform any \
    -r .gpu-carry/cli-requirements.txt
(cd .gpu-carry && apt-get download bubblewrap)
grep -qx '/.gpu-carry/' .git/info/exclude 2>/dev/null || echo '/.gpu-carry/' >> .git/info/exclude
ls .gpu-carry/*
du -sh .gpu-carry

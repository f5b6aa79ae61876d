#!/usr/bin/env bash
# Installs a built wheel into a fresh virtualenv and runs tests/wheel_smoke.py with it:
#   bash scripts/wheel_smoke.sh WHEEL
# Then builds the pure wheel (ROOMCAST_NO_EXTENSIONS=1) and checks that importing it
# does not warn: that wheel chose the twin on purpose.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEEL=$1
PYTHON=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1
venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT
"$PYTHON" -m venv "$venv"
"$venv/bin/pip" install -q "$WHEEL"
# run from outside the source tree, so that only the installed package can be imported
(cd "$venv" && "$venv/bin/python" "$OLDPWD/tests/wheel_smoke.py")

pure=$(env -u ROOMCAST_REQUIRE_EXTENSIONS ROOMCAST_NO_EXTENSIONS=1 bash scripts/build_wheel.sh "$venv/pure" | tail -1)
case "$pure" in *-py3-none-any.whl) ;; *) echo "not a pure wheel: $pure" >&2; exit 1 ;; esac
"$venv/bin/pip" install -q --force-reinstall --no-deps "$pure"
(cd "$venv" && env -u ROOMCAST_REQUIRE_EXTENSIONS -u ROOMCAST_NO_EXTENSIONS \
    "$venv/bin/python" -W error -c \
    'import roomcast, roomcast._speedups as s; assert not s.USING_EXTENSIONS and s.PURE_BUILD; print("pure wheel: the twin, without a warning")')

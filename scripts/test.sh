#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with Python >= 3.10, node and npm:
#   bash scripts/test.sh [pytest arguments...]
# Prepares .venv (roomcast installed with its compiled core, which is required: the
# script installs a C compiler and Python's headers as root with apt-get, and stops
# with "NOT RUN" when it cannot), tests/js/node_modules, chromium, Redis and RabbitMQ,
# then runs pytest. Safe to re-run.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1

step() { printf '\n==> %s\n' "$*"; }
die() { printf '\nroomcast tests: NOT RUN: %s\n' "$*" >&2; exit 1; }

APT_UPDATED=
apt_install() {  # only as root on a machine with apt-get; refreshes the lists once
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        return 1
    fi
    if [ -z "$APT_UPDATED" ]; then
        apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

step "Python"
command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set PYTHON=...)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || die "roomcast needs Python >= 3.10, $PYTHON is $("$PYTHON" -V 2>&1)"
if [ ! -x .venv/bin/python ]; then
    rm -rf .venv
    if ! "$PYTHON" -m venv .venv; then
        rm -rf .venv
        apt_install python3-venv || die "python3 -m venv failed (install python3-venv)"
        "$PYTHON" -m venv .venv
    fi
fi
VPY=$ROOT/.venv/bin/python
"$VPY" -V

step "roomcast and its test dependencies into .venv"
# The compiled core is what users run, so the suite must test it: a run of the pure
# twin alone never reports PASSED. Without a C compiler or Python's headers, install
# them (as root with apt-get), else stop here.
unset ROOMCAST_NO_EXTENSIONS
has_compiler() { command -v cc >/dev/null || command -v gcc >/dev/null; }
if ! has_compiler; then
    apt_install gcc libc6-dev || true
fi
include=$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
if [ ! -f "$include/Python.h" ]; then
    apt_install python3-dev || true
fi
has_compiler || die "no C compiler (cc/gcc): the compiled core cannot be built and tested" \
    "(install gcc, or run this script as root on a machine with apt-get)"
[ -f "$include/Python.h" ] || die "no Python.h in $include: the compiled core cannot be" \
    "built and tested (install the headers of $("$VPY" -V 2>&1), e.g. python3-dev)"
# setup.py then fails instead of falling back to the twin, and conftest fails the
# [c] tests instead of skipping them
export ROOMCAST_REQUIRE_EXTENSIONS=1
echo "C compiler and Python.h found: the compiled core is built and required"
"$VPY" -m pip install -q ".[test,redis]" || die "pip install failed"
"$VPY" -c 'from roomcast import _speedups; assert _speedups.USING_EXTENSIONS' \
    || die "the compiled core was not built or does not import (see above)"
echo "the installed roomcast uses its compiled core"

step "the wheel: build (auditwheel repair: manylinux), smoke test in a fresh virtualenv"
rm -rf build/wheelhouse
WHEEL=$(bash scripts/build_wheel.sh build/wheelhouse | tail -1) || die "building the wheel failed"
echo "$WHEEL"
PYTHON=$PYTHON bash scripts/wheel_smoke.sh "$WHEEL" || die "the wheel's smoke test failed"

step "node packages (tests/js)"
command -v node >/dev/null || die "node not found"
command -v npm >/dev/null || die "npm not found"
node --version
(cd tests/js && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed"

step "chromium (browser test)"
if [ ! -x /usr/bin/chromium ]; then
    apt_install chromium || echo "WARNING: /usr/bin/chromium is missing and could not be" \
        "installed (needs root and apt-get): the browser test will fail" >&2
fi
[ -x /usr/bin/chromium ] && /usr/bin/chromium --version 2>/dev/null || true

step "Redis"
redis_answers() {
    "$VPY" - <<'EOF'
import socket, sys
try:
    with socket.create_connection(("127.0.0.1", 6379), timeout=0.5) as conn:
        conn.sendall(b"*1\r\n$4\r\nPING\r\n")
        sys.exit(0 if conn.recv(64).startswith(b"+PONG") else 1)
except OSError:
    sys.exit(1)
EOF
}
# The Redis Cluster and Redis-restart tests start redis-server nodes of their own,
# so the binaries are needed even when a Redis answers on 6379.
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    apt_install redis-server || echo "WARNING: redis-server/redis-cli are missing and" \
        "could not be installed: the Redis tests will fail" >&2
fi
if redis_answers; then
    echo "using the Redis on 127.0.0.1:6379 (tests use their own key prefixes)"
else
    echo "no Redis on 127.0.0.1:6379: the tests start their own redis-server"
fi
command -v redis-server >/dev/null && redis-server --version

step "RabbitMQ (python-socketio's KombuManager tests)"
port_answers() {
    "$VPY" -c 'import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.5).close()
except OSError:
    sys.exit(1)' "$1"
}
if port_answers 5672; then
    echo "using the RabbitMQ on 127.0.0.1:5672 (tests use their own exchanges)"
else
    if ! command -v rabbitmq-server >/dev/null; then
        apt_install rabbitmq-server || echo "WARNING: rabbitmq-server is missing and could" \
            "not be installed: the KombuManager tests will fail" >&2
    fi
    if command -v rabbitmq-server >/dev/null; then
        echo "starting rabbitmq-server"
        rabbitmq-server -detached >/dev/null 2>&1 || true
        for _ in $(seq 120); do port_answers 5672 && break; sleep 0.5; done
        port_answers 5672 && echo "RabbitMQ answers on 5672" \
            || echo "WARNING: RabbitMQ did not start: the KombuManager tests will fail" >&2
    fi
fi

step "pytest $*"
set +e
"$VPY" -m pytest --durations=10 "$@"  # the slowest tests, to keep the budget in view
rc=$?
set -e
if [ "$rc" = 0 ]; then
    printf '\nroomcast tests: PASSED\n'
elif [ "$rc" = 5 ]; then
    printf '\nroomcast tests: FAILED (pytest collected no tests)\n'
else
    printf '\nroomcast tests: FAILED (pytest exit code %s)\n' "$rc"
fi
exit "$rc"

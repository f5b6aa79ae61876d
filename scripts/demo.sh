#!/usr/bin/env bash
# The demo: a chat with rooms and a news feed, served by roomcast.
#   bash scripts/demo.sh [--host 127.0.0.1] [--port 5000]   then open http://127.0.0.1:5000
# Installs roomcast into .venv and the official socket.io browser client into .demo/
# (npm; nothing third-party is kept in the repo), then serves until Ctrl-C.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1

command -v "$PYTHON" >/dev/null || { echo "$PYTHON not found (set PYTHON=...)" >&2; exit 1; }
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || { echo "roomcast needs Python >= 3.10" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
    rm -rf .venv
    "$PYTHON" -m venv .venv || { echo "python3 -m venv failed (install python3-venv)" >&2; exit 1; }
fi

echo "==> installing roomcast into .venv"
.venv/bin/python -m pip install -q .

CLIENT_JS=.demo/node_modules/socket.io-client/dist/socket.io.min.js
if [ ! -f "$CLIENT_JS" ]; then
    echo "==> fetching the socket.io browser client into .demo/"
    command -v npm >/dev/null || { echo "npm not found" >&2; exit 1; }
    npm install --prefix .demo --no-audit --no-fund --loglevel=error socket.io-client@4.8
fi

exec .venv/bin/python -m roomcast.demo --client-js "$CLIENT_JS" "$@"

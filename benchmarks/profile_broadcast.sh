#!/usr/bin/env bash
# Where a roomcast broadcast spends its server CPU: perf samples of the server process
# while it broadcasts to N WebSocket clients (the benchmark app and load generator of
# run.py; run `python benchmarks/run.py --quick` once first to build the load generator).
#   bash benchmarks/profile_broadcast.sh [clients=5000] [> benchmarks/results/profile.md]
# Needs perf (Debian: linux-perf). Talks to 127.0.0.1 only and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-5000}
PORT=${PORT:-18779}
LOADGEN=benchmarks/results/raw/loadgen
[ -x "$LOADGEN" ] || { echo "build the load generator first: python benchmarks/run.py --quick" >&2; exit 1; }
command -v perf >/dev/null || { echo "perf is needed (apt-get install linux-perf)" >&2; exit 1; }
ulimit -n $((N * 2 + 1000))
DATA=$(mktemp -d)
ROOMCAST_REQUIRE_EXTENSIONS=1 taskset -c 0 python benchmarks/servers/roomcast_app.py "$PORT" 2>"$DATA/app.err" &
APP=$!
trap 'kill $APP 2>/dev/null || true; rm -rf "$DATA"' EXIT
sleep 1.5
( echo "connect $PORT $N 64"; sleep 6; echo "join"; sleep 2; echo "burst 1 all 20"; sleep 3
  echo "burst 2 all 60"; sleep 12; echo quit ) | taskset -c 1 "$LOADGEN" > "$DATA/lg.out" 2>/dev/null &
LG=$!
sleep 11.2
perf record -F 2000 -g -p "$APP" -o "$DATA/perf.data" -- sleep 4 2>/dev/null >/dev/null
wait $LG || true
echo "## Server CPU of a roomcast broadcast to $N WebSocket clients, by library (perf)"
echo
echo '```'
perf report -i "$DATA/perf.data" --no-children --stdio --sort dso 2>/dev/null | grep -E "^ +[0-9]" | head -8 || true
echo '```'
echo
echo "Top symbols:"
echo
echo '```'
perf report -i "$DATA/perf.data" --no-children --stdio --sort dso,symbol -g none 2>/dev/null | grep -E "^ +[0-9]" | head -15 || true
echo '```'
echo
echo "Load generator: $(tail -1 "$DATA/lg.out" 2>/dev/null | cut -c1-160)"

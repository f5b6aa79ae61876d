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
source benchmarks/profile_common.sh
start_app "$PORT" "$N"
( echo "connect $PORT $N 64"; sleep 6; echo "join"; sleep 2; echo "burst 1 all 20"; sleep 3
  echo "burst 2 all 60"; sleep 12; echo quit ) | taskset -c 1 "$LOADGEN" > "$DATA/lg.out" 2>/dev/null &
LG=$!
record_app 11.2
echo "## Server CPU of a roomcast broadcast to $N WebSocket clients, by library (perf)"
echo
perf_tables 8 15
echo
echo "Load generator: $(tail -1 "$DATA/lg.out" 2>/dev/null | cut -c1-160)"

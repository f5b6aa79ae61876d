#!/usr/bin/env bash
# Where a roomcast server spends its CPU on inbound events: perf samples of the server
# process while N WebSocket clients run the chat relay (rooms of 10, one acked message in
# flight per client; the benchmark app and load generator of run.py; run
# `python benchmarks/run.py --quick` once first to build the load generator).
#   bash benchmarks/profile_chat.sh [clients=5000] [> benchmarks/results/profile-chat.md]
# Needs perf (Debian: linux-perf). Talks to 127.0.0.1 only and stops by itself.
# Python frames show as the interpreter's C functions (_PyEval_EvalFrameDefault...);
# the split by library says how much is kernel (TCP), interpreter, gevent and roomcast's core.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-5000}
PORT=${PORT:-18781}
source benchmarks/profile_common.sh
start_app "$PORT" "$N" PYTHONPATH=src
( echo "connect $PORT $N 64"; sleep 6; echo "join"; sleep 2; echo "chat 1 2"; sleep 3
  echo "chat 2 60"; sleep 14; echo quit ) | taskset -c 1 "$LOADGEN" > "$DATA/lg.out" 2>/dev/null &
LG=$!
record_app 11.5
echo "## Server CPU of the chat relay, $N WebSocket clients in rooms of 10, by library (perf)"
echo
perf_tables 10 25
echo
echo "Load generator (the measured chat phase): $(grep '"cmd":"chat"' "$DATA/lg.out" 2>/dev/null | tail -1 | cut -c1-220)"

#!/usr/bin/env bash
# Where a roomcast server spends its CPU on inbound events: perf samples of the server
# process while N WebSocket clients run the chat relay (rooms of 10, one acked message in
# flight per client; the benchmark app and load generator of run.py; run
# `python benchmarks/run.py --quick` once first to build the load generator).
#   bash benchmarks/profile_chat.sh [clients=5000] [half-load msgs/s=18000] [> benchmarks/results/profile-chat.md]
# Part 1, at saturation: perf by library and symbol. Part 2, at a paced rate (about half
# of saturation): the Python functions (py-spy, when installed) and the send/recv/epoll
# system calls per inbound event.
# Needs perf (Debian: linux-perf). Talks to 127.0.0.1 only and stops by itself.
# Python frames show as the interpreter's C functions (_PyEval_EvalFrameDefault...);
# the split by library says how much is kernel (TCP), interpreter, gevent and roomcast's core.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-5000}
RATE=${2:-18000}
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

kill $APP 2>/dev/null || true
wait $APP 2>/dev/null || true
rm -rf "$DATA"

PORT=$((PORT + 1))
start_app "$PORT" "$N" PYTHONPATH=src
( echo "connect $PORT $N 64"; sleep 6; echo "join"; sleep 2; echo "chat 1 2"; sleep 3
  echo "chatpaced 2 $RATE 10"; sleep 12; echo quit ) | taskset -c 1 "$LOADGEN" > "$DATA/lg.out" 2>/dev/null &
LG=$!
sleep 14.5
syscall_counts 4 > "$DATA/calls.txt" &
CALLS=$!
echo
echo "## The chat relay at $RATE inbound messages/s (paced, round robin), $N clients: Python functions (py-spy, 4 s)"
echo
pyspy_table 4 25
wait $CALLS || true
wait $LG || true
echo
echo "System calls per inbound event (perf, the same 4 s, $((RATE * 4)) events):"
echo
echo '```'
awk -v ev=$((RATE * 4)) '{printf "%-10s %8d  %.2f per event\n", $1, $2, $2 / ev}' "$DATA/calls.txt"
echo '```'
echo
echo "Load generator (the paced phase): $(grep '"cmd":"chatpaced"' "$DATA/lg.out" 2>/dev/null | tail -1 | cut -c1-260)"

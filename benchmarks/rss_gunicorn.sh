#!/usr/bin/env bash
# RSS per idle WebSocket connection of the benchmark app under gunicorn's gevent-websocket
# worker, beside the same app on roomcast's own server (io.run's): N clients connect and
# join their rooms; the figure is (RSS after - RSS before) / N of the serving process.
#   bash benchmarks/rss_gunicorn.sh [clients=5000]
# Needs gunicorn and gevent-websocket (pip install gunicorn gevent-websocket) and the load
# generator (python benchmarks/run.py --quick builds it). Talks to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-5000}
LOADGEN=benchmarks/results/raw/loadgen
[ -x "$LOADGEN" ] || { echo "build the load generator first: python benchmarks/run.py --quick" >&2; exit 1; }
ulimit -n $((N * 2 + 1000))
export PYTHONPATH=$PWD/src ROOMCAST_REQUIRE_EXTENSIONS=1
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

measure() {   # measure LABEL PORT PID: connect N clients to PORT, RSS growth of PID
  local label=$1 port=$2 pid=$3 before after
  sleep 1
  before=$(rss_kib "$pid")
  ( echo "connect $port $N 64"; sleep $((N / 800 + 4)); echo "join"; sleep 3; echo quit ) \
    | taskset -c 1 "$LOADGEN" > /dev/null 2>&1 &
  local lg=$!
  sleep $((N / 800 + 6))
  after=$(rss_kib "$pid")
  wait $lg || true
  awk -v l="$label" -v b="$before" -v a="$after" -v n="$N" \
    'BEGIN {printf "| %s | %.1f KiB |\n", l, (a - b) / n}'
}

echo "| $N idle WebSocket connections | RSS per connection |"
echo "|---|---|"
PORT=18795
(cd benchmarks/servers && exec taskset -c 0 gunicorn --log-level warning -k geventwebsocket.gunicorn.workers.GeventWebSocketWorker \
  -w 1 -b 127.0.0.1:$PORT --backlog 2048 roomcast_wsgi:application) &
MASTER=$!
trap 'kill $MASTER 2>/dev/null || true' EXIT
for _ in $(seq 50); do WORKER=$(pgrep -P $MASTER | head -1 || true); [ -n "$WORKER" ] && break; sleep 0.2; done
sleep 2
measure "gunicorn, GeventWebSocketWorker -w 1 (the worker)" $PORT "$WORKER"
kill $MASTER; wait $MASTER 2>/dev/null || true

PORT=18796
taskset -c 0 python benchmarks/servers/roomcast_app.py $PORT 2>/dev/null &
APP=$!
trap 'kill $APP 2>/dev/null || true' EXIT
sleep 1.5
measure "roomcast's own server (io.run / roomcast.wsgi.WebSocketHandler)" $PORT $APP

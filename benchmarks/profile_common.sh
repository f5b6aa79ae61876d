# Sourced by profile_broadcast.sh and profile_chat.sh, from the repository root: their
# checks, the benchmark app on core 0, perf's 4 s of samples and the two perf tables.
LOADGEN=benchmarks/results/raw/loadgen
[ -x "$LOADGEN" ] || { echo "build the load generator first: python benchmarks/run.py --quick" >&2; exit 1; }
command -v perf >/dev/null || { echo "perf is needed (apt-get install linux-perf)" >&2; exit 1; }

# start_app PORT CLIENTS [NAME=value...]: the benchmark app on core 0, with these variables
# too ($APP), and a scratch directory ($DATA); both go when the script exits.
start_app() {
  local port=$1 clients=$2
  shift 2
  ulimit -n $((clients * 2 + 1000))
  DATA=$(mktemp -d)
  env "$@" ROOMCAST_REQUIRE_EXTENSIONS=1 taskset -c 0 python benchmarks/servers/roomcast_app.py "$port" 2>"$DATA/app.err" &
  APP=$!
  trap 'kill $APP 2>/dev/null || true; rm -rf "$DATA"' EXIT
  sleep 1.5
}

# record_app AFTER: 4 s of perf samples of the app from AFTER seconds on, then the end
# of the load generator ($LG, started by the caller with its output in $DATA/lg.out).
record_app() {
  sleep "$1"
  perf record -F 2000 -g -p "$APP" -o "$DATA/perf.data" -- sleep 4 2>/dev/null >/dev/null
  wait $LG || true
}

# perf_tables LIBRARIES SYMBOLS: the samples by library, then the top symbols (at most
# that many rows each).
perf_tables() {
  echo '```'
  perf report -i "$DATA/perf.data" --no-children --stdio --sort dso 2>/dev/null | grep -E "^ +[0-9]" | head -"$1" || true
  echo '```'
  echo
  echo "Top symbols:"
  echo
  echo '```'
  perf report -i "$DATA/perf.data" --no-children --stdio --sort dso,symbol -g none 2>/dev/null | grep -E "^ +[0-9]" | head -"$2" || true
  echo '```'
}

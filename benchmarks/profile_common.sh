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

# pyspy_table SECONDS ROWS: py-spy's samples of the app's Python frames for SECONDS, as
# two tables: where the time is spent (the innermost Python function, which includes the
# C it calls: syscalls, the compiled core) and what it is spent under (every function on
# the stack). Skipped, with a note, when py-spy is not installed (pip install py-spy).
pyspy_table() {
  if ! command -v py-spy >/dev/null; then
    echo "(py-spy is not installed: pip install py-spy)"
    return
  fi
  py-spy record -r 500 -d "$1" -p "$APP" -f raw -o "$DATA/spy.txt" --nonblocking >/dev/null 2>&1 || true
  python - "$DATA/spy.txt" "$2" <<'PY'
import collections, re, sys
own, under, total, loop = collections.Counter(), collections.Counter(), 0, 0
for line in open(sys.argv[1]):
    stack, _, count = line.rstrip().rpartition(" ")
    if not stack:
        continue
    frames = [re.sub(r" \(([^:)]*):\d+\)", r" (\1)", f) for f in stack.split(";")]
    if len(frames) == 1 and frames[0].startswith("Hub.run "):
        loop += int(count)   # the event loop itself: mostly waiting in epoll_wait
        continue
    total += int(count)
    own[frames[-1]] += int(count)
    for f in set(frames):
        under[f] += int(count)
rows = int(sys.argv[2])
print(f"Samples in Python code: {total}; left out: {loop} in the event loop's own frame "
      "(gevent's Hub.run, mostly waiting in epoll_wait while the server is not busy).\n")
print("| share of samples | innermost Python function (with the C it calls) |\n|---|---|")
for f, n in own.most_common(rows):
    print(f"| {100 * n / total:.1f}% | `{f}` |")
print("\n| share of samples | on the stack (inclusive) |\n|---|---|")
for f, n in under.most_common(rows):
    print(f"| {100 * n / total:.1f}% | `{f}` |")
PY
}

# syscall_counts SECONDS: the app's send/recv/epoll_wait system calls over SECONDS
# (perf's syscall tracepoints), one "name count" line each.
syscall_counts() {
  perf stat -e syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait \
    -p "$APP" -x, -o "$DATA/sys.txt" -- sleep "$1" >/dev/null 2>&1 || true
  awk -F, '/syscalls:/ {sub("syscalls:sys_enter_", "", $3); print $3, $1}' "$DATA/sys.txt"
}

"""Cross-node broadcast over Redis: roomcast vs Node socket.io vs python-socketio.

For each stack, two server processes share one Redis: node A broadcasts, the clients
(the real socket.io-client, in one node process) are all on node B, so every message
crosses Redis. Two phases per stack:

* latency: ``--latency-messages`` events at ``--rate``/s; per-delivery latency
  (client receive time minus the send time carried in the event), p50/p90/p99/max;
* throughput: ``--burst`` events sent flat out; deliveries per second from the first
  send to the last delivery, and the messages per second that rate means.

Stacks: roomcast with RedisAdapter (compiled core when built), Node socket.io 4.8 with
@socket.io/redis-adapter 8.3, python-socketio 5 with RedisManager (gevent, monkey
patched, as it requires); ``roomcast-streams`` and ``node-streams``: roomcast's
RedisStreamsAdapter and Node's @socket.io/redis-streams-adapter 0.3. Run from the repository root, with tests/js/node_modules
installed (scripts/test.sh does it) and a Redis:

    python benchmarks/bench_redis.py [--redis redis://127.0.0.1:6379] [--clients 100]
        [--rate 200] [--latency-messages 1000] [--burst 10000] [--stacks roomcast,node,python-socketio]

It prints a table and, with ``--json FILE``, writes the figures. Every run uses fresh
channel prefixes and deletes nothing but them. Also runs as a python-socketio server
node (``--serve-psio CONFIG``), the same control protocol as tests/redis/*_node.*.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = ROOT / "tests" / "redis"
JS_MODULES = ROOT / "tests" / "js" / "node_modules"

# The clients: `n` socket.io-client sockets on one URL. For each stdin line
# {"expect": count, "idle": ms} it resets, waits for count events per socket (or
# `idle` ms without any), and prints the latency figures.
CLIENTS_JS = r"""
const { io } = require("socket.io-client");
const readline = require("readline");
const [url, n] = [process.argv[process.argv.length - 2], Number(process.argv[process.argv.length - 1])];
let lat = [], received = 0, expected = 0, last = 0, firstSent = null, waiting = null, idleTimer = null;
const sockets = [];
let connected = 0;
for (let i = 0; i < n; i++) {
  const s = io(url, { transports: ["websocket"], reconnection: false });
  s.on("connect", () => { if (++connected === n) console.log(JSON.stringify({ ready: true })); });
  s.on("b", (seq, t) => {
    const now = performance.timeOrigin + performance.now();
    if (seq === 0 && (firstSent === null || t < firstSent)) firstSent = t;
    lat.push(now - t);
    received++;
    last = now;
    if (waiting) { clearTimeout(idleTimer); idleTimer = setTimeout(report, waiting.idle); }
    if (waiting && received >= expected) report();
  });
  sockets.push(s);
}
function pct(sorted, p) { return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : null; }
function report() {
  if (!waiting) return;
  clearTimeout(idleTimer);
  waiting = null;
  const sorted = Float64Array.from(lat).sort();
  console.log(JSON.stringify({
    received, expected, p50: pct(sorted, 0.5), p90: pct(sorted, 0.9), p99: pct(sorted, 0.99),
    max: sorted.length ? sorted[sorted.length - 1] : null, firstSent, last,
  }));
}
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const cmd = JSON.parse(line);
  if (cmd.quit) { sockets.forEach((s) => s.disconnect()); process.exit(0); }
  lat = []; received = 0; firstSent = null; last = 0;
  expected = cmd.expect * n;
  waiting = cmd;
  idleTimer = setTimeout(report, cmd.idle);
});
"""


class Proc:
    """A child speaking JSON lines: `call()` for control commands, `line()` for the rest."""

    def __init__(self, argv: list[str], env: dict | None = None) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env, cwd=str(ROOT))
        self.lines: queue.Queue = queue.Queue()
        self.answers: dict[int, queue.Queue] = {}
        self.stderr: list[bytes] = []
        self.ids = 0
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()

    def _read(self) -> None:
        for raw in self.proc.stdout:
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            if isinstance(msg, dict) and "id" in msg and msg["id"] in self.answers:
                self.answers[msg["id"]].put(msg)
            else:
                self.lines.put(msg)

    def line(self, timeout: float = 60.0) -> dict:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError("no output; stderr:\n" + b"".join(self.stderr).decode(errors="replace")) from None

    def send(self, obj: dict) -> None:
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())
        self.proc.stdin.flush()

    def call(self, op: str, timeout: float = 120.0, **kwargs) -> object:
        self.ids += 1
        box: queue.Queue = queue.Queue()
        self.answers[self.ids] = box
        self.send({"id": self.ids, "op": op, **kwargs})
        msg = box.get(timeout=timeout)
        if "error" in msg:
            raise RuntimeError(msg["error"])
        return msg["result"]

    def stop(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_server(stack: str, redis_url: str, key: str) -> tuple[Proc, int]:
    config = {"port": 0, "redis": redis_url, "key": key, "requestsTimeout": 5.0}
    if stack.endswith("-streams"):   # the Redis Streams adapters (roomcast's, Node's 0.3)
        stack, config["streams"] = stack[:-len("-streams")], True
    env = dict(os.environ)
    if stack == "roomcast":
        try:   # the roomcast this interpreter has (installed, compiled core included), else src/
            import roomcast
            path = str(Path(roomcast.__file__).resolve().parent.parent)
        except ImportError:
            path = str(ROOT / "src")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [path, env.get("PYTHONPATH")]))
        argv = [sys.executable, str(NODE_DIR / "roomcast_node.py"), json.dumps(config)]
    elif stack == "node":
        config["requestsTimeout"] = 5.0
        argv = ["node", str(NODE_DIR / "node_node.js"), json.dumps(config)]
    else:
        argv = [sys.executable, str(Path(__file__).resolve()), "--serve-psio", json.dumps(config)]
    proc = Proc(argv, env)
    ready = proc.line(timeout=30)
    return proc, ready["ready"]


def run_stack(stack: str, args: argparse.Namespace) -> dict:
    key = f"bench-{stack}-{uuid.uuid4().hex[:8]}"
    a, _ = start_server(stack, args.redis, key)
    b, port_b = start_server(stack, args.redis, key)
    env = dict(os.environ, NODE_PATH=str(JS_MODULES))
    clients = Proc(["node", "-e", CLIENTS_JS, f"http://127.0.0.1:{port_b}", str(args.clients)], env)
    try:
        clients.line(timeout=60)   # all connected
        deadline = time.time() + 30
        while b.call("localCount") < args.clients:
            if time.time() > deadline:
                raise RuntimeError("clients did not all reach node B")
            time.sleep(0.05)
        time.sleep(0.5)   # subscriptions settled

        clients.send({"expect": args.latency_messages, "idle": 3000})
        a.call("burst", count=args.latency_messages, rate=args.rate)
        latency = clients.line(timeout=120)

        time.sleep(0.5)
        clients.send({"expect": args.burst, "idle": 5000})
        send_time = a.call("burst", count=args.burst, rate=0)
        burst = clients.line(timeout=300)
        elapsed = (burst["last"] - burst["firstSent"]) / 1000 if burst["firstSent"] else None
        return {
            "stack": stack,
            "clients": args.clients,
            "latency_ms": {k: latency[k] for k in ("p50", "p90", "p99", "max")},
            "latency_delivered": f"{latency['received']}/{latency['expected']}",
            "burst_delivered": f"{burst['received']}/{burst['expected']}",
            "burst_send_s": send_time,
            "burst_elapsed_s": elapsed,
            "deliveries_per_s": burst["received"] / elapsed if elapsed else None,
            "messages_per_s": burst["received"] / args.clients / elapsed if elapsed else None,
            "burst_p50_ms": burst["p50"],
            "burst_p99_ms": burst["p99"],
        }
    finally:
        clients.send({"quit": True})
        clients.stop()
        a.stop()
        b.stop()


def serve_psio(config: dict) -> None:
    """A python-socketio server node with RedisManager (needs a monkey-patched socket)."""
    from gevent import monkey

    monkey.patch_all()
    import gevent
    import socketio
    from gevent.pywsgi import WSGIServer
    from geventwebsocket.handler import WebSocketHandler

    mgr = socketio.RedisManager(config["redis"], channel=config["key"])
    sio = socketio.Server(async_mode="gevent", client_manager=mgr, cors_allowed_origins="*")
    server = WSGIServer(("127.0.0.1", 0), socketio.WSGIApp(sio), handler_class=WebSocketHandler, log=None)
    server.start()

    def write(obj: dict) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    def handle(cmd: dict) -> None:
        try:
            if cmd["op"] == "localCount":
                result = len(sio.manager.rooms.get("/", {}).get(None, {}))
            elif cmd["op"] == "burst":
                start = time.time()
                for seq in range(cmd["count"]):
                    if cmd.get("rate"):
                        delay = start + seq / cmd["rate"] - time.time()
                        if delay > 0:
                            gevent.sleep(delay)
                    elif seq % 256 == 0:
                        gevent.sleep(0)
                    sio.emit("b", (seq, time.time() * 1000))
                result = time.time() - start
            else:
                raise ValueError(cmd["op"])
            write({"id": cmd["id"], "result": result})
        except Exception as exc:
            write({"id": cmd["id"], "error": repr(exc)})

    write({"ready": server.server_port})
    from gevent.fileobject import FileObject

    for line in FileObject(sys.stdin.buffer.fileno(), "rb", close=False):   # sys.stdin would block the hub
        if line.strip():
            gevent.spawn(handle, json.loads(line))
    server.stop(timeout=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rate", type=float, default=200.0, help="events/s in the latency phase")
    parser.add_argument("--latency-messages", type=int, default=1000)
    parser.add_argument("--burst", type=int, default=10000)
    parser.add_argument("--stacks", default="roomcast,node,python-socketio")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--serve-psio", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_psio:
        serve_psio(json.loads(args.serve_psio))
        return

    results = []
    for stack in args.stacks.split(","):
        print(f"[{stack}] running...", file=sys.stderr, flush=True)
        results.append(run_stack(stack, args))
    header = (f"{'stack':<16} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} "
              f"{'msgs/s':>9} {'deliveries/s':>13} {'burst p99 ms':>13} {'delivered':>14}")
    print(f"cross-node broadcast over Redis: 2 nodes, {args.clients} clients on the receiving node, "
          f"latency at {args.rate:g}/s x {args.latency_messages}, burst of {args.burst}")
    print(header)
    for r in results:
        lat = r["latency_ms"]
        fmt = lambda v, spec: format(v, spec) if v is not None else "-"  # noqa: E731
        print(f"{r['stack']:<16} {fmt(lat['p50'], '8.2f')} {fmt(lat['p90'], '8.2f')} {fmt(lat['p99'], '8.2f')} "
              f"{fmt(lat['max'], '8.2f')} {fmt(r['messages_per_s'], '9.0f')} {fmt(r['deliveries_per_s'], '13.0f')} "
              f"{fmt(r['burst_p99_ms'], '13.1f')} {r['burst_delivered']:>14}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""What connection state recovery costs, roomcast beside Node socket.io 4.8:

* memory: RSS held by the packets kept for recovery, per ``--broadcasts`` (10,000)
  broadcasts of ``["news", {"id": n, "text": <40 chars>}]`` to a room, one server,
  no client (so only the stored packets grow);
* restore: time for a client (the real socket.io-client) whose TCP connection was
  destroyed to get back ``--missed`` (1,000) packets broadcast while it was away, from
  the moment its new connection opens to the last missed packet (median of ``--rounds``);
* throughput: broadcasts per second to ``--clients`` (100) clients of one server, flat
  out (``--burst`` events), recovery off and on.

The cross-node throughput of the Redis Streams adapter is benchmarks/bench_redis.py
with ``--stacks roomcast-streams,node-streams``. Run from the repository root with
tests/js/node_modules installed (scripts/test.sh does it):

    python benchmarks/bench_recovery.py [--stacks roomcast,node] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_redis import CLIENTS_JS, JS_MODULES, NODE_DIR, Proc  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

MEMORY_PY = r"""
import gc, json, sys, ctypes
import roomcast
def rss():
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
n, recovery = int(sys.argv[1]), sys.argv[2] == "on"
io = roomcast.Server(connection_state_recovery=True if recovery else None)
text = "x" * 40
for i in range(200):   # warm up (allocator, interned names)
    io.to("room").emit("news", {"id": i, "text": text})
before = rss()
for i in range(n):
    io.to("room").emit("news", {"id": i, "text": text})
after = rss()
print(json.dumps({"before": before, "after": after, "stored": getattr(io.sockets.adapter, "stored_packets", 0),
                  "compiled": roomcast.USING_EXTENSIONS}))
"""

MEMORY_JS = r"""
const { Server } = require("socket.io");
const [n, recovery] = [Number(process.argv[process.argv.length - 2]), process.argv[process.argv.length - 1] === "on"];
const io = new Server(recovery ? { connectionStateRecovery: {} } : {});
const text = "x".repeat(40);
const rss = () => { global.gc(); return process.memoryUsage().rss; };
for (let i = 0; i < 200; i++) io.to("room").emit("news", { id: i, text });
const before = rss();
for (let i = 0; i < n; i++) io.to("room").emit("news", { id: i, text });
const after = rss();
console.log(JSON.stringify({ before, after, stored: recovery ? io.of("/").adapter.packets.length : 0 }));
process.exit(0);
"""

# A client that, each round, receives one packet, destroys its TCP connection (no close
# packet: the server sees a transport close), lets the server broadcast `missed`
# packets, and times its recovery: new connection open -> last missed packet.
RESTORE_JS = r"""
const { io } = require("socket.io-client");
const [url, missed, rounds] = process.argv.slice(-3).map((v, i) => i ? Number(v) : v);
const socket = io(url, { transports: ["websocket"], reconnectionDelay: 100, reconnectionDelayMax: 100,
                         randomizationFactor: 0 });
let got = 0, opened = 0, times = [], recovered = 0;
socket.io.on("open", () => { opened = performance.now(); });
socket.on("news", () => {
  got++;
  if (got === missed + 1) {
    times.push(performance.now() - opened);
    if (socket.recovered) recovered++;
  }
});
(async () => {
  await new Promise((r) => socket.once("connect", r));
  for (let round = 0; round < rounds; round++) {
    got = 0;
    socket.emit("ping-news");
    while (got < 1) await new Promise((r) => setTimeout(r, 5));
    socket.emit("cut-me", missed);          // the server broadcasts once it saw us go
    await new Promise((r) => setTimeout(r, 20));
    socket.io.engine.transport.ws._socket.destroy();
    while (got < missed + 1) await new Promise((r) => setTimeout(r, 5));
  }
  console.log(JSON.stringify({ times, recovered }));
  process.exit(0);
})();
"""

RESTORE_SERVER_PY = r"""
import json, sys
import gevent
from gevent.pywsgi import WSGIServer
import roomcast
from roomcast.wsgi import WebSocketHandler
io = roomcast.Server(connection_state_recovery=True)
@io.on("connection")
def on_connection(socket):
    socket.join("room")
    socket.on("ping-news", lambda: io.to("room").emit("news", -1))
    def cut_me(n):
        def when_gone():
            while socket.connected:
                gevent.sleep(0.002)
            for i in range(n):
                io.to("room").emit("news", {"id": i, "text": "x" * 40})
        gevent.spawn(when_gone)
    socket.on("cut-me", cut_me)
server = WSGIServer(("127.0.0.1", 0), roomcast.WSGIApp(io), handler_class=WebSocketHandler, log=None)
server.start()
print(json.dumps({"ready": server.server_port}), flush=True)
gevent.wait()
"""

RESTORE_SERVER_JS = r"""
const { Server } = require("socket.io");
const http = require("http").createServer();
const io = new Server(http, { connectionStateRecovery: {} });
io.on("connection", (socket) => {
  socket.join("room");
  socket.on("ping-news", () => io.to("room").emit("news", -1));
  socket.on("cut-me", (n) => {
    const check = () => {
      if (socket.connected) return setTimeout(check, 2);
      for (let i = 0; i < n; i++) io.to("room").emit("news", { id: i, text: "x".repeat(40) });
    };
    check();
  });
});
http.listen(0, "127.0.0.1", () => console.log(JSON.stringify({ ready: http.address().port })));
"""


def _env() -> dict:
    return dict(os.environ, NODE_PATH=str(JS_MODULES))


def memory(stack: str, n: int) -> dict:
    out = {}
    for mode in ("off", "on"):
        if stack == "roomcast":
            argv = [sys.executable, "-c", MEMORY_PY, str(n), mode]
        else:
            argv = ["node", "--expose-gc", "-e", MEMORY_JS, str(n), mode]
        res = json.loads(subprocess.run(argv, capture_output=True, check=True, env=_env(),
                                        cwd=str(ROOT)).stdout.splitlines()[-1])
        out[mode] = res
    held = (out["on"]["after"] - out["on"]["before"]) - (out["off"]["after"] - out["off"]["before"])
    return {"stored": out["on"]["stored"], "rss_growth_on": out["on"]["after"] - out["on"]["before"],
            "rss_growth_off": out["off"]["after"] - out["off"]["before"], "held_bytes": held}


def restore(stack: str, missed: int, rounds: int) -> dict:
    argv = ([sys.executable, "-c", RESTORE_SERVER_PY] if stack == "roomcast"
            else ["node", "-e", RESTORE_SERVER_JS])
    server = Proc(argv, _env())
    try:
        port = server.line(timeout=30)["ready"]
        res = subprocess.run(["node", "-e", RESTORE_JS, f"http://127.0.0.1:{port}", str(missed), str(rounds)],
                             capture_output=True, env=_env(), cwd=str(ROOT), timeout=300)
        if res.returncode:
            raise RuntimeError(res.stderr.decode(errors="replace"))
        data = json.loads(res.stdout.splitlines()[-1])
    finally:
        server.proc.kill()
        server.proc.wait()
    return {"median_ms": statistics.median(data["times"]), "min_ms": min(data["times"]),
            "rounds": len(data["times"]), "recovered": data["recovered"]}


def throughput(stack: str, recovery: bool, clients: int, burst: int) -> dict:
    config = {"port": 0, "memory": True, "key": "bench", "redis": "", "recovery": 120 if recovery else 0}
    if stack == "roomcast":
        argv = [sys.executable, str(NODE_DIR / "roomcast_node.py"), json.dumps(config)]
    else:
        argv = ["node", str(NODE_DIR / "node_node.js"), json.dumps(config)]
    server = Proc(argv, _env())
    port = server.line(timeout=30)["ready"]
    client_proc = Proc(["node", "-e", CLIENTS_JS, f"http://127.0.0.1:{port}", str(clients)], _env())
    try:
        client_proc.line(timeout=60)
        time.sleep(0.5)
        client_proc.send({"expect": burst, "idle": 5000})
        server.call("burst", count=burst, rate=0)
        res = client_proc.line(timeout=300)
        elapsed = (res["last"] - res["firstSent"]) / 1000
        return {"messages_per_s": res["received"] / clients / elapsed,
                "deliveries_per_s": res["received"] / elapsed,
                "delivered": f"{res['received']}/{res['expected']}"}
    finally:
        client_proc.send({"quit": True})
        client_proc.stop()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stacks", default="roomcast,node")
    parser.add_argument("--broadcasts", type=int, default=10_000)
    parser.add_argument("--missed", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--burst", type=int, default=5000)
    parser.add_argument("--json")
    args = parser.parse_args()
    results = {}
    for stack in args.stacks.split(","):
        print(f"[{stack}] memory...", file=sys.stderr, flush=True)
        r = {"memory": memory(stack, args.broadcasts)}
        print(f"[{stack}] restore...", file=sys.stderr, flush=True)
        r["restore"] = restore(stack, args.missed, args.rounds)
        print(f"[{stack}] throughput...", file=sys.stderr, flush=True)
        r["throughput_off"] = throughput(stack, False, args.clients, args.burst)
        r["throughput_on"] = throughput(stack, True, args.clients, args.burst)
        results[stack] = r
    print(f"connection state recovery: {args.broadcasts} stored broadcasts; restore of {args.missed} "
          f"missed packets (median of {args.rounds}); {args.burst} broadcasts to {args.clients} clients")
    print(f"{'stack':<10} {'held KiB/10k':>13} {'restore ms':>11} {'msgs/s off':>11} {'msgs/s on':>10} {'on/off':>7}")
    for stack, r in results.items():
        held = r["memory"]["held_bytes"] / 1024 * 10_000 / args.broadcasts
        off, on = r["throughput_off"]["messages_per_s"], r["throughput_on"]["messages_per_s"]
        print(f"{stack:<10} {held:13.0f} {r['restore']['median_ms']:11.1f} {off:11.0f} {on:10.0f} {on / off:7.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

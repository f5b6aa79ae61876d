"""What running several worker processes costs (issue 13), on a machine too small to show
the scaling: every server process is pinned to ONE core (taskset -c 0) and the C load
generator to the other, so the figures are server CPU per unit of work, not throughput.

    python benchmarks/bench_workers.py [--clients 1000] [--reps 3] [--out FILE]

Configurations (the benchmark app, benchmarks/servers/roomcast_app.py, under
`roomcast serve --workers N`):
  1 worker                      the baseline
  2 workers, inter-process      broadcasts cross the Unix-socket mesh (roomcast.adapters.ipc)
  2 workers, Redis adapter      the same through the local Redis (127.0.0.1:6379)
  1 worker, metrics on          roomcast.metrics enabled (its cost on the broadcast phase)
Phases: broadcast to everyone (server CPU per delivery) and the chat relay (server CPU
per inbound event, each relayed to its room of 10 and acked). Server CPU is the sum over
the supervisor and every worker (/proc). Then the polling hand-off: server CPU per
long-polling POST on a new connection, 1 worker (never handed off) against 2 workers
(the kernel gives about half of them to the worker that does not own the session).
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run as harness  # noqa: E402  (benchmarks/run.py: loadgen, /proc readers)

CONFIGS = {
    "1w": ("1 worker", 1, {}),
    "2w-ipc": ("2 workers, inter-process adapter", 2, {}),
    "2w-redis": ("2 workers, Redis adapter", 2, {"ROOMCAST_BENCH_REDIS": "redis://127.0.0.1:6379"}),
    "1w-metrics": ("1 worker, metrics on", 1, {"ROOMCAST_BENCH_METRICS": "1"}),
}


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its children (the workers)."""
    total = harness.proc_cpu(pid)
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        children = []
    for child in children:
        try:
            total += harness.proc_cpu(int(child))
        except FileNotFoundError:
            pass
    return total


def start(workers: int, env_extra: dict, log) -> tuple[subprocess.Popen, int]:
    port = harness.free_port()
    env = dict(os.environ, ROOMCAST_REQUIRE_EXTENSIONS="1", **env_extra)
    env["PYTHONPATH"] = str(HERE / "servers")   # roomcast itself: the installed package
    argv = harness.taskset(0, [sys.executable, "-m", "roomcast.cli", "serve", "roomcast_app:io",
                               "--workers", str(workers), "--port", str(port)])
    p = subprocess.Popen(argv, env=env, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 20
    import socket
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.1)
    time.sleep(1.5)   # the workers find each other (bus) and subscribe (Redis)
    return p, port


def measure(name: str, n: int, lg_binary: Path, log) -> dict:
    label, workers, env_extra = CONFIGS[name]
    p, port = start(workers, env_extra, log)
    lg = harness.Loadgen(lg_binary, 1, log)
    out = {"config": name}
    try:
        res = lg.cmd(f"connect {port} {n} 64")
        assert res.get("live", res["conns"]) == n, res
        lg.cmd("join")
        ph = 1
        for _ in range(2):   # warm-up
            lg.cmd(f"burst {ph} all {max(3, 200_000 // n)}")
            ph += 1
        c0 = tree_cpu(p.pid)
        res = lg.cmd(f"burst {ph} all {max(5, 600_000 // n)}")
        c1 = tree_cpu(p.pid)
        bad = {k: res[k] for k in ("missing", "duplicate", "stray") if res.get(k)}
        assert not bad, (name, bad)
        out["cpu_per_delivery_us"] = (c1 - c0) / res["deliveries"] * 1e6
        out["deliveries"] = res["deliveries"]
        ph += 1
        lg.cmd(f"chat {ph} 5")   # warm-up
        ph += 1
        c0 = tree_cpu(p.pid)
        res = lg.cmd(f"chat {ph} {max(5, 40_000 // n)}")
        c1 = tree_cpu(p.pid)
        bad = {k: res[k] for k in ("missing", "duplicate", "stray", "acks_missing") if res.get(k)}
        assert not bad, (name, bad)
        out["cpu_per_event_us"] = (c1 - c0) / res["events"] * 1e6
        out["events"] = res["events"]
    finally:
        lg.close()
        harness.stop(p)
    return out


HANDOFF_CLIENT = r"""
import json, socket, sys, time
port, count = int(sys.argv[1]), int(sys.argv[2])

def request(raw):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + int(
                data.split(b"Content-Length: ")[1].split(b"\r\n")[0]):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data

def get(path):
    return request(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())

def post(path, body):
    return request((f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                    f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode())

base = "/socket.io/?EIO=4&transport=polling"
head = get(base)
sid = json.loads(head.split(b"\r\n\r\n", 1)[1][1:])["sid"]
path = f"{base}&sid={sid}"
post(path, "40")
get(path)
print("ready", flush=True)
sys.stdin.readline()
t0 = time.monotonic()
ok = 0
for i in range(count):
    if post(path, "6").endswith(b"ok"):     # a noop packet: the request alone is the work
        ok += 1
print(json.dumps({"ok": ok, "wall": time.monotonic() - t0}), flush=True)
"""


def measure_handoff(workers: int, count: int, log) -> dict:
    p, port = start(workers, {}, log)
    try:
        client = subprocess.Popen(harness.taskset(1, [sys.executable, "-c", HANDOFF_CLIENT,
                                                      str(port), str(count)]),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert client.stdout.readline().strip() == "ready"
        c0 = tree_cpu(p.pid)
        client.stdin.write("go\n")
        client.stdin.flush()
        res = json.loads(client.stdout.readline())
        c1 = tree_cpu(p.pid)
        client.wait(10)
        assert res["ok"] == count, res
        return {"workers": workers, "cpu_per_request_us": (c1 - c0) / count * 1e6,
                "requests_per_s": count / res["wall"]}
    finally:
        harness.stop(p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--handoff-requests", type=int, default=3000, help="0: skip the hand-off phase")
    ap.add_argument("--out", default=str(HERE / "results" / "workers.json"))
    args = ap.parse_args()
    lg_binary = harness.build_loadgen()
    harness.RAW.mkdir(parents=True, exist_ok=True)
    runs: list[dict] = []
    with open(harness.RAW / "bench_workers.log", "w") as log:
        for rep in range(args.reps):
            for name in args.configs.split(","):
                r = measure(name, args.clients, lg_binary, log)
                r["rep"] = rep
                runs.append(r)
                print(json.dumps(r), flush=True)
            for workers in ((1, 2) if args.handoff_requests else ()):
                h = measure_handoff(workers, args.handoff_requests, log)
                h["rep"] = rep
                runs.append(h)
                print(json.dumps(h), flush=True)
    summary = {}
    for name in args.configs.split(","):
        mine = [r for r in runs if r.get("config") == name]
        summary[name] = {k: statistics.median(r[k] for r in mine)
                         for k in ("cpu_per_delivery_us", "cpu_per_event_us")}
    for workers in ((1, 2) if args.handoff_requests else ()):
        mine = [r for r in runs if r.get("workers") == workers]
        summary[f"polling-{workers}w"] = {
            "cpu_per_request_us": statistics.median(r["cpu_per_request_us"] for r in mine)}
    Path(args.out).write_text(json.dumps({"clients": args.clients, "reps": args.reps,
                                          "summary": summary, "runs": runs}, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()

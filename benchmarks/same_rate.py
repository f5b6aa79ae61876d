"""Latency at the same offered load: roomcast now, roomcast at an earlier commit, and Node.

run.py measures latency at half of each server's *own* saturation rate, so a server that
got faster is measured at a higher load than before. This script offers every server the
same fixed rates instead (5,000 WebSocket clients by default, server pinned to one core,
the load generator of run.py on the other), and reports the p50/p99 latency and the
server's CPU share at each rate:

- ``chat R``: R chat messages a second, round robin (each relayed to 9 room mates, acked);
  latency = send -> ack.
- ``ack R``: R acked echo events a second, round robin; latency = send -> ack.
- ``all R``: R broadcasts to everyone a second; latency = trigger -> receipt.

usage: python benchmarks/same_rate.py [--before REV] [--servers roomcast,before,node]
       [--clients 5000] [--secs 4] [--reps 1] [--out benchmarks/results/same-rate.md]

``--before REV`` checks REV out into a temporary git worktree and builds its compiled
core in place (needs Cython in this Python: ``pip install cython``); the worktree is
removed at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import run  # benchmarks/run.py: the load generator, server start/stop, /proc readings

RATES = {   # fixed offered loads at 5,000 clients: around half of the saturation rates
    "chat": [4000, 8000, 16000],
    "ack": [10000, 20000, 40000],
    "all": [10, 20, 40],
}
LABEL = {"chat": "chat relay, msgs/s", "ack": "echo with ack, events/s", "all": "broadcast to everyone, broadcasts/s"}


def build_checkout(rev: str, parent: Path) -> Path:
    path = parent / f"roomcast-{rev}"
    subprocess.run(["git", "-C", str(run.ROOT), "worktree", "add", "-q", "--detach", str(path), rev], check=True)
    env = dict(os.environ, ROOMCAST_REQUIRE_EXTENSIONS="1")
    subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace", "-q"], cwd=path, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return path


def session(name: str, checkout: Path | None, n: int, secs: float, lg_binary: Path, log) -> dict:
    port = run.free_port()
    srv = run.start_server(name, port, 0, log, root=checkout or run.ROOT)
    lg = run.Loadgen(lg_binary, 1, log)
    out: dict = {}
    errors: list = []
    try:
        time.sleep(0.3)
        run.check(lg.cmd(f"connect {port} {n} 64"), "connect", errors)
        run.check(lg.cmd("join"), "join", errors)
        ph = 1
        run.check(lg.cmd(f"burst {ph} all 20"), "warm-up", errors)
        for scen, rates in RATES.items():
            for rate in rates:
                ph += 1
                line = {"chat": f"chatpaced {ph} {rate} {secs}", "ack": f"ackspaced {ph} {rate} {secs}",
                        "all": f"paced {ph} all {rate} {secs} 1"}[scen]
                c0 = run.proc_cpu(srv.pid)
                res = lg.cmd(line, timeout=60 + secs)
                c1 = run.proc_cpu(srv.pid)
                run.check(res, f"{scen} {rate}", errors)
                out[f"{scen} {rate}"] = {"p50_ms": res["lat_p50_ms"], "p99_ms": res["lat_p99_ms"],
                                         "cpu": (c1 - c0) / res["wall"]}
        lg.cmd("close")
    finally:
        lg.close()
        run.stop(srv)
    out["errors"] = errors
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", help="an earlier commit of roomcast to measure beside this checkout")
    ap.add_argument("--servers", default="roomcast,before,node")
    ap.add_argument("--clients", type=int, default=5000)
    ap.add_argument("--secs", type=float, default=4.0)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--out", type=Path, default=run.RESULTS / "same-rate.md")
    args = ap.parse_args(argv)
    servers = [s for s in args.servers.split(",") if s != "before" or args.before]
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]   # the servers inherit it, as in run.py
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    lg_binary = run.build_loadgen()
    if "node" in servers and not run.ensure_node():
        servers.remove("node")
    tmp = Path(tempfile.mkdtemp(prefix="same-rate-"))
    checkouts: dict[str, Path | None] = {s: None for s in servers}
    labels = {"roomcast": f"roomcast {run.machine()['roomcast_commit']}", "node": run.SERVERS["node"][0]}
    try:
        if "before" in servers:
            checkouts["before"] = build_checkout(args.before, tmp)
            labels["before"] = f"roomcast {args.before}"
        results: dict[str, list[dict]] = {s: [] for s in servers}
        with open(tmp / "log.txt", "w") as log:
            for rep in range(args.reps):
                for s in servers:
                    name = "roomcast" if s == "before" else s
                    print(f"rep {rep + 1}: {labels[s]}", flush=True)
                    results[s].append(session(name, checkouts[s], args.clients, args.secs, lg_binary, log))
        lines = [f"# Latency at the same offered load ({args.clients:,} clients, {args.reps} repetition(s))", "",
                 run.machine_line({"machine": run.machine(), "config": {"server_core": 0, "loadgen_core": 1,
                                                                        "reps": args.reps}}), "",
                 "Cells: p50 / p99 ms, server CPU share of its core (median over repetitions). "
                 "Command: `python benchmarks/same_rate.py" + (f" --before {args.before}" if args.before else "")
                 + "`.", "",
                 "| load | " + " | ".join(labels[s] for s in servers) + " |", "|---|" + "---|" * len(servers)]
        for scen, rates in RATES.items():
            for rate in rates:
                key = f"{scen} {rate}"
                cells = []
                for s in servers:
                    vals = [r[key] for r in results[s] if key in r]
                    if not vals:
                        cells.append("–")
                        continue
                    p50 = statistics.median(v["p50_ms"] for v in vals)
                    p99 = statistics.median(v["p99_ms"] for v in vals)
                    cpu = statistics.median(v["cpu"] for v in vals)
                    cells.append(f"{p50:.2f} / {p99:.2f} ms, {cpu * 100:.0f}%")
                lines.append(f"| {LABEL[scen]}: {rate:,} | " + " | ".join(cells) + " |")
        errs = [f"{labels[s]}: {e}" for s in servers for r in results[s] for e in r["errors"]]
        lines += ["", "Counting problems: " + ("; ".join(errs) if errs else "none (no loss, duplicate or stray)."), ""]
        args.out.write_text("\n".join(lines))
        (args.out.with_suffix(".json")).write_text(json.dumps(results, indent=1))
        print("\n".join(lines))
    finally:
        if checkouts.get("before") is not None:
            subprocess.run(["git", "-C", str(run.ROOT), "worktree", "remove", "--force", str(checkouts["before"])])
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

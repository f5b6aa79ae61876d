"""Slow consumers: N normal clients and S clients that never read but keep sending a
pong every few seconds (so no ping timeout ever closes them), while the server
broadcasts 1 KB to everyone R times a second for D seconds. Per server: the normal
clients' latency and losses, what happened to the stuck clients, and the server's RSS
over time.

    python benchmarks/slow_consumer.py [--servers roomcast,node,psio] [--seconds 60]
        [--normal 100] [--stuck 20] [--rate 200] [--size 1000]

Writes results/slow-consumer.json and results/slow-consumer.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import gevent

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from clients import Client, open_clients  # noqa: E402
from run import free_port, proc_rss, stop  # noqa: E402
from server_runs import run_sessions, start_server, write_results  # noqa: E402

PONG_EVERY = 5.0       # seconds between a stuck client's blind pongs
STUCK_RCVBUF = 4096    # a stuck client's receive window: the server's writes stall at once


LATENCY_EVERY = 10   # one message in 10 is timed (parsing every one would load the clients)


def reader(client: Client, got: dict, latencies: list, closed: list) -> None:
    """Counts the broadcasts (event "b") and times one in LATENCY_EVERY by its "t"."""
    count = 0
    try:
        while True:
            for payload in client.recv_payloads():
                if payload.startswith(b'42["b"'):
                    count += 1
                    if count % LATENCY_EVERY == 0:
                        i = payload.index(b'"t":') + 4
                        t = float(payload[i:payload.index(b",", i)])
                        latencies.append(time.time() * 1000 - t)
                    got[1] = count
    except (ConnectionError, OSError):
        closed.append(time.monotonic())


def stuck_client(port: int, closed_at: list, started: float) -> None:
    """Connects, then only writes: a pong every PONG_EVERY seconds, never a read."""
    c = Client(port, rcvbuf=STUCK_RCVBUF)
    c.connect()
    c.sock.settimeout(None)
    try:
        while True:
            gevent.sleep(PONG_EVERY)
            c.send("3")
    except OSError:   # the server closed it (a reset or a closed pipe)
        closed_at.append(time.monotonic() - started)
    finally:
        c.sock.close()


def session(name: str, args, log) -> dict:
    port = free_port()
    proc = start_server(name, port, log)
    try:
        gevent.sleep(1.0)
        normal = open_clients(port, args.normal)
        got = [dict() for _ in normal]
        latencies: list[float] = []
        normal_closed: list[float] = []
        readers = [gevent.spawn(reader, c, g, latencies, normal_closed) for c, g in zip(normal, got)]
        stuck_closed: list[float] = []
        started = time.monotonic()
        stuck = [gevent.spawn(stuck_client, port, stuck_closed, started) for _ in range(args.stuck)]
        driver = Client(port)   # sends the bursts; reads (and drops) the broadcasts it gets too
        driver.connect()
        drain = gevent.spawn(reader, driver, {}, [], [])
        rss: list[tuple[float, float]] = [(0.0, proc_rss(proc.pid) / 2 ** 20)]

        def sample() -> None:
            while True:
                gevent.sleep(1.0)
                rss.append((time.monotonic() - started, proc_rss(proc.pid) / 2 ** 20))

        sampler = gevent.spawn(sample)
        sent = 0
        interval = 1.0 / args.rate
        while time.monotonic() - started < args.seconds:
            due = started + sent * interval
            now = time.monotonic()
            if due > now:
                gevent.sleep(due - now)
            driver.send('42["burst",' + json.dumps(
                {"kind": "all", "k": 1, "ph": 1, "t": time.time() * 1000, "pad": args.size}) + "]")
            sent += 1
        # the normal clients get what is still in flight
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and min(g.get(1, 0) for g in got) < sent:
            gevent.sleep(0.2)
        sampler.kill()
        gevent.killall(readers + stuck + [drain])
        for c in normal + [driver]:
            c.sock.close()
        received = [g.get(1, 0) for g in got]
        lat = sorted(latencies)
        return {
            "server": name, "sent": sent, "normal": args.normal, "stuck": args.stuck,
            "normal_received_min": min(received), "normal_lost_total": sum(sent - r for r in received),
            "normal_closed": len(normal_closed),
            "latency_ms": {"p50": lat[len(lat) // 2], "p99": lat[int(len(lat) * 0.99)], "max": lat[-1]}
            if lat else None,
            "stuck_closed": len(stuck_closed),
            "stuck_closed_at_s": sorted(round(t, 1) for t in stuck_closed),
            "rss_mib": [(round(t, 1), round(m, 1)) for t, m in rss],
        }
    finally:
        stop(proc)


def report(doc: dict) -> str:
    runs = doc["runs"]
    a = doc["args"]
    head = "| | " + " | ".join(r["server"] for r in runs) + " |\n|---|" + "---|" * len(runs)
    rows = [
        ("broadcasts sent", lambda r: f"{r['sent']}"),
        ("normal clients: fewest received", lambda r: f"{r['normal_received_min']}"),
        ("normal clients: messages lost (all)", lambda r: f"{r['normal_lost_total']}"),
        ("normal clients closed", lambda r: f"{r['normal_closed']}"),
        ("latency p50 / p99 / max (ms)", lambda r: "{p50:.1f} / {p99:.1f} / {max:.0f}".format(
            **r["latency_ms"]) if r["latency_ms"] else "-"),
        ("stuck clients closed by the server", lambda r: f"{r['stuck_closed']} of {r['stuck']}"),
        ("  first / last close (s)", lambda r: f"{r['stuck_closed_at_s'][0]} / {r['stuck_closed_at_s'][-1]}"
         if r["stuck_closed_at_s"] else "-"),
    ]
    times = sorted({int(t) for r in runs for t, _ in r["rss_mib"] if int(t) % 10 == 0})

    def rss_at(r, t):
        near = [m for s, m in r["rss_mib"] if int(s) == t]
        return f"{near[0]:.1f}" if near else "-"

    rows += [(f"RSS MiB at {t} s", lambda r, t=t: rss_at(r, t)) for t in times]
    rows.append(("RSS MiB peak", lambda r: f"{max(m for _, m in r['rss_mib']):.1f}"))
    lines = [f"# Slow consumers: {a['normal']} normal + {a['stuck']} stuck (ponging, not reading) "
             f"clients, {a['size']} B broadcasts at {a['rate']}/s for {a['seconds']} s", "", head]
    lines += [f"| {title} | " + " | ".join(get(r) for r in runs) + " |" for title, get in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--servers", default="roomcast,node,psio")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--normal", type=int, default=100)
    ap.add_argument("--stuck", type=int, default=20)
    ap.add_argument("--rate", type=int, default=200)
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()

    def one(name: str, log) -> dict:
        run = session(name, args, log)
        print(json.dumps({k: v for k, v in run.items() if k != "rss_mib"}), flush=True)
        return run

    out = Path(args.out)
    runs = run_sessions(args.servers, out, "slow-consumer", one)
    write_results(out, "slow-consumer", {"args": vars(args), "runs": runs}, report)


if __name__ == "__main__":
    main()

"""Churn: rounds of N clients that connect, join 3 rooms each, then drop their
connections with a TCP reset; the server's RSS after every round, roomcast beside Node.

    python benchmarks/churn.py [--servers roomcast,node] [--rounds 100] [--clients 1000]

Writes results/churn.json and results/churn.md (RSS per round; the growth per round
over the second half, by a least-squares line).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import gevent

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from clients import open_clients  # noqa: E402
from run import free_port, proc_rss, stop  # noqa: E402
from server_runs import run_sessions, start_server, write_results  # noqa: E402

SETTLE = 2.5   # seconds after the resets before RSS is read (roomcast trims 1-2 s after closes)


def rooms_of(i: int) -> list[str]:
    return [f"g{i % 10}", f"x{i % 4}", f"c{i // 10}"]


def slope(ys: list[float]) -> float:
    n = len(ys)
    mx, my = (n - 1) / 2, sum(ys) / n
    return sum((x - mx) * (y - my) for x, y in enumerate(ys)) / sum((x - mx) ** 2 for x in range(n))


def churn(name: str, rounds: int, n: int, log) -> dict:
    port = free_port()
    proc = start_server(name, port, log)
    try:
        gevent.sleep(SETTLE)
        rss = [proc_rss(proc.pid) / 2 ** 20]
        started = time.monotonic()
        for r in range(rounds):
            clients = open_clients(port, n, rooms_of)
            for c in clients:
                c.reset()
            gevent.sleep(SETTLE)
            rss.append(proc_rss(proc.pid) / 2 ** 20)
            print(f"{name} round {r + 1}: {rss[-1]:.1f} MiB", flush=True)
        return {"server": name, "rss_mib": rss, "seconds": time.monotonic() - started,
                "growth_mib_per_round_second_half": slope(rss[len(rss) // 2:])}
    finally:
        stop(proc)


def report(doc: dict) -> str:
    lines = [f"# Churn: {doc['rounds']} rounds x {doc['clients']} clients (3 rooms each, TCP reset)",
             "", "Server RSS in MiB after each round (round 0: before the first).", "",
             "| round | " + " | ".join(r["server"] for r in doc["runs"]) + " |",
             "|---|" + "---|" * len(doc["runs"])]
    rounds = doc["rounds"]
    shown = sorted({0, 1, 2, 5} | set(range(10, rounds + 1, 10)) | {rounds})
    for i in shown:
        if i <= rounds:
            lines.append(f"| {i} | " + " | ".join(f"{r['rss_mib'][i]:.1f}" for r in doc["runs"]) + " |")
    lines += ["", "| | " + " | ".join(r["server"] for r in doc["runs"]) + " |",
              "|---|" + "---|" * len(doc["runs"]),
              "| growth per round, second half (MiB) | " + " | ".join(
                  f"{r['growth_mib_per_round_second_half']:+.3f}" for r in doc["runs"]) + " |",
              "| peak RSS (MiB) | " + " | ".join(f"{max(r['rss_mib']):.1f}" for r in doc["runs"]) + " |",
              "| wall time (s) | " + " | ".join(f"{r['seconds']:.0f}" for r in doc["runs"]) + " |"]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--servers", default="roomcast,node")
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    out = Path(args.out)
    runs = run_sessions(args.servers, out, "churn",
                        lambda name, log: churn(name, args.rounds, args.clients, log))
    write_results(out, "churn", {"rounds": args.rounds, "clients": args.clients, "runs": runs}, report)


if __name__ == "__main__":
    main()

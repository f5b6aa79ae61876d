"""Intersection targeting vs the same selection built by hand from fetch_sockets.

    python benchmarks/bench_intersect.py [--sockets 100000] [--repeat 5]

A real roomcast.Server, its sockets connected through the Socket.IO layer (CONNECT
packets fed to the real Client) over stand-in Engine.IO connections that only count
what is pushed to them: the room work and the fan-out queueing are roomcast's own,
no network is involved. Rooms "a" and "b" each hold a random half of the sockets.

Measured, per operation (best of --repeat):
- select: the broadcast's selection, ``RoomIndex.select(["a"], intersect_rooms=["b"])``;
- ``io.to("a").intersect("b").emit(...)``: the whole broadcast, encode + fan-out;
- by hand: ``[s for s in io.in_("a").fetch_sockets() if "b" in s.rooms]`` (what Node's and
  python-socketio's users write), then ``io.to([s.id ...]).emit(...)`` to those sockets.
Prints a Markdown table; both twins (compiled core, pure twin).
"""
from __future__ import annotations

import argparse
import gc
import random
import time

import gevent

import roomcast
from roomcast import _speedups


class CountingConn:
    """A stand-in Engine.IO connection: the Client's view of it, counting pushes."""

    def __init__(self, table, n: int) -> None:
        self.id = f"conn{n}"
        self.environ = {"PATH_INFO": "/socket.io/", "REMOTE_ADDR": "127.0.0.1"}
        self.transport = "websocket"
        self.handlers: dict = {}
        self.pushed = 0
        self.slot = table.add(self)
        table.set_fd(self.slot, -1)   # not a real socket: fanout pushes through push()

    def on(self, event, handler) -> None:
        self.handlers[event] = handler

    def push(self, packet, volatile: bool = False) -> None:
        self.pushed += 1

    def push_raw(self, data: bytes) -> None:
        self.pushed += 1

    def send(self, data, volatile: bool = False) -> None:
        self.pushed += 1

    def close(self, reason: str = "forced close") -> None:
        pass


def build(n: int, seed: int = 11):
    io = roomcast.Server(connect_timeout=3600)
    conns = [CountingConn(io.engine.table, i) for i in range(n)]
    for conn in conns:
        io._on_connection(conn)            # what the engine's "connection" event does
        conn.handlers["message"]("0")      # the client's CONNECT packet for "/"
    gevent.sleep(0)
    while len(io.sockets.sockets) < n:
        gevent.sleep(0.01)
    rng = random.Random(seed)
    for socket in io.sockets.sockets.values():
        if rng.random() < 0.5:
            socket.join("a")
        if rng.random() < 0.5:
            socket.join("b")
    return io, conns


def best(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def measure(n: int, repeat: int) -> dict:
    io, conns = build(n)
    index = io.sockets.adapter.index
    payload = {"msg": "x" * 40}

    def select():
        return len(index.select(["a"], intersect_rooms=["b"]))

    def intersect_emit():
        before = sum(c.pushed for c in conns)
        io.to("a").intersect("b").emit("ev", payload)
        return sum(c.pushed for c in conns) - before

    def by_hand_select():
        return [s for s in io.in_("a").fetch_sockets() if "b" in s.rooms]

    def by_hand_emit():
        before = sum(c.pushed for c in conns)
        chosen = [s.id for s in io.in_("a").fetch_sockets() if "b" in s.rooms]
        io.to(chosen).emit("ev", payload)
        return sum(c.pushed for c in conns) - before

    # counting pushes walks every conn: time the emits without it, check the counts apart
    def intersect_emit_timed():
        io.to("a").intersect("b").emit("ev", payload)

    def by_hand_emit_timed():
        io.to([s.id for s in io.in_("a").fetch_sockets() if "b" in s.rooms]).emit("ev", payload)

    expected = select()
    assert intersect_emit() == expected and by_hand_emit() == expected
    assert len(by_hand_select()) == expected
    out = {"sockets": n, "a": index.room_size("a"), "b": index.room_size("b"), "both": expected}
    out["select"] = best(select, repeat)[0]
    out["intersect_emit"] = best(intersect_emit_timed, repeat)[0]
    out["by_hand_select"] = best(by_hand_select, repeat)[0]
    out["by_hand_emit"] = best(by_hand_emit_timed, repeat)[0]
    io.close()
    return out


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for name, pure in (("compiled core", False), ("pure twin", True)):
        _speedups.use(pure)
        r = measure(args.sockets, args.repeat)
        rows.append((name, r))
    r0 = rows[0][1]
    print(f"{r0['sockets']:,} sockets; room a: {r0['a']:,}, room b: {r0['b']:,}, "
          f"in both: {r0['both']:,}\n")
    print("| core | selection: intersect (RoomIndex) | selection: by hand (fetch_sockets + filter) "
          "| broadcast: `to(a).intersect(b).emit` | broadcast: by hand, then `to(ids).emit` |")
    print("|---|---:|---:|---:|---:|")
    for name, r in rows:
        print(f"| {name} | {ms(r['select'])} | {ms(r['by_hand_select'])} "
              f"({r['by_hand_select'] / r['select']:,.0f}x) | {ms(r['intersect_emit'])} "
              f"| {ms(r['by_hand_emit'])} ({r['by_hand_emit'] / r['intersect_emit']:,.1f}x) |")


if __name__ == "__main__":
    main()

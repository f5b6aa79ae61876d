"""What the Admin UI's instrumentation costs a broadcast: off, production, development.

    python benchmarks/bench_admin.py [--sockets N] [--broadcasts K] [--reps R]

One roomcast Server in this process with N sockets in "/" (all in one room), each
on its own Engine.IO connection whose fan-out fd is one end of a non-blocking
socketpair (the fan-out's direct-write path, as for a WebSocket client). K
broadcasts of a small event to the room are timed; the other ends are drained
between broadcasts, outside the timer. ``instrument()`` runs with no UI connected,
so what is measured is the hook itself (the admin reports go to an empty room).
Prints the median µs per broadcast and per recipient for each configuration
(the configurations interleaved in each repetition).
"""
from __future__ import annotations

import argparse
import socket
import statistics
import time
import uuid

import roomcast
from roomcast.client import Client
from roomcast.events import EventEmitter
from roomcast.sio_packet import CONNECT
from roomcast import _speedups


class _BenchConnection(EventEmitter):
    """An Engine.IO connection the Socket.IO layer can use; the fan-out writes to fd."""

    transport = "websocket"
    ready_state = "open"

    def __init__(self, io: roomcast.Server, fd: int) -> None:
        self.id = uuid.uuid4().hex
        self.environ = {"REMOTE_ADDR": "127.0.0.1", "QUERY_STRING": "EIO=4",
                        "PATH_INFO": "/socket.io/", "wsgi.url_scheme": "http"}
        EventEmitter.__init__(self)
        self.slot = io.engine.table.add(self)
        io.engine.table.set_fd(self.slot, fd)

    def listener_failed(self, event):
        raise   # a failing benchmark stops

    def push(self, packet, volatile=False):   # only when a write would block: drop it
        pass

    def push_raw(self, data):
        pass

    def close(self, reason="forced close"):
        pass

    def deliver(self, ptype, nsp, data=None):
        encoded = _speedups.encode_packet(ptype, nsp, data)
        self.emit("message", encoded.text[1:])


def build(n: int, mode: str | None):
    io = roomcast.Server(async_handlers=False)
    io.on("connection", lambda s: s.join("all"))
    if mode is not None:
        io.instrument(mode=mode, server_stats_interval=3600)
    pairs = []
    for _ in range(n):
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        for s in (a, b):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        conn = _BenchConnection(io, a.fileno())
        Client(io, conn)
        conn.deliver(CONNECT, "/")
        pairs.append((a, b))
    assert len(io.sockets.sockets) == n
    return io, pairs


def drain(pairs) -> None:
    for _, b in pairs:
        try:
            while b.recv(1 << 16):
                pass
        except BlockingIOError:
            pass


def measure(n: int, k: int, mode: str | None) -> float:
    io, pairs = build(n, mode)
    drain(pairs)
    op = io.to("all")
    times = []
    for i in range(k):
        start = time.perf_counter()
        op.emit("tick", {"n": i, "p": "xxxxxxxxxxxxxxxxxxxxxxxx"})
        times.append(time.perf_counter() - start)
        drain(pairs)
    for a, b in pairs:
        a.close()
        b.close()
    io.close()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--broadcasts", type=int, default=300)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    print(f"compiled core: {_speedups.USING_EXTENSIONS}; "
          f"{args.sockets} sockets, {args.broadcasts} broadcasts, {args.reps} repetitions\n")
    print("| instrumentation | µs per broadcast (median of reps) | ns per recipient |")
    print("|---|---|---|")
    configs = (("off", None), ("production", "production"), ("development", "development"))
    runs: dict[str, list[float]] = {label: [] for label, _ in configs}
    for _ in range(args.reps):   # interleaved, so that the machine's load hits all alike
        for label, mode in configs:
            runs[label].append(measure(args.sockets, args.broadcasts, mode))
    for label, _ in configs:
        best = statistics.median(runs[label])
        print(f"| {label} | {best * 1e6:.1f} | {best * 1e9 / args.sockets:.0f} |")


if __name__ == "__main__":
    main()

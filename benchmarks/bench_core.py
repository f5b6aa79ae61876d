"""Micro-benchmarks of the broadcast core: compiled vs pure twin vs python-socketio.

    PYTHONPATH=src python benchmarks/bench_core.py [--quick] [--sockets N]

Measures, for N sockets each in its own room plus 3 of 10 shared rooms:
- the recipients of "3 rooms minus 1 room" (select + listing every recipient);
- joins and leaves per second on the populated index, and disconnects (leave all);
- the index's memory (tracemalloc: every allocation made while building it);
- the fan-out loop's cost per recipient, writing to real non-blocking socketpairs.
python-socketio's in-memory ``socketio.Manager`` does the same room work with
``enter_room`` / ``get_participants`` / ``leave_room`` / ``disconnect``.
Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import gc
import random
import socket
import time
import tracemalloc

from roomcast import _encoder_py, _fanout_py, _rooms_py

try:
    from roomcast import _fanout_c, _rooms_c
except ImportError:  # a pure build: the compiled column reads n/a
    _fanout_c = _rooms_c = None
try:
    import socketio
except ImportError:
    socketio = None

SHARED = [f"room-{i}" for i in range(10)]
NSP = "/"


def memberships(n: int, seed: int = 7) -> list[tuple[str, list[str]]]:
    """(sid, [own room + 3 shared rooms]) for n sockets, the same for every contender."""
    rng = random.Random(seed)
    return [(f"sid-{i:07d}", rng.sample(SHARED, 3)) for i in range(n)]


def best(fn, repeat: int) -> float:
    """Seconds per call: the fastest of ``repeat`` runs (the least disturbed one), each
    run calling ``fn`` often enough to last about 20 ms."""
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        if time.perf_counter() - start >= 0.02:
            break
        number *= 2
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return min(times)


# -- contenders: one object per implementation, the same operations -----------------

class Roomcast:
    def __init__(self, module):
        self.index = module.RoomIndex()

    def build(self, members):
        add = self.index.add
        for slot, (sid, rooms) in enumerate(members):
            add(slot, sid)
            for room in rooms:
                add(slot, room)

    def recipients(self):
        return list(self.index.select(SHARED[:3], except_rooms=SHARED[3:4]))

    def snapshot(self):
        """What a broadcast pays before fanout() walks the Selection in C."""
        return len(self.index.select(SHARED[:3], except_rooms=SHARED[3:4]))

    def join(self, slots, room):
        add = self.index.add
        for slot in slots:
            add(slot, room)

    def leave(self, slots, room):
        remove = self.index.remove
        for slot in slots:
            remove(slot, room)

    def disconnect(self, slots, members):
        remove_all = self.index.remove_all
        for slot in slots:
            remove_all(slot)


class SocketIOManager:
    def __init__(self):
        self.manager = socketio.Manager()

    def build(self, members):
        enter = self.manager.basic_enter_room
        for sid, rooms in members:
            # what pre_connect() does (without a server to make up the sid), then the joins
            enter(sid, NSP, None, eio_sid="e" + sid)
            enter(sid, NSP, sid, eio_sid="e" + sid)
            for room in rooms:
                self.manager.enter_room(sid, NSP, room)

    def recipients(self):
        chosen = {sid for sid, _ in self.manager.get_participants(NSP, SHARED[:3])}
        chosen.difference_update(sid for sid, _ in self.manager.get_participants(NSP, SHARED[3]))
        return list(chosen)

    snapshot = recipients   # Manager.emit builds this dict and then walks it

    def join(self, slots, room):
        enter = self.manager.enter_room
        for slot in slots:
            enter(self.sids[slot], NSP, room)

    def leave(self, slots, room):
        leave = self.manager.leave_room
        for slot in slots:
            leave(self.sids[slot], NSP, room)

    def disconnect(self, slots, members):
        for slot in slots:
            self.manager.disconnect(members[slot][0], NSP)


def contenders():
    out = {}
    if _rooms_c is not None:
        out["compiled"] = lambda: Roomcast(_rooms_c)
    out["twin"] = lambda: Roomcast(_rooms_py)
    if socketio is not None:
        out["python-socketio"] = SocketIOManager
    return out


def bench_index(n: int, repeat: int) -> dict:
    members = memberships(n)
    results: dict[str, dict] = {}
    for name, make in contenders().items():
        row = results[name] = {}
        # memory: everything allocated while building (the sids exist beforehand)
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        contender = make()
        contender.build(members)
        gc.collect()
        row["memory"] = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        del contender
        gc.collect()

        contender = make()
        contender.sids = [sid for sid, _ in members]
        start = time.perf_counter()
        contender.build(members)
        row["build"] = (n * 4) / (time.perf_counter() - start)

        row["recipients"] = len(contender.recipients())
        row["select"] = best(contender.recipients, repeat)
        row["snapshot"] = best(contender.snapshot, repeat)

        # joins and leaves of half the sockets, into and out of a fresh room each time
        slots = list(range(0, n, 2))
        joins, leaves = [], []
        for r in range(repeat):
            gc.collect()
            start = time.perf_counter()
            contender.join(slots, f"extra-{r}")
            joins.append(time.perf_counter() - start)
            start = time.perf_counter()
            contender.leave(slots, f"extra-{r}")
            leaves.append(time.perf_counter() - start)
        row["join"] = len(slots) / min(joins)
        row["leave"] = len(slots) / min(leaves)

        # python-socketio's disconnect scans every room: time a sample of it
        step = max(1, n // (100 if name == "python-socketio" else 10_000))
        times = []
        for r in range(min(repeat, step)):
            sample = list(range(1 + r, n, step))
            gc.collect()
            start = time.perf_counter()
            contender.disconnect(sample, members)
            times.append((time.perf_counter() - start) / len(sample))
        row["disconnect"] = 1 / min(times)
        del contender
        gc.collect()
    counts = {row["recipients"] for row in results.values()}
    assert len(counts) == 1, f"the contenders disagree on the recipients: {results}"
    return results


# -- the fan-out loop ----------------------------------------------------------------

class Conn:
    """A connection object whose queueing is counted (only EAGAIN/partial writes call it)."""
    __slots__ = ("queued",)

    def __init__(self):
        self.queued = 0

    def push(self, packet, volatile=False):
        self.queued += 1

    def push_raw(self, data):
        self.queued += 1


def drain(clients):
    for client in clients:
        try:
            while client.recv(65536):
                pass
        except BlockingIOError:
            pass


def bench_fanout(pairs: int, repeat: int) -> dict:
    packet = _encoder_py.encode_packet(2, NSP, ["news", {"title": "hello", "n": 1}])
    servers, clients = [], []
    for _ in range(pairs):
        server, client = socket.socketpair()
        server.setblocking(False)
        client.setblocking(False)
        servers.append(server)
        clients.append(client)
    results = {}
    try:
        modules = {"twin": (_fanout_py, _rooms_py)}
        if _fanout_c is not None:
            modules = {"compiled": (_fanout_c, _rooms_c), **modules}
        for name, (fanout_mod, rooms_mod) in modules.items():
            table = fanout_mod.ConnTable()
            conns = [Conn() for _ in range(pairs)]
            for conn, server in zip(conns, servers):
                table.set_fd(table.add(conn), server.fileno())
            selection = rooms_mod.Selection(range(pairs))
            times = []
            for _ in range(repeat):
                drain(clients)
                gc.collect()
                start = time.perf_counter()
                sent = fanout_mod.fanout(selection, table, packet)
                times.append(time.perf_counter() - start)
                assert sent == pairs
            assert sum(c.queued for c in conns) == 0, "a socket buffer filled up"
            # the queueing path: every connection busy, so each gets push()
            for slot in range(pairs):
                table.set_busy(slot, True)
            queued = best(lambda: fanout_mod.fanout(selection, table, packet), repeat)
            results[name] = {"direct": min(times) / pairs, "queued": queued / pairs}
        # reference: the same writes from a Python loop over socket objects
        def python_loop():
            ws = packet.ws
            for server in servers:
                server.send(ws)
        times = []
        for _ in range(repeat):
            drain(clients)
            start = time.perf_counter()
            python_loop()
            times.append(time.perf_counter() - start)
        results["socket.send loop"] = {"direct": min(times) / pairs, "queued": None}
    finally:
        for sock in servers + clients:
            sock.close()
    return results


# -- report --------------------------------------------------------------------------

def bench_encode(repeat: int) -> dict:
    """Encoding one broadcast: Socket.IO packet -> Engine.IO packet -> WebSocket frame.

    python-socketio encodes the Socket.IO and Engine.IO packets once per broadcast
    and frames per recipient (in gevent-websocket); one frame is counted here."""
    from roomcast import _encoder_c, _encoder_py

    data = ["chat", {"user": "alice", "room": "lobby", "text": "hello, world " * 8,
                     "ts": 1764000000123, "tags": ["a", "b", "c"], "seen": True}]
    loops = 2000

    def ours(mod):
        def run():
            for _ in range(loops):
                mod.encode_packet(2, "/", data).ws
        return run

    def psio():
        import engineio.packet
        import socketio.packet
        from geventwebsocket.websocket import Header

        def run():
            for _ in range(loops):
                sio = socketio.packet.Packet(socketio.packet.EVENT, data=data, namespace="/")
                eio = engineio.packet.Packet(engineio.packet.MESSAGE, data=sio.encode())
                payload = eio.encode().encode("utf-8")
                Header.encode_header(True, 1, b"", len(payload), 0) + payload
        return run

    out = {}
    for name, fn in (("compiled", ours(_encoder_c)), ("twin", ours(_encoder_py)),
                     ("python-socketio", psio())):
        out[name] = best(fn, repeat) / loops
    return out


def fmt_time(seconds):
    return f"{seconds * 1e3:.2f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.1f} µs"


def fmt_rate(value):
    if value >= 1e6:
        return f"{value / 1e6:.2f} M/s"
    return f"{value / 1e3:.0f} k/s" if value >= 1e4 else f"{value:,.0f} /s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 sockets, fewer repeats")
    parser.add_argument("--sockets", type=int, help="sockets in the index (default 100,000)")
    parser.add_argument("--pairs", type=int, help="socketpairs for the fan-out (default 2,000)")
    args = parser.parse_args()
    n = args.sockets or (10_000 if args.quick else 100_000)
    pairs = args.pairs or (500 if args.quick else 2_000)
    repeat = 3 if args.quick else 7

    index = bench_index(n, repeat)
    fan = bench_fanout(pairs, repeat * 3)
    enc = bench_encode(repeat)
    names = list(index)
    print(f"\n### roomcast core: {n:,} sockets (own room + 3 of 10 shared rooms each), "
          f"fan-out to {pairs:,} socketpairs\n")
    print("| measure | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))

    def line(label, cells):
        print(f"| {label} | " + " | ".join(cells) + " |")

    line(f"recipients of 3 rooms minus 1 ({index[names[0]]['recipients']:,}): select + list",
         [fmt_time(index[k]["select"]) for k in names])
    line("the same, select only (the snapshot a broadcast walks)",
         [fmt_time(index[k]["snapshot"]) for k in names])
    line("build (4 joins per socket)", [fmt_rate(index[k]["build"]) for k in names])
    line("join a room", [fmt_rate(index[k]["join"]) for k in names])
    line("leave a room", [fmt_rate(index[k]["leave"]) for k in names])
    line("disconnect (leave all 4 rooms)", [fmt_rate(index[k]["disconnect"]) for k in names])
    line("index memory (tracemalloc)",
         [f"{index[k]['memory'] / 2**20:.1f} MiB ({index[k]['memory'] / n:.0f} B/socket)"
          for k in names])
    line("encode one broadcast (a 190-byte event, down to its WebSocket frame)",
         [fmt_time(enc[k]) for k in names])
    fan_names = list(fan)
    print("\n| fan-out per recipient | " + " | ".join(fan_names) + " |")
    print("|---|" + "---|" * len(fan_names))
    line("idle WebSocket: send(2) on the fd",
         [f"{fan[k]['direct'] * 1e9:.0f} ns" for k in fan_names])
    line("busy connection: conn.push(packet)",
         ["n/a" if fan[k]["queued"] is None else f"{fan[k]['queued'] * 1e9:.0f} ns"
          for k in fan_names])
    print()


if __name__ == "__main__":
    main()

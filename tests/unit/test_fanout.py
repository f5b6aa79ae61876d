"""ConnTable and fanout() (ARCHITECTURE.md section 4) against real socketpairs,
run against both implementations."""
from __future__ import annotations

import socket

import pytest

from roomcast import _speedups

EVENT = 2


class Recorder:
    """A connection object as fanout() sees it: push/push_raw only queue and mark
    the slot busy (like EngineSocket); here they also record the call."""

    def __init__(self, table, calls: list, name: str):
        self.table, self.calls, self.name = table, calls, name
        self.slot = table.add(self)

    def push(self, *args):
        self.calls.append((self.name, "push", args))
        self.table.set_busy(self.slot, True)

    def push_raw(self, data):
        self.calls.append((self.name, "push_raw", data))
        self.table.set_busy(self.slot, True)


def pair(sndbuf: int | None = None):
    """A non-blocking socketpair: (server side whose fd fanout writes, client side)."""
    server, client = socket.socketpair()
    server.setblocking(False)
    client.setblocking(False)
    if sndbuf:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    return server, client


def drain(sock) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            return b"".join(chunks)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


@pytest.fixture
def sockets():
    opened = []

    def make(sndbuf=None):
        server, client = pair(sndbuf)
        opened.extend((server, client))
        return server, client

    yield make
    for sock in opened:
        sock.close()


def test_slots_are_the_lowest_free():
    table = _speedups.ConnTable()
    a, b, c = object(), object(), object()
    assert [table.add(a), table.add(b), table.add(c)] == [0, 1, 2]
    table.remove(1)
    table.remove(0)
    assert len(table) == 1
    assert table.add("x") == 0
    assert table.add("y") == 1
    assert table.add("z") == 3
    assert table.conn(2) is c and table.conn(0) == "x"
    assert len(table) == 4


def test_free_slots_raise_key_error():
    table = _speedups.ConnTable()
    slot = table.add(object())
    table.remove(slot)
    for call in (table.conn, table.remove, table.is_busy,
                 lambda s: table.set_busy(s, True), lambda s: table.set_fd(s, 3)):
        for bad in (slot, 5, -1):
            with pytest.raises(KeyError):
                call(bad)
    with pytest.raises(TypeError):
        table.conn("0")
    with pytest.raises(ValueError):
        table.add(None)


def test_fd_and_busy_flags_reset_when_a_slot_is_reused():
    table = _speedups.ConnTable()
    slot = table.add("a")
    assert table.is_busy(slot) is False
    table.set_busy(slot, True)
    table.set_fd(slot, 7)
    assert table.is_busy(slot) is True
    for bad in (-2, 2**31, "3", 1.0):
        with pytest.raises(ValueError):
            table.set_fd(slot, bad)
    table.remove(slot)
    assert table.add("b") == slot
    assert table.is_busy(slot) is False


def test_idle_websockets_get_the_frames_directly(sockets):
    table, calls = _speedups.ConnTable(), []
    packet = _speedups.encode_packet(EVENT, "/", ["news", "hello"])
    peers = []
    for i in range(3):
        conn = Recorder(table, calls, f"c{i}")
        server, client = sockets()
        table.set_fd(conn.slot, server.fileno())
        peers.append(client)
    assert _speedups.fanout(_speedups.Selection([0, 1, 2]), table, packet) == 3
    assert calls == []
    assert [drain(p) for p in peers] == [packet.ws] * 3
    assert packet.ws == b"\x81\x12" + b'42["news","hello"]'


def test_each_kind_of_connection_in_slot_order(sockets):
    table, calls = _speedups.ConnTable(), []
    polling = Recorder(table, calls, "polling")      # slot 0: fd -1
    busy = Recorder(table, calls, "busy")            # slot 1: fd set but busy
    gone = Recorder(table, calls, "gone")            # slot 2: freed below
    ws = Recorder(table, calls, "ws")                # slot 3: idle websocket
    server, client = sockets()
    table.set_fd(busy.slot, server.fileno())
    table.set_busy(busy.slot, True)
    table.remove(gone.slot)
    server2, client2 = sockets()
    table.set_fd(ws.slot, server2.fileno())
    packet = _speedups.encode_packet(EVENT, "/", ["x"])
    selection = _speedups.Selection([3, 2, 1, 0, 50])
    assert _speedups.fanout(selection, table, packet) == 3
    assert calls == [("polling", "push", (packet, False)), ("busy", "push", (packet,))]
    assert drain(client) == b"" and drain(client2) == packet.ws


def test_volatile_drops_only_for_busy_connections(sockets):
    table, calls = _speedups.ConnTable(), []
    polling = Recorder(table, calls, "polling")
    busy = Recorder(table, calls, "busy")
    table.set_busy(busy.slot, True)
    packet = _speedups.encode_packet(EVENT, "/", ["tick"])
    assert _speedups.fanout([0, 1], table, packet, volatile=True) == 1
    assert calls == [("polling", "push", (packet, True))]


def test_partial_write_queues_the_rest(sockets):
    table, calls = _speedups.ConnTable(), []
    conn = Recorder(table, calls, "ws")
    server, client = sockets(sndbuf=4096)
    table.set_fd(conn.slot, server.fileno())
    packet = _speedups.encode_packet(EVENT, "/", ["big", "x" * 300_000])
    assert _speedups.fanout(_speedups.Selection([conn.slot]), table, packet) == 1
    [(name, kind, rest)] = calls
    assert kind == "push_raw" and 0 < len(rest) < len(packet.ws)
    assert table.is_busy(conn.slot)
    assert drain(client) + rest == packet.ws


def test_full_socket_queues_everything(sockets):
    table, calls = _speedups.ConnTable(), []
    conn = Recorder(table, calls, "ws")
    server, client = sockets(sndbuf=4096)
    while True:   # fill the socket until it would block
        try:
            server.send(b"\0" * 65536)
        except BlockingIOError:
            break
    table.set_fd(conn.slot, server.fileno())
    packet = _speedups.encode_packet(EVENT, "/", ["late"])
    assert _speedups.fanout(_speedups.Selection([conn.slot]), table, packet) == 1
    assert calls == [("ws", "push_raw", packet.ws)]


def test_broken_socket_hands_the_frame_to_the_writer(sockets):
    table, calls = _speedups.ConnTable(), []
    conn = Recorder(table, calls, "ws")
    server, client = sockets()
    client.close()
    table.set_fd(conn.slot, server.fileno())
    packet = _speedups.encode_packet(EVENT, "/", ["lost"])
    assert _speedups.fanout(_speedups.Selection([conn.slot]), table, packet) == 1
    assert calls == [("ws", "push_raw", packet.ws)]


def test_a_push_that_marks_busy_does_not_disturb_the_loop(sockets):
    # after a push_raw the slot is busy: the next broadcast must queue, not overtake
    table, calls = _speedups.ConnTable(), []
    conn = Recorder(table, calls, "ws")
    server, client = sockets(sndbuf=4096)
    table.set_fd(conn.slot, server.fileno())
    first = _speedups.encode_packet(EVENT, "/", ["one", "y" * 200_000])
    second = _speedups.encode_packet(EVENT, "/", ["two"])
    _speedups.fanout(_speedups.Selection([0]), table, first)
    _speedups.fanout(_speedups.Selection([0]), table, second)
    assert [c[1] for c in calls] == ["push_raw", "push"]
    assert calls[1][2] == (second,)


def test_selection_from_the_room_index(sockets):
    table, calls = _speedups.ConnTable(), []
    index = _speedups.RoomIndex()
    conns = [Recorder(table, calls, f"c{i}") for i in range(100)]
    for conn in conns:
        index.add(conn.slot, f"sid{conn.slot}")
        index.add(conn.slot, "odd" if conn.slot % 2 else "even")
    packet = _speedups.encode_packet(EVENT, "/", ["to odd but 7"])
    selection = index.select(["odd"], except_slots=[7])
    assert _speedups.fanout(selection, table, packet) == 49
    assert [c[0] for c in calls] == [f"c{i}" for i in range(1, 100, 2) if i != 7]


def test_packet_ws_must_be_bytes():
    class NotAPacket:
        ws = "text"

    with pytest.raises(TypeError, match="packet.ws must be bytes"):
        _speedups.fanout([], _speedups.ConnTable(), NotAPacket())


# -- coalescing: what one loop pass writes to a connection leaves in one send() ----------

def test_a_second_write_in_one_pass_waits_for_flush(sockets):
    table, calls, hooks = _speedups.ConnTable(), [], []
    table.set_flush_hook(lambda: hooks.append("flush me"))
    conn = Recorder(table, calls, "c")
    server, client = sockets()
    table.set_fd(conn.slot, server.fileno())
    assert table.send(conn.slot, b"one") is True
    assert drain(client) == b"one"                # the first write of a pass goes out at once...
    assert hooks == ["flush me"]                  # ...and the owner is told to end the pass
    table.send(conn.slot, b"two")
    table.send(conn.slot, b"three")
    assert drain(client) == b""                   # held back, the owner told once a pass
    assert hooks == ["flush me"]
    assert table.flush() == 1
    assert drain(client) == b"twothree"
    # a slot was written twice: the next pass holds from its first write
    table.send(conn.slot, b"four")
    assert drain(client) == b"" and len(hooks) == 2
    assert table.flush() == 1 and drain(client) == b"four"
    # that pass had one write per slot: back to direct writes
    table.send(conn.slot, b"five")
    assert drain(client) == b"five"
    assert calls == [] and len(hooks) == 3
    # a pass that only wrote at once still ends with a flush, which starts a new pass
    assert table.flush() == 0
    table.send(conn.slot, b"six")
    assert drain(client) == b"six" and len(hooks) == 4


def test_broadcasts_in_one_pass_are_coalesced_per_connection(sockets):
    table, calls = _speedups.ConnTable(), []
    peers = []
    for i in range(3):
        conn = Recorder(table, calls, f"c{i}")
        server, client = sockets()
        table.set_fd(conn.slot, server.fileno())
        peers.append(client)
    packets = [_speedups.encode_packet(EVENT, "/", ["n", i]) for i in range(4)]
    for packet in packets:
        assert _speedups.fanout(_speedups.Selection([0, 1, 2]), table, packet) == 3
    assert [drain(p) for p in peers] == [packets[0].ws] * 3
    assert table.flush() == 3                     # one send per connection for the other three
    assert [drain(p) for p in peers] == [b"".join(p.ws for p in packets[1:])] * 3
    assert calls == []


def test_held_bytes_are_never_lost_or_reordered(sockets):
    table, calls = _speedups.ConnTable(), []
    conn = Recorder(table, calls, "c")
    server, client = sockets()
    table.set_fd(conn.slot, server.fileno())
    table.send(conn.slot, b"a")
    table.send(conn.slot, b"b")
    assert table.take_held(conn.slot) == b"b" and table.take_held(conn.slot) is None
    table.send(conn.slot, b"c")
    table.set_fd(conn.slot, -1)                   # e.g. closing: held bytes take the queued path
    assert calls == [("c", "push_raw", b"c")]
    assert table.send(conn.slot, b"d") is False   # busy (and no fd): the caller queues
    assert table.flush() == 0
    assert drain(client) == b"a"


def test_a_slot_holding_too_much_sends_at_once(sockets):
    table, calls = _speedups.ConnTable(), []
    conn = Recorder(table, calls, "c")
    server, client = sockets()
    table.set_fd(conn.slot, server.fileno())
    table.send(conn.slot, b"x")
    for _ in range(5):
        table.send(conn.slot, b"y" * 20_000)      # 64 KiB is the most a slot holds back
    got = drain(client)
    assert got.startswith(b"x" + b"y" * 60_000)
    table.flush()
    assert got + drain(client) == b"x" + b"y" * 100_000

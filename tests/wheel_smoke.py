"""Smoke test of an installed roomcast wheel (scripts/wheel_smoke.sh runs it in a fresh
virtualenv): the compiled core imports from that install, and a broadcast to a room
reaches exactly that room's members through real sockets."""
from __future__ import annotations

import os
import socket
import sys

import roomcast
from roomcast import _speedups

want_compiled = os.environ.get("ROOMCAST_REQUIRE_EXTENSIONS", "") not in ("", "0")
here = os.path.dirname(roomcast.__file__)
assert here.startswith(sys.prefix), f"roomcast imported from {here}, not from {sys.prefix}"
if want_compiled:
    from roomcast import _fanout_c, _frames_c, _rooms_c

    assert roomcast.USING_EXTENSIONS, "the wheel's compiled core is not in use"
    assert _rooms_c.__file__.startswith(here) and _fanout_c.__file__.startswith(here)
    assert _frames_c.__file__.startswith(here)
    assert _speedups.RoomIndex is _rooms_c.RoomIndex
    assert _speedups.FrameParser is _frames_c.FrameParser


class Queued:
    """A connection object that only collects what the fan-out hands it."""

    def __init__(self) -> None:
        self.packets: list = []

    def push(self, packet, volatile: bool = False) -> None:
        self.packets.append(packet)

    def push_raw(self, data: bytes) -> None:
        self.packets.append(data)


table = _speedups.ConnTable()
index = _speedups.RoomIndex()
pairs = [socket.socketpair() for _ in range(3)]
slots = []
for ours, _theirs in pairs:
    slot = table.add(Queued())
    table.set_fd(slot, ours.fileno())
    slots.append(slot)
queued = Queued()
polling_slot = table.add(queued)       # fd -1: a polling client, queued instead of written
index.add(slots[0], "room")
index.add(slots[2], "room")
index.add(polling_slot, "room")
index.add(slots[1], "other")
assert index.room_size("room") == 3 and sorted(index.all_rooms()) == ["other", "room"]

packet = _speedups.encode_packet(2, "/", ["news", {"n": 1}])
sent = _speedups.fanout(index.select(["room"]), table, packet)
assert sent == 3, sent
for i, (_ours, theirs) in enumerate(pairs):
    theirs.setblocking(False)
    try:
        got = theirs.recv(65536)
    except BlockingIOError:
        got = b""
    assert got == (packet.ws if i in (0, 2) else b""), (i, got)
assert queued.packets == [packet]
assert packet.ws[2:] == b'42["news",{"n":1}]'
assert index.remove_all(slots[0]) == ["room"] and index.room_size("room") == 2
print(f"wheel smoke test passed (compiled core: {roomcast.USING_EXTENSIONS}, from {here})")

"""The Adapter: where every room operation and broadcast of a namespace goes.

``InMemoryAdapter`` keeps the namespace's rooms in one ``_speedups.RoomIndex``
whose members are engine slots (one per Engine.IO connection, so a slot names
a socket inside one namespace), plus the sid <-> slot maps to translate. A
broadcast is encoded once and handed to ``_speedups.fanout`` with the
connection table of the engine; a cluster adapter (Redis) subclasses it and
calls these methods for the local part.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, NamedTuple

from roomcast import _speedups, metrics
from roomcast.engine.uncompressed import with_compress
# re-exported: `from roomcast.adapter import EventEmitter` predates roomcast.events
from roomcast.events import EventEmitter as EventEmitter, Handler as Handler

if TYPE_CHECKING:
    from roomcast.namespace import Namespace

log = logging.getLogger("roomcast")

ADAPTER_EVENTS = ("create-room", "delete-room", "join-room", "leave-room")


@dataclass(frozen=True)
class BroadcastFlags:
    volatile: bool = False
    compress: bool = True
    local: bool = False
    timeout: float | None = None
    expect_single_response: bool = False


class BroadcastOptions(NamedTuple):
    """What a broadcast selects, and its flags. A named tuple: one is made per
    broadcast, and a frozen dataclass costs four times as much to build."""

    rooms: frozenset = frozenset()
    except_: frozenset = frozenset()
    flags: BroadcastFlags = BroadcastFlags()
    # roomcast's own: the selected sockets must also be in every one of these rooms
    intersect: frozenset = frozenset()


def _socket_rooms(rooms: Any) -> list:
    """One room or an iterable of rooms, as a list."""
    if isinstance(rooms, (str, bytes)) or not isinstance(rooms, Iterable):
        return [rooms]
    return list(rooms)


class Adapter(EventEmitter):
    """The interface every adapter implements (ARCHITECTURE.md §6)."""

    def __init__(self, nsp: "Namespace") -> None:
        super().__init__()
        self.nsp = nsp

    def init(self) -> None:
        pass

    def close(self) -> None:
        pass

    def server_count(self) -> int:
        return 1

    def add_all(self, sid: str, rooms: Iterable) -> None:
        raise NotImplementedError

    def delete(self, sid: str, room: Any) -> None:
        raise NotImplementedError

    def delete_all(self, sid: str) -> None:
        raise NotImplementedError

    def socket_rooms(self, sid: str) -> set | None:
        raise NotImplementedError

    def sockets(self, rooms: Iterable) -> set[str]:
        raise NotImplementedError

    def all_rooms(self) -> set:
        raise NotImplementedError

    def has_room(self, room: Any) -> bool:
        raise NotImplementedError

    def room_count(self) -> int:
        """How many rooms this server has in the namespace (own-id rooms included)."""
        return len(self.all_rooms())

    def broadcast(self, packet: dict, opts: BroadcastOptions) -> None:
        raise NotImplementedError

    def broadcast_with_ack(self, packet: dict, opts: BroadcastOptions,
                           client_count_callback: Callable[[int], None],
                           ack: Callable[..., None]) -> None:
        raise NotImplementedError

    def fetch_sockets(self, opts: BroadcastOptions) -> list:
        raise NotImplementedError

    def add_sockets(self, opts: BroadcastOptions, rooms: Iterable) -> None:
        raise NotImplementedError

    def del_sockets(self, opts: BroadcastOptions, rooms: Iterable) -> None:
        raise NotImplementedError

    def disconnect_sockets(self, opts: BroadcastOptions, close: bool) -> None:
        raise NotImplementedError

    # -- connection state recovery (roomcast.recovery) ----------------------------------

    def persist_session(self, session: dict) -> None:
        """Keep ``{sid, pid, rooms, data}`` of a socket that lost its connection, for
        ``max_disconnection_duration``. Adapters that cannot recover keep nothing."""

    def restore_session(self, pid: str, offset: str) -> dict | None:
        """The session of ``pid`` plus ``missed_packets`` (the packets after ``offset``
        that reached its rooms, in order: EVENT data lists, or already encoded packets),
        or None when it cannot be recovered (unknown, expired, offset not found)."""
        return None

    def server_side_emit(self, packet: list, ack: Callable | None = None) -> None:
        # A single server has nobody else to tell: an ack gets "no error, no responses".
        if ack is not None:
            ack(None, [])


class InMemoryAdapter(Adapter):
    """Rooms of one namespace in this process: a RoomIndex over engine slots."""

    def __init__(self, nsp: "Namespace") -> None:
        super().__init__(nsp)
        self.index = _speedups.RoomIndex()
        self._slot_of: dict[str, int] = {}
        self._sid_of: dict[int, str] = {}

    # -- membership -------------------------------------------------------------

    def _room_events_wanted(self) -> bool:
        # Room events cost a dict lookup per join; skip them unless someone listens.
        listeners = self._listeners
        return bool(listeners) and any(e in listeners for e in ADAPTER_EVENTS)

    def _slot_for(self, sid: str) -> int | None:
        slot = self._slot_of.get(sid)
        if slot is None:
            socket = self.nsp.sockets.get(sid)
            if socket is None:
                return None   # not connected (yet): the socket keeps such rooms itself
            slot = socket.client.conn.slot
            self._slot_of[sid] = slot
            self._sid_of[slot] = sid
        return slot

    def add_all(self, sid: str, rooms: Iterable) -> None:
        slot = self._slot_for(sid)
        if slot is None:
            return
        index = self.index
        events = self._room_events_wanted()
        for room in rooms:
            if index.add(slot, room) and events:
                if index.room_size(room) == 1:
                    self.emit("create-room", room)
                self.emit("join-room", room, sid)

    def delete(self, sid: str, room: Any) -> None:
        slot = self._slot_of.get(sid)
        if slot is None:
            return
        if self.index.remove(slot, room) and self._room_events_wanted():
            self.emit("leave-room", room, sid)
            if not self.index.has_room(room):
                self.emit("delete-room", room)

    def delete_all(self, sid: str) -> None:
        slot = self._slot_of.pop(sid, None)
        if slot is None:
            return
        if self._sid_of.get(slot) == sid:
            del self._sid_of[slot]
        left = self.index.remove_all(slot)   # costs this socket's own rooms only
        if left and self._room_events_wanted():
            for room in left:
                self.emit("leave-room", room, sid)
                if not self.index.has_room(room):
                    self.emit("delete-room", room)

    def socket_rooms(self, sid: str) -> set | None:
        slot = self._slot_of.get(sid)
        if slot is None:
            return None
        return set(self.index.rooms_of(slot))

    def all_rooms(self) -> set:
        return set(self.index.all_rooms())

    def has_room(self, room: Any) -> bool:
        return self.index.has_room(room)

    def sockets(self, rooms: Iterable) -> set[str]:
        rooms = list(rooms) if rooms else None
        sid_of = self._sid_of
        return {sid_of[slot] for slot in self.index.select(rooms) if slot in sid_of}

    # -- selections -------------------------------------------------------------

    def _select(self, opts: BroadcastOptions):
        return self.index.select(list(opts.rooms) if opts.rooms else None,
                                 list(opts.except_) if opts.except_ else None,
                                 intersect_rooms=list(opts.intersect) if opts.intersect else None)

    def _local_sockets(self, selection) -> list:
        sockets = self.nsp.sockets
        sid_of = self._sid_of
        found = []
        for slot in selection:
            socket = sockets.get(sid_of.get(slot))
            if socket is not None:
                found.append(socket)
        return found

    # -- broadcasting -----------------------------------------------------------

    def broadcast(self, packet: dict, opts: BroadcastOptions) -> None:
        selection = self._select(opts)
        if len(selection):
            self._deliver(packet, selection, opts.flags)

    def _deliver(self, packet: dict, selection, flags: BroadcastFlags, encoded: Any = None) -> int:
        # Encode once for every recipient (raises TypeError for unserialisable data
        # before anything was sent).
        if encoded is None:
            encoded = self.nsp.server.encode_packet(packet["type"], self.nsp.name,
                                                    packet["data"], packet.get("id"))
        if self.nsp._outgoing_listeners:
            for socket in self._local_sockets(selection):
                if socket._any_outgoing:
                    socket._notify_outgoing(packet["data"])
        sent = _speedups.fanout(selection, self.nsp.server.engine.table,
                                with_compress(encoded, flags.compress), flags.volatile)
        counts = metrics.active
        if counts is not None:   # once per broadcast, never per recipient
            counts.broadcast(sent, len(encoded.ws), len(selection) - sent if flags.volatile else 0)
        return sent

    def broadcast_with_ack(self, packet: dict, opts: BroadcastOptions,
                           client_count_callback: Callable[[int], None],
                           ack: Callable[..., None]) -> None:
        selection = self._select(opts)
        recipients = self._local_sockets(selection)
        if recipients:
            # one id for every recipient, from the namespace counter (Node's nsp._ids)
            packet = dict(packet, id=self.nsp._next_ack_id())
            for socket in recipients:
                socket._acks[packet["id"]] = ack
            try:
                self._deliver(packet, selection, opts.flags)
            except BaseException:
                for socket in recipients:
                    socket._acks.pop(packet["id"], None)
                raise
        client_count_callback(len(recipients))

    # -- operations on the selected sockets ------------------------------------

    def fetch_sockets(self, opts: BroadcastOptions) -> list:
        return self._local_sockets(self._select(opts))

    def add_sockets(self, opts: BroadcastOptions, rooms: Iterable) -> None:
        rooms = _socket_rooms(rooms)
        for socket in self._local_sockets(self._select(opts)):
            socket.join(rooms)

    def del_sockets(self, opts: BroadcastOptions, rooms: Iterable) -> None:
        rooms = _socket_rooms(rooms)
        for socket in self._local_sockets(self._select(opts)):
            for room in rooms:
                socket.leave(room)

    def disconnect_sockets(self, opts: BroadcastOptions, close: bool) -> None:
        for socket in self._local_sockets(self._select(opts)):
            socket.disconnect(close)

    def close(self) -> None:
        self._slot_of.clear()
        self._sid_of.clear()

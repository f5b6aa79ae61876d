"""BroadcastOperator (io.to(...).except_(...).emit(...)) and RemoteSocket.

An operator is immutable: every chained call returns a new one, so operators
can be kept and shared between greenlets. Everything it does goes through
the namespace's adapter.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Iterable

import gevent
from gevent.event import AsyncResult

from roomcast.adapter import BroadcastFlags, BroadcastOptions
from roomcast.dispatch import describe
from roomcast.errors import timeout_error
from roomcast.sio_packet import EVENT, RESERVED_EVENTS

if TYPE_CHECKING:
    from roomcast.adapter import Adapter

log = logging.getLogger("roomcast")

_NO_FLAGS = BroadcastFlags()


def room_set(room: Any) -> frozenset:
    """A room (str or any hashable) or an iterable of rooms, as a frozenset."""
    if isinstance(room, (str, bytes)) or not isinstance(room, Iterable):
        return frozenset((room,))
    return frozenset(room)


def ack_value(args: tuple) -> Any:
    """What an ack "returns" in Python: its argument, a tuple of several, or None."""
    if not args:
        return None
    return args[0] if len(args) == 1 else args


def check_event(event: Any) -> None:
    if event in RESERVED_EVENTS:
        raise ValueError(f'"{event}" is a reserved event name')


def call_safely(fn: Callable, *args: Any) -> None:
    try:
        fn(*args)
    except Exception:  # user callbacks are logged, never propagated into the server
        log.exception("error in callback %s", describe(fn))


class _AckCollector:
    """Gathers the acks of a broadcast (Node's BroadcastOperator.emit with a callback).

    Complete once every server reported its client count and that many acks
    arrived; the timer, when there is one, ends it early with the responses so far.
    """

    def __init__(self, callback: Callable, timeout: float | None, single: bool) -> None:
        self.callback = callback
        self.single = single
        self.responses: list = []
        self.expected_servers = -1
        self.actual_servers = 0
        self.expected_clients = 0
        self.finished = False
        self.timer = gevent.spawn_later(timeout, self._expire) if timeout is not None else None

    def client_count(self, count: int) -> None:
        self.expected_clients += count
        self.actual_servers += 1
        self._check()

    def ack(self, *args: Any) -> None:
        # Node keeps each client's first ack argument only (as a remote server
        # relays it: the Redis adapter's BROADCAST_ACK carries one value)
        self.responses.append(args[0] if args else None)
        self._check()

    def server_count(self, count: int) -> None:
        self.expected_servers = count
        self._check()

    def _check(self) -> None:
        if (not self.finished and self.expected_servers == self.actual_servers
                and len(self.responses) >= self.expected_clients):
            self.finished = True
            if self.timer is not None:
                self.timer.kill(block=False)
            result = (self.responses[0] if self.responses else None) if self.single \
                else list(self.responses)
            call_safely(self.callback, None, result)

    def _expire(self) -> None:
        if not self.finished:
            self.finished = True
            call_safely(self.callback, timeout_error(),
                        None if self.single else list(self.responses))


class BroadcastOperator:
    """A selection of sockets (rooms, intersected rooms, except rooms) plus flags; chainable."""

    __slots__ = ("adapter", "rooms", "except_rooms", "flags", "intersect_rooms")

    def __init__(self, adapter: "Adapter", rooms: frozenset = frozenset(),
                 except_rooms: frozenset = frozenset(), flags: BroadcastFlags = _NO_FLAGS,
                 intersect_rooms: frozenset = frozenset()) -> None:
        self.adapter = adapter
        self.rooms = rooms
        self.except_rooms = except_rooms
        self.flags = flags
        self.intersect_rooms = intersect_rooms

    # -- chaining ---------------------------------------------------------------

    def to(self, room: Any) -> "BroadcastOperator":
        return BroadcastOperator(self.adapter, self.rooms | room_set(room), self.except_rooms,
                                 self.flags, self.intersect_rooms)

    in_ = to

    def intersect(self, *rooms: Any) -> "BroadcastOperator":
        """Only the sockets that are also in every one of ``rooms`` (each argument a room
        or an iterable of rooms): ``io.to("a").intersect("b", "c")`` is a AND b AND c."""
        wanted = self.intersect_rooms
        for room in rooms:
            wanted = wanted | room_set(room)
        return BroadcastOperator(self.adapter, self.rooms, self.except_rooms, self.flags, wanted)

    def except_(self, room: Any) -> "BroadcastOperator":
        return BroadcastOperator(self.adapter, self.rooms, self.except_rooms | room_set(room),
                                 self.flags, self.intersect_rooms)

    def _with(self, **flags: Any) -> "BroadcastOperator":
        return BroadcastOperator(self.adapter, self.rooms, self.except_rooms,
                                 replace(self.flags, **flags), self.intersect_rooms)

    def compress(self, flag: bool = True) -> "BroadcastOperator":
        return self._with(compress=bool(flag))

    @property
    def volatile(self) -> "BroadcastOperator":
        """Dropped for recipients that cannot take it right now."""
        return self._with(volatile=True)

    @property
    def local(self) -> "BroadcastOperator":
        """This server only (a cluster adapter does not publish it)."""
        return self._with(local=True)

    def timeout(self, seconds: float) -> "BroadcastOperator":
        return self._with(timeout=float(seconds))

    def options(self) -> BroadcastOptions:
        return BroadcastOptions(self.rooms, self.except_rooms, self.flags, self.intersect_rooms)

    # -- emitting ---------------------------------------------------------------

    def emit(self, event: Any, *args: Any, callback: Callable | None = None) -> bool:
        """Send to every selected socket. With ``callback``, collect their acks:
        ``callback(err, responses)``, err a TimeoutError when ``timeout()`` expired first."""
        check_event(event)
        packet = {"type": EVENT, "data": [event, *args], "nsp": self.adapter.nsp.name}
        if callback is None:
            self.adapter.broadcast(packet, self.options())
            return True
        collector = _AckCollector(callback, self.flags.timeout, self.flags.expect_single_response)
        self.adapter.broadcast_with_ack(packet, self.options(), collector.client_count,
                                        collector.ack)
        collector.server_count(self.adapter.server_count())
        return True

    def send(self, *args: Any, callback: Callable | None = None) -> bool:
        return self.emit("message", *args, callback=callback)

    def emit_with_ack(self, event: Any, *args: Any) -> Any:
        """Blocking emit: the list of responses (one value for a RemoteSocket);
        TimeoutError when the timeout expired first."""
        result = AsyncResult()

        def done(err: BaseException | None, responses: Any) -> None:
            if err is not None:
                result.set_exception(err)
            else:
                result.set(responses)

        self.emit(event, *args, callback=done)
        return result.get()

    # -- socket operations --------------------------------------------------------

    def fetch_sockets(self) -> list:
        """The matching sockets: local Socket objects, or RemoteSocket for other servers."""
        return self.adapter.fetch_sockets(self.options())

    def sockets_join(self, rooms: Any) -> None:
        self.adapter.add_sockets(self.options(), list(room_set(rooms)))

    def sockets_leave(self, rooms: Any) -> None:
        self.adapter.del_sockets(self.options(), list(room_set(rooms)))

    def disconnect_sockets(self, close: bool = False) -> None:
        self.adapter.disconnect_sockets(self.options(), close)

    def __repr__(self) -> str:
        intersect = f" intersect={set(self.intersect_rooms)}" if self.intersect_rooms else ""
        return (f"<BroadcastOperator nsp={self.adapter.nsp.name!r} rooms={set(self.rooms)}"
                f"{intersect} except={set(self.except_rooms)}>")


class RemoteSocket:
    """A socket of another server, as a cluster adapter's fetch_sockets returns it.

    ``details`` is the serialised form: ``{"id", "handshake", "rooms", "data"}``.
    Its operations are broadcasts to its own-id room that expect a single response.
    """

    def __init__(self, adapter: "Adapter", details: dict) -> None:
        self.id: str = details["id"]
        self.handshake: dict = details.get("handshake") or {}
        self.rooms: set = set(details.get("rooms") or ())
        self.data: Any = details.get("data")
        self._operator = BroadcastOperator(adapter, frozenset((self.id,)),
                                           flags=BroadcastFlags(expect_single_response=True))

    @property
    def nsp(self):
        return self._operator.adapter.nsp

    def emit(self, event: Any, *args: Any, callback: Callable | None = None) -> bool:
        return self._operator.emit(event, *args, callback=callback)

    def emit_with_ack(self, event: Any, *args: Any) -> Any:
        return self._operator.emit_with_ack(event, *args)

    def timeout(self, seconds: float) -> BroadcastOperator:
        return self._operator.timeout(seconds)

    def join(self, rooms: Any) -> None:
        self._operator.sockets_join(rooms)

    def leave(self, rooms: Any) -> None:
        self._operator.sockets_leave(rooms)

    def disconnect(self, close: bool = False) -> "RemoteSocket":
        self._operator.disconnect_sockets(close)
        return self

    def __repr__(self) -> str:
        return f"<RemoteSocket {self.id} nsp={self.nsp.name!r}>"

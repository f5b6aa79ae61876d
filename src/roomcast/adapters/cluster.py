"""The cluster-adapter base: what every multi-server adapter shares, written once.

The shape and the message format are those of Node's ``socket.io-adapter``
``ClusterAdapter`` / ``ClusterAdapterWithHeartbeat`` (node-socketio.md §3-4), which the
sharded Redis adapter, the Redis Streams adapter, and Node's Postgres and Mongo
adapters all speak. A message is a dict::

    {"type": MessageType, "data": {...} (absent for heartbeats), "uid": <sender>, "nsp": <name>}

A transport subclasses :class:`ClusterAdapter` (or :class:`ClusterAdapterWithHeartbeat`
when it cannot count the servers itself) and provides two methods:

- ``do_publish(message) -> str | None``: send a message to every other server of the
  namespace; return the message's offset when the transport has one (a stream entry
  id, used by connection state recovery), else None. It may block the calling
  greenlet (gevent) but must not raise for transport failures: log them.
- ``do_publish_response(requester_uid, response)``: send a response to one server.

and calls back into the base with what arrives:

- ``on_message(message, offset=None)`` for every message (responses included);
- ``on_response(response)`` when the transport delivers responses on their own.

The base then does the rest: broadcasts (with acks from many servers), sockets_join /
sockets_leave / disconnect_sockets, fetch_sockets, server_side_emit with acks, the
request bookkeeping and its timeouts, and (with heartbeats) the server count. The
local part of every operation is :class:`~roomcast.adapter.InMemoryAdapter`'s, so the
local fan-out is the same compiled path as on a single server.

:class:`RequestTable` and :class:`PendingRequest` are the request bookkeeping on their
own, for an adapter with another wire format (the classic Redis adapter uses them).
"""
from __future__ import annotations

import logging
import secrets
from time import monotonic
from typing import TYPE_CHECKING, Any, Callable, Iterable

import gevent
from gevent.event import Event

from roomcast import metrics
from roomcast.adapter import BroadcastFlags, BroadcastOptions, InMemoryAdapter, _socket_rooms
from roomcast.adapters._protocol import (  # noqa: F401  (the cluster vocabulary, re-exported)
    EMITTER_UID, EVENT, MAY_CONTAIN_BINARY, RESPONSE_TYPES, MessageType, answer_once,
    count_unreached_servers, has_binary, log_not_sent, log_refused, refusal)
from roomcast.operators import RemoteSocket

if TYPE_CHECKING:
    from roomcast.namespace import Namespace

log = logging.getLogger("roomcast.cluster")

__all__ = [
    "ClusterAdapter", "ClusterAdapterWithHeartbeat", "MessageType", "PendingRequest",
    "RequestTable", "EMITTER_UID", "EVENT", "flags_to_wire", "flags_from_wire",
    "opts_to_wire", "opts_from_wire", "check_intersection", "socket_details", "sockets_payload", "has_binary",
    "random_id", "should_include_packet",
]

DEFAULT_REQUESTS_TIMEOUT = 5.0


def random_id() -> str:
    """16 hex characters, as ClusterAdapter's ``randomId()``."""
    return secrets.token_hex(8)


# -- options and sockets on the wire ---------------------------------------------------

def flags_to_wire(flags: BroadcastFlags) -> dict:
    """Node's BroadcastFlags object: only the flags that were set, timeout in ms."""
    wire: dict = {}
    if flags.volatile:
        wire["volatile"] = True
    if not flags.compress:
        wire["compress"] = False
    if flags.timeout is not None:
        wire["timeout"] = int(round(flags.timeout * 1000))
    if flags.expect_single_response:
        wire["expectSingleResponse"] = True
    return wire


def flags_from_wire(wire: Any) -> BroadcastFlags:
    if not isinstance(wire, dict) or not wire:
        return BroadcastFlags()
    timeout = wire.get("timeout")
    return BroadcastFlags(
        volatile=bool(wire.get("volatile", False)),
        compress=wire.get("compress", True) is not False,
        timeout=timeout / 1000 if isinstance(timeout, (int, float)) else None,
        expect_single_response=bool(wire.get("expectSingleResponse", False)),
    )


def opts_to_wire(opts: BroadcastOptions, with_flags: bool = True) -> dict:
    """``{rooms, except, flags}`` as ClusterAdapter's ``encodeOptions``. An intersection
    travels in "intersect", a field Node's adapters ignore (a Node server would deliver
    to the union of the rooms: see check_intersection)."""
    wire: dict = {"rooms": list(opts.rooms), "except": list(opts.except_)}
    if with_flags:
        wire["flags"] = flags_to_wire(opts.flags)
    if opts.intersect:
        wire["intersect"] = list(opts.intersect)
    return wire


class IllFormedMessage(ValueError):
    """A cluster message in a valid encoding but of the wrong shape (ignored, logged)."""


_SCALARS = (str, int, float)


def rooms_from_wire(value: Any) -> list:
    """A list of room names from another server (IllFormedMessage when it is not one)."""
    if not value:
        return []
    if not isinstance(value, (list, tuple)) or not all(isinstance(r, _SCALARS) for r in value):
        raise IllFormedMessage(f"rooms must be a list of names, not {type(value).__name__}")
    return list(value)


def check_ids(message: dict) -> None:
    """The fields a request is dispatched or looked up on must be scalars (IllFormedMessage)."""
    for key in ("type", "requestId", "uid", "sid", "room"):
        value = message.get(key)
        if value is not None and not isinstance(value, _SCALARS):
            raise IllFormedMessage(f"{key} must be a scalar, not {type(value).__name__}")


def opts_from_wire(wire: Any, with_flags: bool = False) -> BroadcastOptions:
    """Options received from another server; flags (never ``local``) only ``with_flags``.
    Rooms that are not a list of names raise IllFormedMessage."""
    wire = wire if isinstance(wire, dict) else {}
    return BroadcastOptions(frozenset(rooms_from_wire(wire.get("rooms"))),
                            frozenset(rooms_from_wire(wire.get("except"))),
                            flags_from_wire(wire.get("flags")) if with_flags else BroadcastFlags(),
                            frozenset(rooms_from_wire(wire.get("intersect"))))


def check_intersection(opts: BroadcastOptions, allowed: bool) -> None:
    """Refuse a cluster-wide intersection unless the adapter was told that every server
    of the cluster is roomcast (``allow_intersections=True``)."""
    if opts.intersect and not allowed and not opts.flags.local:
        raise ValueError(
            "intersect() across a cluster needs the adapter created with allow_intersections=True "
            "(only when every server of the cluster is roomcast: a Node server ignores the "
            "intersection and delivers to every socket of the rooms)")


def socket_details(socket: Any) -> dict:
    """A local socket as fetchSockets answers carry it: {id, handshake, rooms, data}."""
    handshake = {k: v for k, v in socket.handshake.items() if k != "sessionStore"}
    return {"id": socket.id, "handshake": handshake, "rooms": list(socket.rooms), "data": socket.data}


def sockets_payload(sockets: list, encoder: Callable[[Any], bytes]) -> list[dict]:
    """The fetch_sockets answer for local sockets; a socket.data that ``encoder`` cannot
    hold is sent as null (and logged) rather than failing the whole answer."""
    details = [socket_details(s) for s in sockets]
    for d in details:
        try:
            encoder(d["data"])
        except (TypeError, ValueError) as exc:
            log.warning("cluster: socket.data of %s not serialisable for fetch_sockets (%s); sent as null",
                        d["id"], exc)
            d["data"] = None
    return details


def should_include_packet(session_rooms: Iterable, opts: dict) -> bool:
    """Whether a stored broadcast (``opts`` as on the wire) reached a socket in these rooms."""
    rooms = opts.get("rooms") or ()
    excluded = opts.get("except") or ()
    session_rooms = list(session_rooms)
    included = not rooms or any(room in rooms for room in session_rooms)
    included = included and all(room in session_rooms for room in opts.get("intersect") or ())
    return included and not any(room in excluded for room in session_rooms)


# -- request bookkeeping ---------------------------------------------------------------

class PendingRequest:
    """A request waiting for other servers: complete after ``expected`` answers, or,
    when ``missing`` (server uids) is given, once each of those servers answered."""

    __slots__ = ("kind", "expected", "received", "responses", "missing", "done")

    def __init__(self, kind: int, expected: int, responses: Any, missing: set | None = None) -> None:
        self.kind = kind
        self.expected = expected if missing is None else len(missing)
        self.received = 0
        self.responses = responses     # a list or a set, extended by the caller
        self.missing = missing
        self.done = Event()
        if self.expected <= 0:
            self.done.set()

    def answered(self, sender: str | None = None) -> None:
        """Count one answer (``sender``: the server uid, for ``missing``)."""
        self.received += 1
        if self.missing is not None:
            self.missing.discard(sender)
            complete = not self.missing
        else:
            complete = self.received >= self.expected
        if complete:
            self.done.set()

    def shortfall(self) -> str:
        if self.missing is not None:
            return f"missing {len(self.missing)} responses"
        return f"only {self.received} responses received out of {self.expected}"


class RequestTable:
    """The requests of one adapter that wait for answers, and the callbacks of its
    broadcasts with acks, by request id."""

    def __init__(self, make_id: Callable[[], str] = random_id) -> None:
        self.make_id = make_id
        self.requests: dict[str, PendingRequest] = {}
        self.acks: dict[str, tuple[Callable[[int], None], Callable[..., None]]] = {}

    def open(self, kind: int, expected: int, responses: Any,
             missing: set | None = None) -> tuple[str, PendingRequest]:
        request_id = self.make_id()
        request = PendingRequest(kind, expected, responses, missing)
        self.requests[request_id] = request
        return request_id, request

    def get(self, request_id: Any) -> PendingRequest | None:
        return self.requests.get(request_id) if isinstance(request_id, str) else None

    def wait(self, request_id: str, timeout: float) -> PendingRequest:
        """Wait (at most ``timeout`` seconds) for a request's answers; it is closed after."""
        request = self.requests[request_id]
        try:
            request.done.wait(timeout)
        finally:
            self.requests.pop(request_id, None)
        return request

    def add_acks(self, client_count: Callable[[int], None], ack: Callable[..., None],
                 lifetime: float) -> str:
        """Register a broadcast's ack callbacks for ``lifetime`` seconds (there is no way to
        know when every client of every server answered: they are simply dropped then)."""
        request_id = self.make_id()
        self.acks[request_id] = (client_count, ack)
        gevent.spawn_later(lifetime, self.acks.pop, request_id, None)
        return request_id

    def publish_acks(self, client_count: Callable[[int], None], ack: Callable[..., None],
                     lifetime: float, publish: Callable[[str], bool],
                     server_count: Callable[[], int]) -> None:
        """The cluster part of a broadcast with acks: its callbacks registered (add_acks),
        then ``publish(request_id)`` sends the request to the other servers. When it could
        not (False: the data cannot be encoded, logged), the callbacks go and the other
        servers count as having no recipients, so the acks complete with this server's."""
        request_id = self.add_acks(client_count, ack, lifetime)
        if not publish(request_id):
            self.acks.pop(request_id, None)
            count_unreached_servers(server_count(), client_count)

    def on_client_count(self, request_id: Any, count: Any) -> bool:
        callbacks = self.acks.get(request_id) if isinstance(request_id, str) else None
        if callbacks is None:
            return False
        # user callbacks run in their own greenlet, never in the transport's reader
        gevent.spawn(callbacks[0], int(count or 0))
        return True

    def on_ack(self, request_id: Any, value: Any) -> bool:
        callbacks = self.acks.get(request_id) if isinstance(request_id, str) else None
        if callbacks is None:
            return False
        gevent.spawn(callbacks[1], value)
        return True

    def close(self) -> None:
        for request in self.requests.values():
            request.done.set()
        self.requests.clear()
        self.acks.clear()


def ack_lifetime(opts: BroadcastOptions, requests_timeout: float) -> float:
    """How long the acks of other servers are counted: as long as the caller waits."""
    return opts.flags.timeout if opts.flags.timeout is not None else max(60.0, requests_timeout)


def finish_server_side_emit(request: PendingRequest, still_expected: int,
                            ack: Callable[..., None]) -> None:
    """Call a server-side emit's callback with the answers of ``request``: an error only
    when fewer answered than the servers still in the cluster (a server that left
    meanwhile is not waited for)."""
    responses = list(request.responses)
    if not request.done.is_set() and len(responses) < still_expected:
        if metrics.active is not None:
            metrics.active.timeout("cluster")
        ack(TimeoutError(f"timeout reached: {request.shortfall()}"), responses)
    else:
        ack(None, responses)


# -- the adapters ----------------------------------------------------------------------

class ClusterAdapter(InMemoryAdapter):
    """A namespace's adapter in a cluster of servers (Node's ``ClusterAdapter``).

    Subclasses implement :meth:`do_publish` and :meth:`do_publish_response`, call
    :meth:`on_message` / :meth:`on_response` with what they receive, and give
    :meth:`server_count` (how many servers have this namespace, this one included).

    ``requests_timeout`` (seconds, default 5): how long fetch_sockets and
    server_side_emit with an ack wait for the other servers. A request whose servers
    do not all answer in time completes with the answers it got (fetch_sockets logs a
    warning; server_side_emit reports a TimeoutError unless the missing servers left).
    """

    def __init__(self, nsp: "Namespace", *, requests_timeout: float = DEFAULT_REQUESTS_TIMEOUT,
                 uid: str | None = None, allow_intersections: bool = False) -> None:
        super().__init__(nsp)
        # intersect() operations go to the cluster only when every server is roomcast
        self.allow_intersections = bool(allow_intersections)
        self.uid: str = uid or random_id()
        self.requests_timeout = float(requests_timeout)
        self.requests = RequestTable()

    # -- what a transport provides ------------------------------------------------------

    def do_publish(self, message: dict) -> str | None:
        """Send ``message`` to the other servers; its offset, if the transport has one."""
        raise NotImplementedError

    def do_publish_response(self, requester_uid: str, response: dict) -> None:
        """Send ``response`` to the server ``requester_uid``."""
        raise NotImplementedError

    def do_publish_then(self, message: dict, then: Callable[[str | None], None]) -> None:
        """Send ``message``, then call ``then(offset)``. The default publishes and calls
        ``then`` at once; a transport that publishes in the background (the Redis Streams
        adapter) calls ``then`` once the message is out, in publishing order. Broadcasts,
        sockets_join/leave and disconnect_sockets apply their local part in ``then``, so
        that this server applies them in the order the cluster sees them."""
        then(self.do_publish(message))

    def close(self) -> None:
        self.requests.close()
        super().close()

    # -- publishing -------------------------------------------------------------------

    def publish(self, type_: int, data: dict | None = None) -> str | None:
        """Stamp a message with this server's uid and namespace and send it."""
        message: dict = {"type": int(type_)}
        if data is not None:
            message["data"] = data
        message["uid"] = self.uid
        message["nsp"] = self.nsp.name
        return self.do_publish(message)

    def publish_then(self, type_: int, data: dict, then: Callable[[str | None], None]) -> None:
        message = {"type": int(type_), "data": data, "uid": self.uid, "nsp": self.nsp.name}
        self.do_publish_then(message, then)

    def publish_response(self, requester_uid: str, type_: int, data: dict) -> None:
        self.do_publish_response(requester_uid, {"type": int(type_), "data": data,
                                                 "uid": self.uid, "nsp": self.nsp.name})

    # -- connection state recovery ----------------------------------------------------

    def _recovery_enabled(self) -> bool:
        return getattr(self.nsp.server, "connection_state_recovery", None) is not None

    def add_offset_if_necessary(self, packet: dict, opts: BroadcastOptions, offset: str | None) -> dict:
        """The packet with ``offset`` appended to its data when recovery is on and it is
        a recoverable broadcast (an EVENT without ack id, not volatile)."""
        if (offset and packet.get("type", EVENT) == EVENT and packet.get("id") is None
                and not opts.flags.volatile and self._recovery_enabled()):
            return dict(packet, data=[*packet["data"], offset])
        return packet

    # -- broadcasting -----------------------------------------------------------------

    @staticmethod
    def wire_packet(packet: dict) -> dict:
        # ClusterAdapter publishes the packet before the nsp is set on it
        return {"type": packet.get("type", EVENT), "data": packet["data"]}

    def broadcast(self, packet: dict, opts: BroadcastOptions) -> None:
        check_intersection(opts, self.allow_intersections)
        if opts.flags.local:
            InMemoryAdapter.broadcast(self, packet, opts)
            return
        delivered = False

        def deliver(offset: str | None) -> None:
            nonlocal delivered
            delivered = True
            InMemoryAdapter.broadcast(self, self.add_offset_if_necessary(packet, opts, offset), opts)

        try:
            self.publish_then(MessageType.BROADCAST, {"packet": self.wire_packet(packet),
                                                      "opts": opts_to_wire(opts)}, deliver)
        except (TypeError, ValueError) as exc:   # data the transport cannot encode
            if delivered:
                raise                            # nor can the local fan-out: the caller's error
            log_not_sent(log, packet, exc)       # costs the other servers only
            InMemoryAdapter.broadcast(self, packet, opts)

    def broadcast_with_ack(self, packet: dict, opts: BroadcastOptions,
                           client_count_callback: Callable[[int], None],
                           ack: Callable[..., None]) -> None:
        check_intersection(opts, self.allow_intersections)
        if not opts.flags.local:
            def publish(request_id: str) -> bool:
                try:
                    self.publish(MessageType.BROADCAST, {"packet": self.wire_packet(packet),
                                                         "requestId": request_id, "opts": opts_to_wire(opts)})
                except (TypeError, ValueError) as exc:
                    log_not_sent(log, packet, exc)
                    return False
                return True
            self.requests.publish_acks(client_count_callback, ack,
                                       ack_lifetime(opts, self.requests_timeout), publish, self.server_count)
        InMemoryAdapter.broadcast_with_ack(self, packet, opts, client_count_callback, ack)

    # -- operations on sockets of every server ------------------------------------------

    def add_sockets(self, opts: BroadcastOptions, rooms: Iterable) -> None:
        check_intersection(opts, self.allow_intersections)
        rooms = _socket_rooms(rooms)
        if opts.flags.local:
            InMemoryAdapter.add_sockets(self, opts, rooms)
        else:
            self.publish_then(MessageType.SOCKETS_JOIN, {"opts": opts_to_wire(opts), "rooms": rooms},
                              lambda _: InMemoryAdapter.add_sockets(self, opts, rooms))

    def del_sockets(self, opts: BroadcastOptions, rooms: Iterable) -> None:
        check_intersection(opts, self.allow_intersections)
        rooms = _socket_rooms(rooms)
        if opts.flags.local:
            InMemoryAdapter.del_sockets(self, opts, rooms)
        else:
            self.publish_then(MessageType.SOCKETS_LEAVE, {"opts": opts_to_wire(opts), "rooms": rooms},
                              lambda _: InMemoryAdapter.del_sockets(self, opts, rooms))

    def disconnect_sockets(self, opts: BroadcastOptions, close: bool) -> None:
        check_intersection(opts, self.allow_intersections)
        if opts.flags.local:
            InMemoryAdapter.disconnect_sockets(self, opts, close)
        else:
            self.publish_then(MessageType.DISCONNECT_SOCKETS, {"opts": opts_to_wire(opts), "close": bool(close)},
                              lambda _: InMemoryAdapter.disconnect_sockets(self, opts, close))

    def _expected_responders(self) -> tuple[int, set | None]:
        """How many servers must answer a request, and (with heartbeats) which."""
        return self.server_count() - 1, None

    def fetch_sockets(self, opts: BroadcastOptions) -> list:
        check_intersection(opts, self.allow_intersections)
        local = InMemoryAdapter.fetch_sockets(self, opts)
        if opts.flags.local:
            return local
        expected, missing = self._expected_responders()
        if expected <= 0:
            return local
        request_id, request = self.requests.open(MessageType.FETCH_SOCKETS, expected, list(local), missing)
        self.publish(MessageType.FETCH_SOCKETS, {"opts": opts_to_wire(opts), "requestId": request_id})
        self.requests.wait(request_id, opts.flags.timeout or self.requests_timeout)
        if not request.done.is_set():
            # a server left (or is stuck): complete with what answered
            if metrics.active is not None:
                metrics.active.timeout("cluster")
            log.warning("cluster: fetch_sockets on %s: %d of %d servers answered within %.1fs",
                        self.nsp.name, request.received, request.expected,
                        opts.flags.timeout or self.requests_timeout)
        return request.responses

    def server_side_emit(self, packet: list, ack: Callable | None = None) -> None:
        if ack is None:
            self.publish(MessageType.SERVER_SIDE_EMIT, {"packet": packet})
            return
        expected, missing = self._expected_responders()
        if expected <= 0:
            ack(None, [])
            return
        request_id, request = self.requests.open(MessageType.SERVER_SIDE_EMIT, expected, [], missing)
        self.publish(MessageType.SERVER_SIDE_EMIT, {"requestId": request_id, "packet": packet})

        def finish() -> None:
            self.requests.wait(request_id, self.requests_timeout)
            finish_server_side_emit(request, self._expected_responders()[0], ack)

        gevent.spawn(finish)

    # -- receiving --------------------------------------------------------------------

    def accepts(self, message: Any) -> bool:
        """A well-formed message of another server (or an emitter) for this namespace."""
        return (isinstance(message, dict) and message.get("uid") != self.uid
                and message.get("nsp") == self.nsp.name)

    def on_message(self, message: dict, offset: str | None = None) -> None:
        """Handle a message of another server; ``offset``: its transport offset, if any."""
        if not self.accepts(message):
            return
        kind = message.get("type")
        body = message.get("data") if isinstance(message.get("data"), dict) else {}
        sender = message.get("uid")
        if kind == MessageType.BROADCAST:
            self._on_broadcast(sender, body, offset)
        elif kind == MessageType.SOCKETS_JOIN:
            InMemoryAdapter.add_sockets(self, opts_from_wire(body.get("opts")),
                                        _socket_rooms(body.get("rooms") or []))
        elif kind == MessageType.SOCKETS_LEAVE:
            InMemoryAdapter.del_sockets(self, opts_from_wire(body.get("opts")),
                                        _socket_rooms(body.get("rooms") or []))
        elif kind == MessageType.DISCONNECT_SOCKETS:
            InMemoryAdapter.disconnect_sockets(self, opts_from_wire(body.get("opts")),
                                               bool(body.get("close")))
        elif kind == MessageType.FETCH_SOCKETS:
            sockets = InMemoryAdapter.fetch_sockets(self, opts_from_wire(body.get("opts")))
            self.publish_response(sender, MessageType.FETCH_SOCKETS_RESPONSE, {
                "requestId": body.get("requestId"),
                "sockets": sockets_payload(sockets, self.encode_value)})
        elif kind == MessageType.SERVER_SIDE_EMIT:
            self._on_server_side_emit(sender, body)
        elif kind in RESPONSE_TYPES:
            # transports may not tell messages and responses apart
            self.on_response(message)

    def encode_value(self, value: Any) -> bytes:
        """Serialise a user value as this transport would (raises for what it cannot
        carry); used to check socket.data before answering fetch_sockets."""
        from roomcast import _notepack

        return _notepack.encode(value)

    def _on_broadcast(self, sender: Any, body: dict, offset: str | None) -> None:
        packet = body.get("packet")
        reason = refusal(packet)
        if reason is not None:
            log_refused(log, f"from {sender} on {self.nsp.name}", reason)
            return
        local_packet = {"type": packet.get("type", EVENT), "data": packet["data"], "nsp": self.nsp.name}
        request_id = body.get("requestId")
        if request_id is None:
            if self.nsp.sockets:
                opts = opts_from_wire(body.get("opts"), with_flags=True)
                InMemoryAdapter.broadcast(self, self.add_offset_if_necessary(local_packet, opts, offset), opts)
            return

        def client_count(count: int) -> None:
            self.publish_response(sender, MessageType.BROADCAST_CLIENT_COUNT,
                                  {"requestId": request_id, "clientCount": count})

        def ack(*args: Any) -> None:
            self.publish_response(sender, MessageType.BROADCAST_ACK,
                                  {"requestId": request_id, "packet": args[0] if args else None})

        InMemoryAdapter.broadcast_with_ack(self, local_packet, opts_from_wire(body.get("opts")),
                                           client_count, ack)

    def _on_server_side_emit(self, sender: Any, body: dict) -> None:
        packet = body.get("packet")
        if not isinstance(packet, list) or not packet:
            return
        request_id = body.get("requestId")
        if request_id is None:
            self.nsp._on_server_side_emit(packet)
            return
        self.nsp._on_server_side_emit(packet, answer_once(
            lambda answer: self.publish_response(sender, MessageType.SERVER_SIDE_EMIT_RESPONSE,
                                                 {"requestId": request_id, "packet": answer})))

    def on_response(self, response: dict) -> None:
        """Handle a response to one of this server's requests."""
        if not isinstance(response, dict):
            return
        kind = response.get("type")
        body = response.get("data") if isinstance(response.get("data"), dict) else {}
        request_id = body.get("requestId")
        if kind == MessageType.BROADCAST_CLIENT_COUNT:
            self.requests.on_client_count(request_id, body.get("clientCount"))
        elif kind == MessageType.BROADCAST_ACK:
            self.requests.on_ack(request_id, body.get("packet"))
        elif kind == MessageType.FETCH_SOCKETS_RESPONSE:
            request = self.requests.get(request_id)
            if request is not None:
                request.responses.extend(RemoteSocket(self, d) for d in body.get("sockets") or ()
                                         if isinstance(d, dict) and "id" in d)
                request.answered(response.get("uid"))
        elif kind == MessageType.SERVER_SIDE_EMIT_RESPONSE:
            request = self.requests.get(request_id)
            if request is not None:
                request.responses.append(body.get("packet"))
                request.answered(response.get("uid"))


class ClusterAdapterWithHeartbeat(ClusterAdapter):
    """A cluster adapter that counts the servers itself (Node's
    ``ClusterAdapterWithHeartbeat``), for transports that cannot.

    Each server publishes a HEARTBEAT when it has published nothing for
    ``heartbeat_interval`` seconds (default 5), announces itself with an
    INITIAL_HEARTBEAT (answered with a HEARTBEAT by the others) and leaves with
    ADAPTER_CLOSE; a server not heard from for ``heartbeat_timeout`` seconds (default
    10) is taken for gone. ``server_count()`` is 1 + the servers heard from, and
    requests wait for an answer from each of those servers.
    """

    def __init__(self, nsp: "Namespace", *, heartbeat_interval: float = 5.0,
                 heartbeat_timeout: float = 10.0, **options: Any) -> None:
        super().__init__(nsp, **options)
        self.heartbeat_interval = float(heartbeat_interval)
        self.heartbeat_timeout = float(heartbeat_timeout)
        self.nodes: dict[str, float] = {}    # uid -> when last heard from (monotonic)
        self._last_publish = 0.0
        self._timer: gevent.Greenlet | None = None

    def init(self) -> None:
        super().init()
        self.publish(MessageType.INITIAL_HEARTBEAT)
        self._timer = gevent.spawn(self._heartbeat_loop)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.kill(block=False)
            self._timer = None
            self.publish(MessageType.ADAPTER_CLOSE)
        super().close()

    def _heartbeat_loop(self) -> None:
        tick = min(1.0, self.heartbeat_interval)
        while True:
            gevent.sleep(tick)
            now = monotonic()
            if now - self._last_publish >= self.heartbeat_interval:
                self.publish(MessageType.HEARTBEAT)
            for uid, seen in list(self.nodes.items()):
                if now - seen > self.heartbeat_timeout:
                    log.info("cluster: server %s of %s seems down", uid, self.nsp.name)
                    self.remove_node(uid)

    def remove_node(self, uid: str) -> None:
        """Forget a server; the requests that waited for it complete without it."""
        self.nodes.pop(uid, None)
        for request in list(self.requests.requests.values()):
            if request.missing is not None and uid in request.missing:
                request.answered(uid)

    def publish(self, type_: int, data: dict | None = None) -> str | None:
        self._last_publish = monotonic()
        return super().publish(type_, data)

    def publish_then(self, type_: int, data: dict, then: Callable[[str | None], None]) -> None:
        self._last_publish = monotonic()
        super().publish_then(type_, data, then)

    def server_count(self) -> int:
        return 1 + len(self.nodes)

    def _expected_responders(self) -> tuple[int, set | None]:
        return len(self.nodes), set(self.nodes)

    def on_message(self, message: dict, offset: str | None = None) -> None:
        if not isinstance(message, dict) or message.get("uid") == self.uid:
            return
        sender = message.get("uid")
        if isinstance(sender, str) and sender != EMITTER_UID and message.get("nsp") == self.nsp.name:
            self.nodes[sender] = monotonic()
        kind = message.get("type")
        if kind == MessageType.INITIAL_HEARTBEAT:
            if message.get("nsp") == self.nsp.name:
                self.publish(MessageType.HEARTBEAT)
        elif kind == MessageType.HEARTBEAT:
            pass
        elif kind == MessageType.ADAPTER_CLOSE:
            if isinstance(sender, str):
                self.remove_node(sender)
        else:
            super().on_message(message, offset)

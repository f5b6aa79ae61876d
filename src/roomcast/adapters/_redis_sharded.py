"""ShardedRedisAdapter: Redis 7 sharded pub/sub (SSUBSCRIBE / SPUBLISH), wire-compatible
with Node's ``createShardedAdapter`` (@socket.io/redis-adapter 8.x, on socket.io-adapter's
ClusterAdapter). Select it with ``RedisAdapter.factory(redis, sharded=True)``.

Messages are ``{type, data, uid, nsp}`` (MessageType 1-13, node-socketio.md §4), JSON,
or notepack when the payload holds binary. Channels: ``<key>#<nsp>#`` for everything,
``<key>#<nsp>#<uid>#`` for the responses to this server, and ``<key>#<nsp>#<room>#``
for a broadcast without ack to exactly one room, according to ``subscription_mode``:
"dynamic" (public rooms, i.e. not socket ids; on publish, a 20-character room is taken
for a socket id), "dynamic-private" (every room) or "static" (none). With the dynamic
modes this server subscribes to the channel of each local room while it exists, so
Redis itself filters out the broadcasts that it has no recipient for.
"""
from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, Any, Callable, Iterable

import gevent
from gevent.event import Event

from roomcast import _notepack
from roomcast.adapter import BroadcastOptions, InMemoryAdapter, _socket_rooms
from roomcast.adapters import _protocol as proto
from roomcast.adapters._hub import RedisHub
from roomcast.adapters.redis import flags_to_wire, opts_from_wire, sockets_payload
from roomcast.operators import RemoteSocket

if TYPE_CHECKING:
    from roomcast.namespace import Namespace

log = logging.getLogger("roomcast.redis")

# socket.io-adapter ClusterAdapter MessageType
INITIAL_HEARTBEAT, HEARTBEAT, BROADCAST, SOCKETS_JOIN, SOCKETS_LEAVE, DISCONNECT_SOCKETS, \
    FETCH_SOCKETS, FETCH_SOCKETS_RESPONSE, SERVER_SIDE_EMIT, SERVER_SIDE_EMIT_RESPONSE, \
    BROADCAST_CLIENT_COUNT, BROADCAST_ACK, ADAPTER_CLOSE = range(1, 14)

_MAY_CONTAIN_BINARY = frozenset({BROADCAST, BROADCAST_ACK, FETCH_SOCKETS_RESPONSE,
                                 SERVER_SIDE_EMIT, SERVER_SIDE_EMIT_RESPONSE})
SUBSCRIPTION_MODES = ("dynamic", "dynamic-private", "static")


def has_binary(value: Any) -> bool:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return True
    if isinstance(value, (list, tuple)):
        return any(has_binary(v) for v in value)
    if isinstance(value, dict):
        return any(has_binary(v) for v in value.values())
    return False


def looks_like_a_socket_id(room: Any) -> bool:
    return isinstance(room, str) and len(room) == 20


class _Pending:
    __slots__ = ("expected", "received", "responses", "done")

    def __init__(self, expected: int, responses: list) -> None:
        self.expected = expected
        self.received = 0
        self.responses = responses
        self.done = Event()


class ShardedRedisAdapter(InMemoryAdapter):
    """One namespace on sharded pub/sub."""

    def __init__(self, nsp: "Namespace", hub: RedisHub, *, key: str = "socket.io",
                 requests_timeout: float = 5.0, subscription_mode: str = "dynamic") -> None:
        if subscription_mode not in SUBSCRIPTION_MODES:
            raise ValueError(f"subscription_mode must be one of {SUBSCRIPTION_MODES}")
        super().__init__(nsp)
        self.hub = hub
        self.uid = secrets.token_hex(8)
        self.key = key
        self.requests_timeout = float(requests_timeout)
        self.subscription_mode = subscription_mode
        self.channel = f"{key}#{nsp.name}#"
        self.response_channel = f"{self.channel}{self.uid}#"
        self._requests: dict[str, _Pending] = {}
        self._ack_requests: dict[str, tuple[Callable, Callable]] = {}
        self._room_channels: set[str] = set()
        self._closed = False

    # -- lifetime ---------------------------------------------------------------------

    def init(self) -> None:
        self.hub.acquire()
        self.hub.ssubscribe([self.channel], self._on_raw_message)
        self.hub.ssubscribe([self.response_channel], self._on_raw_response)
        if self.subscription_mode != "static":
            self.on("create-room", self._on_create_room)
            self.on("delete-room", self._on_delete_room)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.hub.unsubscribe(shard_channels=[self.channel, self.response_channel,
                                             *self._room_channels])
        self._room_channels.clear()
        self.hub.release()
        for pending in self._requests.values():
            pending.done.set()
        super().close()

    def _separate_channel(self, room: Any) -> bool:
        if self.subscription_mode == "dynamic-private":
            return True
        return self.subscription_mode == "dynamic" and room not in self._slot_of  # public room

    def _on_create_room(self, room: Any) -> None:
        if self._separate_channel(room):
            channel = f"{self.channel}{room}#"
            self._room_channels.add(channel)
            self.hub.ssubscribe([channel], self._on_raw_message)

    def _on_delete_room(self, room: Any) -> None:
        channel = f"{self.channel}{room}#"
        if channel in self._room_channels:
            self._room_channels.discard(channel)
            self.hub.unsubscribe(shard_channels=[channel])

    def server_count(self) -> int:
        return max(1, self.hub.numsub(self.channel, shard=True))

    # -- publishing ---------------------------------------------------------------------

    @staticmethod
    def _encode(message: dict) -> bytes:
        if message["type"] in _MAY_CONTAIN_BINARY and has_binary(message.get("data")):
            return _notepack.encode(message)
        return proto.dumps_json(message)

    def _publish(self, type_: int, data: dict | None = None, channel: str | None = None) -> None:
        message: dict = {"type": type_}
        if data is not None:
            message["data"] = data
        message["uid"] = self.uid
        message["nsp"] = self.nsp.name
        self.hub.spublish(channel or self.channel, self._encode(message))

    def _publish_response(self, requester: str, type_: int, data: dict) -> None:
        self._publish(type_, data, channel=f"{self.channel}{requester}#")

    @staticmethod
    def _wire_opts(opts: BroadcastOptions) -> dict:
        return {"rooms": list(opts.rooms), "except": list(opts.except_),
                "flags": flags_to_wire(opts.flags)}

    @staticmethod
    def _wire_packet(packet: dict) -> dict:
        # ClusterAdapter publishes the packet before the nsp is set on it
        return {"type": packet.get("type", proto.EVENT), "data": packet["data"]}

    # -- broadcasting ---------------------------------------------------------------------

    def broadcast(self, packet: dict, opts: BroadcastOptions) -> None:
        if not opts.flags.local:
            channel = self.channel
            if len(opts.rooms) == 1:
                room = next(iter(opts.rooms))
                if self.subscription_mode == "dynamic-private" or (
                        self.subscription_mode == "dynamic" and not looks_like_a_socket_id(room)):
                    channel = f"{self.channel}{room}#"
            self._publish(BROADCAST, {"packet": self._wire_packet(packet),
                                      "opts": self._wire_opts(opts)}, channel)
        InMemoryAdapter.broadcast(self, packet, opts)

    def broadcast_with_ack(self, packet: dict, opts: BroadcastOptions,
                           client_count_callback: Callable[[int], None],
                           ack: Callable[..., None]) -> None:
        if not opts.flags.local:
            request_id = secrets.token_hex(8)
            self._ack_requests[request_id] = (client_count_callback, ack)
            self._publish(BROADCAST, {"packet": self._wire_packet(packet), "requestId": request_id,
                                      "opts": self._wire_opts(opts)})
            lifetime = opts.flags.timeout if opts.flags.timeout is not None \
                else max(60.0, self.requests_timeout)
            gevent.spawn_later(lifetime, self._ack_requests.pop, request_id, None)
        InMemoryAdapter.broadcast_with_ack(self, packet, opts, client_count_callback, ack)

    def add_sockets(self, opts: BroadcastOptions, rooms: Iterable) -> None:
        rooms = _socket_rooms(rooms)
        if not opts.flags.local:
            self._publish(SOCKETS_JOIN, {"opts": self._wire_opts(opts), "rooms": rooms})
        InMemoryAdapter.add_sockets(self, opts, rooms)

    def del_sockets(self, opts: BroadcastOptions, rooms: Iterable) -> None:
        rooms = _socket_rooms(rooms)
        if not opts.flags.local:
            self._publish(SOCKETS_LEAVE, {"opts": self._wire_opts(opts), "rooms": rooms})
        InMemoryAdapter.del_sockets(self, opts, rooms)

    def disconnect_sockets(self, opts: BroadcastOptions, close: bool) -> None:
        if not opts.flags.local:
            self._publish(DISCONNECT_SOCKETS, {"opts": self._wire_opts(opts), "close": bool(close)})
        InMemoryAdapter.disconnect_sockets(self, opts, close)

    # -- requests ---------------------------------------------------------------------------

    def _wait(self, request_id: str, pending: _Pending) -> None:
        try:
            pending.done.wait(self.requests_timeout)
        finally:
            self._requests.pop(request_id, None)

    def fetch_sockets(self, opts: BroadcastOptions) -> list:
        local = InMemoryAdapter.fetch_sockets(self, opts)
        if opts.flags.local:
            return local
        expected = self.server_count() - 1
        if expected <= 0:
            return local
        request_id = secrets.token_hex(8)
        pending = _Pending(expected, list(local))
        self._requests[request_id] = pending
        self._publish(FETCH_SOCKETS, {"opts": self._wire_opts(opts), "requestId": request_id})
        self._wait(request_id, pending)
        if not pending.done.is_set():
            # a server left (or is stuck): complete with what answered
            log.warning("redis: fetch_sockets: %d of %d servers answered within %.1fs",
                        pending.received, pending.expected, self.requests_timeout)
        return pending.responses

    def server_side_emit(self, packet: list, ack: Callable | None = None) -> None:
        if ack is None:
            self._publish(SERVER_SIDE_EMIT, {"packet": packet})
            return
        expected = self.server_count() - 1
        if expected <= 0:
            ack(None, [])
            return
        request_id = secrets.token_hex(8)
        pending = _Pending(expected, [])
        self._requests[request_id] = pending
        self._publish(SERVER_SIDE_EMIT, {"requestId": request_id, "packet": packet})
        gevent.spawn(self._finish_server_side_emit, request_id, pending, ack)

    def _finish_server_side_emit(self, request_id: str, pending: _Pending, ack: Callable) -> None:
        self._wait(request_id, pending)
        responses = pending.responses
        if not pending.done.is_set() and len(responses) < self.server_count() - 1:
            ack(TimeoutError(f"timeout reached: only {len(responses)} responses received "
                             f"out of {pending.expected}"), responses)
        else:
            ack(None, responses)

    # -- receiving --------------------------------------------------------------------------

    @staticmethod
    def _decode(data: bytes) -> dict | None:
        try:
            message = proto.decode_request(data)
        except (ValueError, TypeError):
            log.warning("redis: malformed sharded message ignored")
            return None
        return message if isinstance(message, dict) else None

    def _on_raw_response(self, channel: str, data: bytes) -> None:
        message = self._decode(data)
        if message is not None:
            self._on_response(message)

    def _on_raw_message(self, channel: str, data: bytes) -> None:
        room = channel[len(self.channel):-1]
        if room and not self.index.has_room(room):
            return   # a room channel of a room we no longer have
        message = self._decode(data)
        if message is None or message.get("uid") == self.uid or message.get("nsp") != self.nsp.name:
            return
        kind = message.get("type")
        body = message.get("data") if isinstance(message.get("data"), dict) else {}
        sender = message.get("uid")
        if kind == BROADCAST:
            packet = body.get("packet")
            if not isinstance(packet, dict) or not isinstance(packet.get("data"), list):
                return
            local_packet = {"type": packet.get("type", proto.EVENT), "data": packet["data"],
                            "nsp": self.nsp.name}
            request_id = body.get("requestId")
            if request_id is None:
                if self.nsp.sockets:
                    InMemoryAdapter.broadcast(self, local_packet, opts_from_wire(body.get("opts"), True))
                return

            def client_count(count: int) -> None:
                self._publish_response(sender, BROADCAST_CLIENT_COUNT,
                                       {"requestId": request_id, "clientCount": count})

            def ack(*args: Any) -> None:
                self._publish_response(sender, BROADCAST_ACK,
                                       {"requestId": request_id, "packet": args[0] if args else None})

            InMemoryAdapter.broadcast_with_ack(self, local_packet, opts_from_wire(body.get("opts")),
                                               client_count, ack)
        elif kind == SOCKETS_JOIN:
            InMemoryAdapter.add_sockets(self, opts_from_wire(body.get("opts")),
                                        _socket_rooms(body.get("rooms") or []))
        elif kind == SOCKETS_LEAVE:
            InMemoryAdapter.del_sockets(self, opts_from_wire(body.get("opts")),
                                        _socket_rooms(body.get("rooms") or []))
        elif kind == DISCONNECT_SOCKETS:
            InMemoryAdapter.disconnect_sockets(self, opts_from_wire(body.get("opts")),
                                               bool(body.get("close")))
        elif kind == FETCH_SOCKETS:
            sockets = InMemoryAdapter.fetch_sockets(self, opts_from_wire(body.get("opts")))
            self._publish_response(sender, FETCH_SOCKETS_RESPONSE, {
                "requestId": body.get("requestId"),
                # binary data is fine here: such answers go as msgpack
                "sockets": sockets_payload(sockets, _notepack.encode)})
        elif kind == SERVER_SIDE_EMIT:
            packet = body.get("packet")
            if not isinstance(packet, list) or not packet:
                return
            request_id = body.get("requestId")
            if request_id is None:
                self.nsp._on_server_side_emit(packet)
                return
            self.nsp._on_server_side_emit(packet, proto.answer_once(
                lambda answer: self._publish_response(sender, SERVER_SIDE_EMIT_RESPONSE,
                                                      {"requestId": request_id, "packet": answer})))
        elif kind in (BROADCAST_CLIENT_COUNT, BROADCAST_ACK, FETCH_SOCKETS_RESPONSE,
                      SERVER_SIDE_EMIT_RESPONSE):
            self._on_response(message)
        # heartbeats and ADAPTER_CLOSE: this adapter counts servers with SHARDNUMSUB

    def _on_response(self, message: dict) -> None:
        kind = message.get("type")
        body = message.get("data") if isinstance(message.get("data"), dict) else {}
        request_id = body.get("requestId")
        if kind in (BROADCAST_CLIENT_COUNT, BROADCAST_ACK):
            callbacks = self._ack_requests.get(request_id)
            if callbacks is None:
                return
            if kind == BROADCAST_CLIENT_COUNT:
                gevent.spawn(callbacks[0], int(body.get("clientCount") or 0))
            else:
                gevent.spawn(callbacks[1], body.get("packet"))
            return
        pending = self._requests.get(request_id)
        if pending is None:
            return
        if kind == FETCH_SOCKETS_RESPONSE:
            pending.responses.extend(RemoteSocket(self, d) for d in body.get("sockets") or ()
                                     if isinstance(d, dict))
        elif kind == SERVER_SIDE_EMIT_RESPONSE:
            pending.responses.append(body.get("packet"))
        else:
            return
        pending.received += 1
        if pending.received >= pending.expected:
            pending.done.set()

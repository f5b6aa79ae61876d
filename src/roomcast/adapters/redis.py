"""RedisAdapter: a Socket.IO cluster over Redis pub/sub, wire-compatible with Node's
``@socket.io/redis-adapter`` 8.x, so roomcast and Node servers can share a cluster::

    import roomcast
    from roomcast.adapters.redis import RedisAdapter

    io = roomcast.Server(adapter=RedisAdapter.factory("redis://127.0.0.1:6379"))

``RedisAdapter.factory(redis, *, key="socket.io", requests_timeout=5.0,
publish_on_specific_response_channel=False, sharded=False, subscription_mode="dynamic")``
takes a URL or a ``redis.Redis`` / ``redis.RedisCluster`` client and returns the
``adapter`` callable of one Server: its namespaces share one subscriber and one
publisher connection. ``sharded=True`` selects the Redis 7 sharded pub/sub variant
(``createShardedAdapter``; see ``_redis_sharded.py``).

The classic protocol (node-socketio.md §4): broadcasts are notepack
``[uid, packet, {rooms, except, flags}]`` on ``<key>#<nsp>#`` (``<key>#<nsp>#<room>#``
for exactly one room; received through ``PSUBSCRIBE <key>#<nsp>#*``); cluster requests
are JSON (msgpack for broadcasts with acks) on ``<key>-request#<nsp>#``, answered on
``<key>-response#<nsp>#`` (or ``…#<uid>#`` with ``publish_on_specific_response_channel``).

Differences from Node, on purpose: sockets_join / sockets_leave / disconnect_sockets
apply to the local sockets at once (Node waits for its own message to come back from
Redis), so they keep working for local clients while Redis is away; and a request
whose servers do not all answer in time (a server left) completes with the answers
it got instead of failing.
"""
from __future__ import annotations

import logging
import secrets
import string
from typing import TYPE_CHECKING, Any, Callable, Iterable

import gevent

from roomcast import _notepack
from roomcast.adapter import BroadcastOptions, InMemoryAdapter, _socket_rooms
from roomcast.adapters import _protocol as proto
from roomcast.adapters._hub import RedisHub
from roomcast.adapters._redis_client import make_client
from roomcast.adapters.cluster import (  # noqa: F401  (flags_*, socket_details: kept importable here)
    IllFormedMessage, PendingRequest, RequestTable, ack_lifetime, check_ids, check_intersection,
    finish_server_side_emit, flags_from_wire, flags_to_wire, opts_from_wire, opts_to_wire,
    rooms_from_wire, socket_details, sockets_payload)
from roomcast.operators import RemoteSocket

if TYPE_CHECKING:
    from roomcast.namespace import Namespace

log = logging.getLogger("roomcast.redis")

__all__ = ["RedisAdapter", "RedisAdapterFactory"]

_ALPHABET = string.ascii_letters + string.digits


def uid(length: int = 6) -> str:
    """A random id like Node's uid2(6)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def glob_escape(text: str) -> str:
    """Escape Redis glob characters so that a PSUBSCRIBE pattern is a plain prefix."""
    return "".join("\\" + c if c in "\\*?[]" else c for c in text)


# -- the factory ---------------------------------------------------------------------------

class RedisAdapterFactory:
    """The ``adapter=`` callable of one Server: makes the adapter of each namespace,
    all on one shared RedisHub."""

    def __init__(self, adapter_class: type, redis: Any, **options: Any) -> None:
        client = make_client(redis)
        self.hub = RedisHub(client, client)
        self.adapter_class = adapter_class
        self.options = options

    def __call__(self, nsp: "Namespace") -> "RedisAdapter":
        return self.adapter_class(nsp, self.hub, **self.options)

    def close(self) -> None:
        self.hub.close()


class RedisAdapter(InMemoryAdapter):
    """The classic Redis adapter (PUBLISH / PSUBSCRIBE); one per namespace."""

    @classmethod
    def factory(cls, redis: Any = "redis://127.0.0.1:6379", *, key: str = "socket.io",
                requests_timeout: float = 5.0, publish_on_specific_response_channel: bool = False,
                sharded: bool = False, subscription_mode: str = "dynamic",
                allow_intersections: bool = False) -> RedisAdapterFactory:
        """The ``adapter=`` argument of ``roomcast.Server`` for a cluster on ``redis``
        (a URL or a redis-py client). ``key`` is the channel prefix (Node's ``key``),
        ``requests_timeout`` in seconds. ``sharded=True``: SSUBSCRIBE/SPUBLISH (Redis 7+),
        with Node's ``subscription_mode`` ("dynamic", "dynamic-private" or "static").
        ``allow_intersections=True`` lets ``intersect()`` operations go to the cluster:
        only for clusters of roomcast servers (a Node server would deliver to the union)."""
        if sharded:
            from roomcast.adapters._redis_sharded import SUBSCRIPTION_MODES, ShardedRedisAdapter

            if subscription_mode not in SUBSCRIPTION_MODES:
                raise ValueError(f"subscription_mode must be one of {SUBSCRIPTION_MODES}")

            return RedisAdapterFactory(ShardedRedisAdapter, redis, key=key,
                                       requests_timeout=requests_timeout,
                                       subscription_mode=subscription_mode,
                                       allow_intersections=allow_intersections)
        return RedisAdapterFactory(cls, redis, key=key, requests_timeout=requests_timeout,
                                   publish_on_specific_response_channel=publish_on_specific_response_channel,
                                   allow_intersections=allow_intersections)

    def __init__(self, nsp: "Namespace", hub: RedisHub, *, key: str = "socket.io",
                 requests_timeout: float = 5.0,
                 publish_on_specific_response_channel: bool = False,
                 allow_intersections: bool = False) -> None:
        super().__init__(nsp)
        self.allow_intersections = bool(allow_intersections)
        self.hub = hub
        self.uid = uid()
        self.key = key
        self.requests_timeout = float(requests_timeout)
        self.publish_on_specific_response_channel = publish_on_specific_response_channel
        name = nsp.name
        self.channel = proto.broadcast_channel(key, name)
        self.request_channel = proto.request_channel(key, name)
        self.response_channel = proto.response_channel(key, name)
        self.specific_response_channel = f"{self.response_channel}{self.uid}#"
        self._pattern = glob_escape(self.channel) + "*"
        self.requests = RequestTable(uid)
        self._closed = False

    # -- lifetime ------------------------------------------------------------------

    def init(self) -> None:
        self.hub.acquire()
        self.hub.psubscribe(self._pattern, self._on_message)
        self.hub.subscribe([self.request_channel], self._on_request)
        self.hub.subscribe([self.response_channel, self.specific_response_channel],
                           self._on_response)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.hub.unsubscribe(channels=[self.request_channel, self.response_channel,
                                       self.specific_response_channel],
                             patterns=[self._pattern])
        self.hub.release()
        self.requests.close()
        super().close()

    # -- cluster size ----------------------------------------------------------------

    def server_count(self) -> int:
        """Servers subscribed to this namespace's request channel (PUBSUB NUMSUB)."""
        return max(1, self.hub.numsub(self.request_channel))

    # -- broadcasting ------------------------------------------------------------------

    def _wire_packet(self, packet: dict) -> dict:
        type_ = packet.get("type", proto.EVENT)
        if not isinstance(type_, int) or isinstance(type_, bool):
            raise IllFormedMessage(f"packet type must be an int, not {type(type_).__name__}")
        return {"type": type_, "data": packet["data"], "nsp": self.nsp.name}


    def broadcast(self, packet: dict, opts: BroadcastOptions) -> None:
        check_intersection(opts, self.allow_intersections)
        if not opts.flags.local:
            message = proto.encode_or_log(
                log, [self.uid, self._wire_packet(packet), opts_to_wire(opts)], packet)
            if message is not None:
                channel = self.channel
                if len(opts.rooms) == 1:
                    channel += f"{next(iter(opts.rooms))}#"
                self.hub.publish(channel, message)
        InMemoryAdapter.broadcast(self, packet, opts)

    def broadcast_with_ack(self, packet: dict, opts: BroadcastOptions,
                           client_count_callback: Callable[[int], None],
                           ack: Callable[..., None]) -> None:
        check_intersection(opts, self.allow_intersections)
        if not opts.flags.local:
            def publish(request_id: str) -> bool:
                message = proto.encode_or_log(log, {
                    "uid": self.uid, "requestId": request_id, "type": proto.BROADCAST,
                    "packet": self._wire_packet(packet), "opts": opts_to_wire(opts),
                }, packet)
                if message is None:
                    return False
                self.hub.publish(self.request_channel, message)
                return True
            self.requests.publish_acks(client_count_callback, ack,
                                       ack_lifetime(opts, self.requests_timeout), publish, self.server_count)
        InMemoryAdapter.broadcast_with_ack(self, packet, opts, client_count_callback, ack)

    def _on_message(self, channel: str, data: bytes) -> None:
        # Cheap checks first: a message this server has no recipient for is not decoded.
        if not self.nsp.sockets:
            return
        room = channel[len(self.channel):-1]
        if room and not self.index.has_room(room):
            return
        try:
            sender, packet, opts = _notepack.decode(data)
        except (ValueError, TypeError):
            log.warning("redis: malformed broadcast on %s ignored", channel)
            return
        if sender == self.uid or not isinstance(packet, dict) or not isinstance(opts, dict):
            return
        if packet.get("nsp", "/") != self.nsp.name:
            return
        reason = proto.refusal(packet)
        if reason is not None:
            proto.log_refused(log, f"on {channel}", reason)
            return
        try:
            wire_packet, wire_opts = self._wire_packet(packet), opts_from_wire(opts, with_flags=True)
        except IllFormedMessage as exc:
            log.warning("redis: ill-formed broadcast on %s ignored (%s)", channel, exc)
            return
        InMemoryAdapter.broadcast(self, wire_packet, wire_opts)

    # -- requests from other servers ---------------------------------------------------

    def _publish_response(self, request: dict, response: bytes) -> None:
        channel = self.response_channel
        if self.publish_on_specific_response_channel:
            sender = request.get("uid")
            channel += f"{'undefined' if sender is None else sender}#"
        self.hub.publish(channel, response)

    def _on_request(self, channel: str, data: bytes) -> None:
        try:
            request = proto.decode_request(data)
        except (ValueError, TypeError):
            log.warning("redis: malformed request on %s ignored", channel)
            return
        if not isinstance(request, dict):
            return
        try:
            check_ids(request)
            handler = self._REQUEST_HANDLERS.get(request.get("type"))
            if handler is not None:
                handler(self, request)
        except IllFormedMessage as exc:
            log.warning("redis: ill-formed request on %s ignored (%s)", channel, exc)

    def _answer_sockets(self, request: dict) -> None:
        request_id = request.get("requestId")
        if request_id in self.requests.requests:   # our own request
            return
        sids = self.sockets(rooms_from_wire(request.get("rooms")))
        self._publish_response(request, proto.dumps_json({"requestId": request_id, "sockets": list(sids)}))

    def _answer_all_rooms(self, request: dict) -> None:
        request_id = request.get("requestId")
        if request_id in self.requests.requests:   # our own request
            return
        self._publish_response(request, proto.dumps_json(
            {"requestId": request_id, "rooms": list(self.all_rooms())}))

    def _legacy_socket(self, request: dict):
        return self.nsp.sockets.get(request.get("sid"))

    def _answer_join(self, request: dict) -> None:
        if "opts" in request:
            if request.get("uid") != self.uid:   # our own was applied when sent
                InMemoryAdapter.add_sockets(self, opts_from_wire(request["opts"]),
                                            rooms_from_wire(request.get("rooms")))
            return
        socket = self._legacy_socket(request)
        if socket is not None:
            socket.join(request.get("room"))
            self._publish_response(request, proto.dumps_json({"requestId": request.get("requestId")}))

    def _answer_leave(self, request: dict) -> None:
        if "opts" in request:
            if request.get("uid") != self.uid:
                InMemoryAdapter.del_sockets(self, opts_from_wire(request["opts"]),
                                            rooms_from_wire(request.get("rooms")))
            return
        socket = self._legacy_socket(request)
        if socket is not None:
            socket.leave(request.get("room"))
            self._publish_response(request, proto.dumps_json({"requestId": request.get("requestId")}))

    def _answer_disconnect(self, request: dict) -> None:
        if "opts" in request:
            if request.get("uid") != self.uid:
                InMemoryAdapter.disconnect_sockets(self, opts_from_wire(request["opts"]),
                                                   bool(request.get("close")))
            return
        socket = self._legacy_socket(request)
        if socket is not None:
            socket.disconnect(bool(request.get("close")))
            self._publish_response(request, proto.dumps_json({"requestId": request.get("requestId")}))

    def _answer_fetch(self, request: dict) -> None:
        request_id = request.get("requestId")
        if request_id in self.requests.requests:   # our own request
            return
        sockets = InMemoryAdapter.fetch_sockets(self, opts_from_wire(request.get("opts")))
        self._publish_response(request, proto.dumps_json(
            {"requestId": request_id, "sockets": sockets_payload(sockets, proto.dumps_json)}))

    def _answer_server_side_emit(self, request: dict) -> None:
        if request.get("uid") == self.uid:
            return
        data = request.get("data")
        if not isinstance(data, list) or not data:
            return
        request_id = request.get("requestId")
        if request_id is None:
            self.nsp._on_server_side_emit(data)
            return
        # answered on the shared response channel, as Node does
        self.nsp._on_server_side_emit(data, proto.answer_once(
            lambda answer: self.hub.publish(self.response_channel, proto.dumps_json({
                "type": proto.SERVER_SIDE_EMIT, "requestId": request_id, "data": answer}))))

    def _answer_broadcast(self, request: dict) -> None:
        request_id = request.get("requestId")
        if request_id in self.requests.acks:   # our own broadcast
            return
        packet = request.get("packet")
        reason = proto.refusal(packet)
        if reason is not None:
            proto.log_refused(log, f"with acks {request_id}", reason)
            return

        def client_count(count: int) -> None:
            self._publish_response(request, proto.dumps_json({
                "type": proto.BROADCAST_CLIENT_COUNT, "requestId": request_id, "clientCount": count}))

        def ack(*args: Any) -> None:
            self._publish_response(request, _notepack.encode({
                "type": proto.BROADCAST_ACK, "requestId": request_id,
                "packet": args[0] if args else None}))

        InMemoryAdapter.broadcast_with_ack(self, self._wire_packet(packet),
                                           opts_from_wire(request.get("opts")), client_count, ack)

    _REQUEST_HANDLERS = {
        proto.SOCKETS: _answer_sockets,
        proto.ALL_ROOMS: _answer_all_rooms,
        proto.REMOTE_JOIN: _answer_join,
        proto.REMOTE_LEAVE: _answer_leave,
        proto.REMOTE_DISCONNECT: _answer_disconnect,
        proto.REMOTE_FETCH: _answer_fetch,
        proto.SERVER_SIDE_EMIT: _answer_server_side_emit,
        proto.BROADCAST: _answer_broadcast,
    }

    # -- responses to our requests -------------------------------------------------------

    def _on_response(self, channel: str, data: bytes) -> None:
        try:
            response = proto.decode_request(data)
        except (ValueError, TypeError):
            log.warning("redis: malformed response on %s ignored", channel)
            return
        if not isinstance(response, dict):
            return
        try:
            check_ids(response)
        except IllFormedMessage as exc:
            log.warning("redis: ill-formed response on %s ignored (%s)", channel, exc)
            return
        request_id = response.get("requestId")
        kind = response.get("type")
        if kind == proto.BROADCAST_CLIENT_COUNT and self.requests.on_client_count(
                request_id, response.get("clientCount")):
            return
        if kind == proto.BROADCAST_ACK and self.requests.on_ack(request_id, response.get("packet")):
            return
        request = self.requests.get(request_id)
        if request is None:
            return
        if request.kind in (proto.SOCKETS, proto.REMOTE_FETCH, proto.ALL_ROOMS):
            field = "rooms" if request.kind == proto.ALL_ROOMS else "sockets"
            items = response.get(field)
            if isinstance(items, list):
                if request.kind == proto.REMOTE_FETCH:
                    request.responses.extend(RemoteSocket(self, d) for d in items
                                             if isinstance(d, dict) and "id" in d)
                else:
                    request.responses.update(items)
            request.answered()
        elif request.kind == proto.SERVER_SIDE_EMIT:
            request.responses.append(response.get("data"))
            request.answered()

    def _request(self, type_: int, expected: int, items: Any, message: dict) -> PendingRequest:
        """Publish a request and wait (at most requests_timeout) for ``expected`` answers."""
        request_id, request = self.requests.open(type_, expected, items)
        self.hub.publish(self.request_channel,
                         proto.dumps_json({"uid": self.uid, "requestId": request_id,
                                           "type": type_, **message}))
        return self.requests.wait(request_id, self.requests_timeout)

    def _settle(self, request: PendingRequest, what: str) -> None:
        if not request.done.is_set():
            # a server left (or is stuck): complete with what answered, as promised
            log.warning("redis: %s: %d of %d servers answered within %.1fs", what,
                        request.received, request.expected, self.requests_timeout)

    # -- cluster-wide operations -----------------------------------------------------------

    def fetch_sockets(self, opts: BroadcastOptions) -> list:
        check_intersection(opts, self.allow_intersections)
        local = InMemoryAdapter.fetch_sockets(self, opts)
        if opts.flags.local:
            return local
        num_sub = self.server_count()
        if num_sub <= 1:
            return local
        request = self._request(proto.REMOTE_FETCH, num_sub - 1, list(local),
                                {"opts": opts_to_wire(opts, with_flags=False)})
        self._settle(request, "fetch_sockets")
        return request.responses

    def fetch_all_rooms(self) -> set:
        """Every room of this namespace on every server (Node's ``adapter.allRooms()``)."""
        rooms = self.all_rooms()
        num_sub = self.server_count()
        if num_sub <= 1:
            return rooms
        request = self._request(proto.ALL_ROOMS, num_sub - 1, rooms, {})
        self._settle(request, "fetch_all_rooms")
        return request.responses

    def add_sockets(self, opts: BroadcastOptions, rooms: Iterable) -> None:
        check_intersection(opts, self.allow_intersections)
        rooms = _socket_rooms(rooms)
        InMemoryAdapter.add_sockets(self, opts, rooms)
        if not opts.flags.local:
            self._publish_bulk(proto.REMOTE_JOIN, opts, rooms=rooms)

    def del_sockets(self, opts: BroadcastOptions, rooms: Iterable) -> None:
        check_intersection(opts, self.allow_intersections)
        rooms = _socket_rooms(rooms)
        InMemoryAdapter.del_sockets(self, opts, rooms)
        if not opts.flags.local:
            self._publish_bulk(proto.REMOTE_LEAVE, opts, rooms=rooms)

    def disconnect_sockets(self, opts: BroadcastOptions, close: bool) -> None:
        check_intersection(opts, self.allow_intersections)
        if not opts.flags.local:
            self._publish_bulk(proto.REMOTE_DISCONNECT, opts, close=bool(close))
        InMemoryAdapter.disconnect_sockets(self, opts, close)

    def _publish_bulk(self, type_: int, opts: BroadcastOptions, **extra: Any) -> None:
        self.hub.publish(self.request_channel, proto.dumps_json({
            "uid": self.uid, "type": type_,
            "opts": opts_to_wire(opts, with_flags=False), **extra}))

    def server_side_emit(self, packet: list, ack: Callable | None = None) -> None:
        if ack is None:
            self.hub.publish(self.request_channel, proto.dumps_json(
                {"uid": self.uid, "type": proto.SERVER_SIDE_EMIT, "data": packet}))
            return
        num_sub = self.server_count() - 1   # the others
        if num_sub <= 0:
            ack(None, [])
            return
        request_id, request = self.requests.open(proto.SERVER_SIDE_EMIT, num_sub, [])
        self.hub.publish(self.request_channel, proto.dumps_json(
            {"uid": self.uid, "requestId": request_id, "type": proto.SERVER_SIDE_EMIT, "data": packet}))

        def finish() -> None:
            self.requests.wait(request_id, self.requests_timeout)
            finish_server_side_emit(request, self.server_count() - 1, ack)

        gevent.spawn(finish)

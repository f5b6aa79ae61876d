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
from typing import TYPE_CHECKING, Any

from roomcast import _notepack
from roomcast.adapters import _protocol as proto
from roomcast.adapters._hub import RedisHub
from roomcast.adapters.cluster import (MAY_CONTAIN_BINARY, ClusterAdapter, IllFormedMessage,
                                      MessageType, has_binary)

if TYPE_CHECKING:
    from roomcast.namespace import Namespace

log = logging.getLogger("roomcast.redis")

SUBSCRIPTION_MODES = ("dynamic", "dynamic-private", "static")


def looks_like_a_socket_id(room: Any) -> bool:
    return isinstance(room, str) and len(room) == 20


class ShardedRedisAdapter(ClusterAdapter):
    """One namespace on sharded pub/sub: a ClusterAdapter whose transport is SPUBLISH."""

    def __init__(self, nsp: "Namespace", hub: RedisHub, *, key: str = "socket.io",
                 requests_timeout: float = 5.0, subscription_mode: str = "dynamic",
                 allow_intersections: bool = False) -> None:
        if subscription_mode not in SUBSCRIPTION_MODES:
            raise ValueError(f"subscription_mode must be one of {SUBSCRIPTION_MODES}")
        super().__init__(nsp, requests_timeout=requests_timeout,
                         allow_intersections=allow_intersections)
        self.hub = hub
        self.key = key
        self.subscription_mode = subscription_mode
        self.channel = f"{key}#{nsp.name}#"
        self.response_channel = f"{self.channel}{self.uid}#"
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

    # -- the transport ------------------------------------------------------------------

    @staticmethod
    def _encode(message: dict) -> bytes:
        if message["type"] in MAY_CONTAIN_BINARY and has_binary(message.get("data")):
            return _notepack.encode(message)
        return proto.dumps_json(message)

    def encode_value(self, value: Any) -> bytes:
        # binary data is fine in a fetch_sockets answer: such answers go as msgpack
        return _notepack.encode(value)

    def _channel_for(self, message: dict) -> str:
        # a broadcast without ack to exactly one room goes to that room's channel
        body = message.get("data") or {}
        if message["type"] == MessageType.BROADCAST and "requestId" not in body:
            rooms = body["opts"]["rooms"]
            if len(rooms) == 1 and (self.subscription_mode == "dynamic-private" or (
                    self.subscription_mode == "dynamic" and not looks_like_a_socket_id(rooms[0]))):
                return f"{self.channel}{rooms[0]}#"
        return self.channel

    def do_publish(self, message: dict) -> None:
        self.hub.spublish(self._channel_for(message), self._encode(message))
        return None

    def do_publish_response(self, requester_uid: str, response: dict) -> None:
        self.hub.spublish(f"{self.channel}{requester_uid}#", self._encode(response))

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
            try:
                self.on_response(message)
            except IllFormedMessage as exc:
                log.warning("redis: ill-formed sharded response ignored (%s)", exc)

    def _on_raw_message(self, channel: str, data: bytes) -> None:
        room = channel[len(self.channel):-1]
        if room and not self.index.has_room(room):
            return   # a room channel of a room we no longer have
        message = self._decode(data)
        if message is not None:
            # heartbeats and ADAPTER_CLOSE are ignored: servers are counted with SHARDNUMSUB
            try:
                self.on_message(message)
            except IllFormedMessage as exc:
                log.warning("redis: ill-formed sharded message ignored (%s)", exc)

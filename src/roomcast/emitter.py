"""Emitter: publish into a Socket.IO cluster from any Python process.

Wire-compatible with Node's ``@socket.io/redis-emitter`` 5.x: what it publishes is
received by roomcast servers using ``roomcast.adapters.redis.RedisAdapter`` and by
Node servers using ``@socket.io/redis-adapter`` (the classic, non-sharded one)::

    from roomcast import Emitter
    emitter = Emitter("redis://127.0.0.1:6379")      # or a redis.Redis client
    emitter.to("room1").emit("news", {"n": 1})
    emitter.of("/admin").except_("muted").volatile.emit("tick", 42)
    emitter.sockets_join("vip")                       # every socket of "/" joins "vip"
    emitter.server_side_emit("reload", "config")      # io.on("reload") on every server

It works with or without gevent: under gevent without monkey patching, a URL gets a
client on gevent sockets. Acknowledgements are not possible from an emitter.
"""
from __future__ import annotations

from typing import Any, Iterable

from . import _notepack
from .adapters import _protocol as proto
from .adapters._redis_client import make_client

__all__ = ["Emitter", "EmitterBroadcastOperator"]


def _room_list(rooms: str | Iterable[str]) -> list:
    if isinstance(rooms, str):
        return [rooms]
    return list(rooms)


class EmitterBroadcastOperator:
    """An immutable set of targets (rooms, except rooms, flags) for one namespace."""

    __slots__ = ("_redis", "_key", "_nsp", "_rooms", "_except", "_flags")

    def __init__(self, redis_client, key: str, nsp: str, rooms: tuple = (), except_rooms: tuple = (),
                 flags: dict | None = None) -> None:
        self._redis = redis_client
        self._key = key
        self._nsp = nsp
        self._rooms = rooms
        self._except = except_rooms
        self._flags = flags or {}

    def _with(self, rooms=None, except_rooms=None, flags=None) -> "EmitterBroadcastOperator":
        return EmitterBroadcastOperator(
            self._redis, self._key, self._nsp,
            self._rooms if rooms is None else rooms,
            self._except if except_rooms is None else except_rooms,
            self._flags if flags is None else flags,
        )

    @staticmethod
    def _union(current: tuple, more: str | Iterable[str]) -> tuple:
        out = list(current)
        for room in _room_list(more):
            if room not in out:
                out.append(room)
        return tuple(out)

    def to(self, room: str | Iterable[str]) -> "EmitterBroadcastOperator":
        """Target a room (or several); chained calls add rooms (a union)."""
        return self._with(rooms=self._union(self._rooms, room))

    in_ = to

    def except_(self, room: str | Iterable[str]) -> "EmitterBroadcastOperator":
        """Exclude the sockets in a room (or several)."""
        return self._with(except_rooms=self._union(self._except, room))

    @property
    def volatile(self) -> "EmitterBroadcastOperator":
        """The event may be dropped for clients that are not ready to receive it."""
        return self._with(flags={**self._flags, "volatile": True})

    def compress(self, flag: bool = True) -> "EmitterBroadcastOperator":
        return self._with(flags={**self._flags, "compress": bool(flag)})

    def _opts(self) -> dict:
        return {"rooms": list(self._rooms), "except": list(self._except)}

    def _request(self, message: dict) -> None:
        self._redis.publish(proto.request_channel(self._key, self._nsp), proto.dumps_json(message))

    def emit(self, ev: str, *args: Any) -> bool:
        """Broadcast an event to the targeted clients of every server of the cluster."""
        proto.check_event(ev)
        if args and callable(args[-1]):
            raise ValueError("acknowledgements are not supported by the emitter")
        packet = {"type": proto.EVENT, "data": [ev, *args], "nsp": self._nsp}
        # the emitter's options map is ordered {rooms, flags, except}, as Node's
        opts = {"rooms": list(self._rooms), "flags": dict(self._flags), "except": list(self._except)}
        message = _notepack.encode([proto.EMITTER_UID, packet, opts])
        channel = proto.broadcast_channel(self._key, self._nsp)
        if len(self._rooms) == 1:
            channel += f"{self._rooms[0]}#"
        self._redis.publish(channel, message)
        return True

    def sockets_join(self, rooms: str | Iterable[str]) -> None:
        """Make the targeted sockets join the room(s), on every server."""
        self._request({"type": proto.REMOTE_JOIN, "opts": self._opts(), "rooms": _room_list(rooms)})

    def sockets_leave(self, rooms: str | Iterable[str]) -> None:
        """Make the targeted sockets leave the room(s), on every server."""
        self._request({"type": proto.REMOTE_LEAVE, "opts": self._opts(), "rooms": _room_list(rooms)})

    def disconnect_sockets(self, close: bool = False) -> None:
        """Disconnect the targeted sockets (``close=True`` also closes their connection)."""
        self._request({"type": proto.REMOTE_DISCONNECT, "opts": self._opts(), "close": bool(close)})


class Emitter(EmitterBroadcastOperator):
    """Publishes to the servers of a cluster that share ``key`` on one Redis.

    ``redis``: a URL or a ``redis.Redis`` client (default ``redis://127.0.0.1:6379``).
    ``key``: the channel prefix, as the servers' adapter ``key`` (default ``socket.io``).
    """

    __slots__ = ()

    def __init__(self, redis: Any = "redis://127.0.0.1:6379", *, key: str = "socket.io", nsp: str = "/") -> None:
        if not nsp.startswith("/"):
            nsp = "/" + nsp
        super().__init__(make_client(redis), key, nsp)

    def of(self, nsp: str) -> "Emitter":
        """The emitter of another namespace (same Redis client, same key)."""
        if not nsp.startswith("/"):
            nsp = "/" + nsp
        return Emitter(self._redis, key=self._key, nsp=nsp)

    def server_side_emit(self, ev: str, *args: Any) -> None:
        """Emit to the servers themselves (``io.on(ev)``); no acknowledgement possible."""
        proto.check_event(ev)
        if args and callable(args[-1]):
            raise ValueError("acknowledgements are not supported by the emitter")
        self._request({"uid": proto.EMITTER_UID, "type": proto.SERVER_SIDE_EMIT, "data": [ev, *args]})

    def __repr__(self) -> str:
        return f"<Emitter key={self._key!r} nsp={self._nsp!r}>"

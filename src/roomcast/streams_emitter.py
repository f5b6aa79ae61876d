"""StreamsEmitter: publish into a cluster of servers on the Redis Streams adapter from any
Python process, as Node's ``@socket.io/redis-streams-emitter`` 0.1 does::

    from roomcast import StreamsEmitter
    emitter = StreamsEmitter("redis://127.0.0.1:6379")     # or a redis.Redis client
    emitter.to("room1").emit("news", {"n": 1})
    emitter.of("/admin").except_("muted").emit("tick", 42)
    emitter.sockets_join("vip"); emitter.server_side_emit("reload")

Each call is one ``XADD <stream_name> MAXLEN ~ <max_len> * uid emitter nsp <nsp> type <n>
data <...>`` (the stream of namespace ``nsp`` when the servers use one stream, Node's
default). roomcast servers (``RedisStreamsAdapter``) and Node servers
(``@socket.io/redis-streams-adapter``) receive it alike; broadcasts are recoverable.
Acknowledgements are not possible from an emitter.
"""
from __future__ import annotations

from typing import Any, Iterable

from roomcast.adapters import _protocol as proto
from roomcast.adapters._redis_client import make_client
from roomcast.adapters._protocol import EMITTER_UID, MessageType
from roomcast.adapters._streams_format import encode_entry

__all__ = ["StreamsEmitter"]


def _room_list(rooms: str | Iterable[str]) -> list:
    return [rooms] if isinstance(rooms, str) else list(rooms)


class StreamsEmitter:
    """An immutable target (namespace, rooms, except rooms, flags) on one stream."""

    __slots__ = ("_redis", "_stream", "_max_len", "_nsp", "_rooms", "_except", "_flags")

    def __init__(self, redis: Any = "redis://127.0.0.1:6379", *, stream_name: str = "socket.io",
                 max_len: int = 10_000, nsp: str = "/") -> None:
        self._redis = make_client(redis)
        self._stream = stream_name
        self._max_len = max_len
        self._nsp = nsp if nsp.startswith("/") else "/" + nsp
        self._rooms: tuple = ()
        self._except: tuple = ()
        self._flags: dict = {}

    def _copy(self, **changes: Any) -> "StreamsEmitter":
        other = object.__new__(StreamsEmitter)
        for name in self.__slots__:
            object.__setattr__(other, name, changes.get(name, getattr(self, name)))
        return other

    def of(self, nsp: str) -> "StreamsEmitter":
        """The same emitter for another namespace (no rooms, no flags)."""
        return self._copy(_nsp=nsp if nsp.startswith("/") else "/" + nsp, _rooms=(), _except=(),
                          _flags={})

    def to(self, room: str | Iterable[str]) -> "StreamsEmitter":
        rooms = list(self._rooms)
        rooms += [r for r in _room_list(room) if r not in rooms]
        return self._copy(_rooms=tuple(rooms))

    in_ = to

    def except_(self, room: str | Iterable[str]) -> "StreamsEmitter":
        rooms = list(self._except)
        rooms += [r for r in _room_list(room) if r not in rooms]
        return self._copy(_except=tuple(rooms))

    @property
    def volatile(self) -> "StreamsEmitter":
        return self._copy(_flags={**self._flags, "volatile": True})

    def compress(self, flag: bool = True) -> "StreamsEmitter":
        return self._copy(_flags={**self._flags, "compress": bool(flag)})

    def _publish(self, type_: int, data: dict) -> str:
        fields = encode_entry({"uid": EMITTER_UID, "nsp": self._nsp, "type": type_, "data": data})
        entry_id = self._redis.xadd(self._stream, fields, maxlen=self._max_len, approximate=True)
        return entry_id.decode() if isinstance(entry_id, bytes) else entry_id

    def _opts(self) -> dict:
        return {"rooms": list(self._rooms), "except": list(self._except), "flags": {}}

    def emit(self, ev: str, *args: Any) -> bool:
        """Broadcast an event to the targeted clients of every server."""
        proto.check_event(ev)
        if args and callable(args[-1]):
            raise ValueError("acknowledgements are not supported by the emitter")
        self._publish(MessageType.BROADCAST, {
            "packet": {"type": proto.EVENT, "data": [ev, *args], "nsp": self._nsp},
            "opts": {"rooms": list(self._rooms), "flags": dict(self._flags), "except": list(self._except)}})
        return True

    def sockets_join(self, rooms: str | Iterable[str]) -> None:
        self._publish(MessageType.SOCKETS_JOIN, {"opts": self._opts(), "rooms": _room_list(rooms)})

    def sockets_leave(self, rooms: str | Iterable[str]) -> None:
        self._publish(MessageType.SOCKETS_LEAVE, {"opts": self._opts(), "rooms": _room_list(rooms)})

    def disconnect_sockets(self, close: bool = False) -> None:
        self._publish(MessageType.DISCONNECT_SOCKETS, {"opts": self._opts(), "close": bool(close)})

    def server_side_emit(self, ev: str, *args: Any) -> None:
        """Emit to the servers themselves (``io.on(ev)``); no acknowledgement possible."""
        proto.check_event(ev)
        if args and callable(args[-1]):
            raise ValueError("acknowledgements are not supported by the emitter")
        self._publish(MessageType.SERVER_SIDE_EMIT, {"packet": [ev, *args]})

    def __repr__(self) -> str:
        return f"<StreamsEmitter stream={self._stream!r} nsp={self._nsp!r}>"

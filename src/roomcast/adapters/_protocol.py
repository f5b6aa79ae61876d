"""The wire vocabulary of @socket.io/redis-adapter 8.x / redis-emitter 5.x (sans-IO).

Channel names, request types and the JSON/msgpack framing shared by the adapter and
the emitter, so that both speak exactly what Node's packages speak.
"""
from __future__ import annotations

import datetime as _dt
import json
from typing import Any, Callable

from .. import _notepack

# classic adapter request types (lib/index.ts RequestType)
SOCKETS = 0
ALL_ROOMS = 1
REMOTE_JOIN = 2
REMOTE_LEAVE = 3
REMOTE_DISCONNECT = 4
REMOTE_FETCH = 5
SERVER_SIDE_EMIT = 6
BROADCAST = 7
BROADCAST_CLIENT_COUNT = 8
BROADCAST_ACK = 9

EVENT = 2  # Socket.IO packet type of a broadcast (stays 2 even with binary data)

EMITTER_UID = "emitter"

RESERVED_EVENTS = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)


def broadcast_channel(key: str, nsp: str) -> str:
    return f"{key}#{nsp}#"


def request_channel(key: str, nsp: str) -> str:
    return f"{key}-request#{nsp}#"


def response_channel(key: str, nsp: str) -> str:
    return f"{key}-response#{nsp}#"


def _json_default(value: Any) -> Any:
    if isinstance(value, _dt.datetime):  # as JavaScript's Date.toJSON
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        value = value.astimezone(_dt.timezone.utc)
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps_json(obj: Any) -> bytes:
    """JSON as Node's JSON.stringify writes it (compact, non-ASCII as is)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=_json_default).encode()


def decode_request(data: bytes) -> Any:
    """Requests are JSON unless they are msgpack: Node sniffs the first byte for '{'."""
    if data[:1] == b"{":
        return json.loads(data)
    return _notepack.decode(data)


def check_event(ev: str) -> None:
    if ev in RESERVED_EVENTS:
        raise ValueError(f'"{ev}" is a reserved event name')


def answer_once(reply: Callable[[Any], None]) -> Callable[..., None]:
    """The ack callback handed to a server-side emit that another server asked an
    answer for: its first argument is the answer (Node sends only that), and only
    the first call counts."""
    called = False

    def callback(*args: Any) -> None:
        nonlocal called
        if not called:
            called = True
            reply(args[0] if args else None)

    return callback

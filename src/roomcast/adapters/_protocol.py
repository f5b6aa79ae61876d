"""The wire vocabulary of @socket.io/redis-adapter 8.x / redis-emitter 5.x (sans-IO).

Channel names, request types and the JSON/msgpack framing shared by the adapter and
the emitter, so that both speak exactly what Node's packages speak.
"""
from __future__ import annotations

import datetime as _dt
import enum
import json
import re
from typing import Any, Callable

from .. import _notepack
from ..sio_packet import payload_valid

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

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

EMITTER_UID = "emitter"   # the uid of the emitters: never a server, never counted

# socket.io-parser's default maxAttachments: a client's decoder refuses a packet with
# more binary attachments ("parse error") and drops its connection
CLIENT_MAX_ATTACHMENTS = 10

RESERVED_EVENTS = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)


# -- the cluster adapters' format (socket.io-adapter ClusterAdapter) --------------------

class MessageType(enum.IntEnum):
    """socket.io-adapter's ``MessageType`` (the numbers are the wire format)."""
    INITIAL_HEARTBEAT = 1
    HEARTBEAT = 2
    BROADCAST = 3
    SOCKETS_JOIN = 4
    SOCKETS_LEAVE = 5
    DISCONNECT_SOCKETS = 6
    FETCH_SOCKETS = 7
    FETCH_SOCKETS_RESPONSE = 8
    SERVER_SIDE_EMIT = 9
    SERVER_SIDE_EMIT_RESPONSE = 10
    BROADCAST_CLIENT_COUNT = 11
    BROADCAST_ACK = 12
    ADAPTER_CLOSE = 13


RESPONSE_TYPES = frozenset({MessageType.FETCH_SOCKETS_RESPONSE, MessageType.SERVER_SIDE_EMIT_RESPONSE,
                            MessageType.BROADCAST_CLIENT_COUNT, MessageType.BROADCAST_ACK})
# the message types whose data may carry user values, hence binary
MAY_CONTAIN_BINARY = frozenset({MessageType.BROADCAST, MessageType.BROADCAST_ACK,
                                MessageType.FETCH_SOCKETS_RESPONSE, MessageType.SERVER_SIDE_EMIT,
                                MessageType.SERVER_SIDE_EMIT_RESPONSE})


def has_binary(value: Any) -> bool:
    """Whether bytes hide anywhere in ``value`` (such messages go as msgpack)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return True
    if isinstance(value, (list, tuple)):
        return any(has_binary(v) for v in value)
    if isinstance(value, dict):
        return any(has_binary(v) for v in value.values())
    return False


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


def _escape_surrogate(match: re.Match) -> str:
    return f"\\u{ord(match.group()):04x}"


def dumps_json(obj: Any) -> bytes:
    """JSON as Node's JSON.stringify writes it (compact, non-ASCII as is, a lone
    surrogate, which UTF-8 cannot hold, escaped)."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=_json_default)
    try:
        return text.encode()
    except UnicodeEncodeError:   # a code point in D800-DFFF of a str is always lone
        return _LONE_SURROGATE.sub(_escape_surrogate, text).encode()


def decode_request(data: bytes) -> Any:
    """Requests are JSON unless they are msgpack: Node sniffs the first byte for '{'."""
    if data[:1] == b"{":
        return json.loads(data)
    return _notepack.decode(data)


def log_not_sent(log: Any, packet: dict, exc: Exception) -> None:
    """The one log line of a broadcast whose data could not be encoded for the cluster."""
    data = packet.get("data")
    event = data[0] if isinstance(data, list) and data else None
    log.error("%s: event %r not sent to the other servers (its data cannot be encoded: %s); "
              "delivered to this server's clients only", _prefix(log), event, exc)


def log_refused(log: Any, where: str, reason: str) -> None:
    """The one log line of a cluster broadcast refused before delivery (see refusal)."""
    log.warning("%s: broadcast %s refused, its clients could not decode it: %s",
                _prefix(log), where, reason)


def _prefix(log: Any) -> str:
    return log.name.rsplit(".", 1)[-1]   # "redis", "cluster": the usual start of their lines


def encode_or_log(log: Any, value: Any, packet: dict) -> bytes | None:
    """``value`` (a cluster message carrying ``packet``) as notepack, or None, logged,
    when it cannot be encoded: the caller still delivers to its own clients."""
    try:
        return _notepack.encode(value)
    except TypeError as exc:
        log_not_sent(log, packet, exc)
        return None


def count_unreached_servers(server_count: int, client_count: Callable[[int], None]) -> None:
    """A broadcast with acks that could not be published: the other servers have no
    recipients of it, so its acks complete with this server's clients'."""
    for _ in range(server_count - 1):
        client_count(0)


def _binary_count(value: Any, limit: int) -> int:
    """The number of binary attachments in ``value``, counting no further than limit+1."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return 1
    items = value if isinstance(value, list) else value.values() if isinstance(value, dict) else ()
    count = 0
    for item in items:
        count += _binary_count(item, limit - count)
        if count > limit:
            break
    return count


def refusal(packet: Any) -> str | None:
    """Why a broadcast packet from another server would make every receiving client drop
    its connection with "parse error" (its decoder's checks), or None to deliver it."""
    if not isinstance(packet, dict):
        return "the packet is not a map"
    ptype, data = packet.get("type", EVENT), packet.get("data")
    if type(ptype) is not int or not 0 <= ptype <= 6:
        return f"unknown packet type {ptype!r}"
    if ptype in (0, 1, 4):   # CONNECT, DISCONNECT, CONNECT_ERROR: not broadcast
        return f"packet type {ptype} is not an event"
    if not payload_valid(ptype, data):
        if not isinstance(data, list) or not data:
            return "empty or missing event data"
        if isinstance(data[0], str):
            return f"reserved event name {data[0]!r}"
        return f"event name {data[0]!r} is not a string or a number"
    if _binary_count(data, CLIENT_MAX_ATTACHMENTS) > CLIENT_MAX_ATTACHMENTS:
        return f"more than {CLIENT_MAX_ATTACHMENTS} binary attachments"
    return None


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

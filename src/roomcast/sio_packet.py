"""Socket.IO v5 decoding (sans-IO): packets, binary reassembly, validation.

Wire form (node-socketio.md section 1)::

    <type>[<attachments>-][<nsp>,][<ack id>][<json>]

e.g. ``2["hi"]``, ``0/admin,{"token":"1"}``, ``51-/admin,7["x",{"_placeholder":true,"num":0}]``.
The Engine.IO layer has already removed the leading ``4``. A BINARY_EVENT or
BINARY_ACK text is followed by its attachments, one binary Engine.IO message
each; the :class:`Decoder` holds the packet until they have all arrived and
puts them back where the placeholders were.

Payloads are checked as Node's socket.io-parser ``isPayloadValid`` does, so a
client that Node would drop is dropped here too; every violation, and any
malformed text, raises :class:`ParseError` (the caller closes the connection).
Encoding is done by the encoder twins (``_speedups.encode_packet``).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CONNECT", "DISCONNECT", "EVENT", "ACK", "CONNECT_ERROR", "BINARY_EVENT", "BINARY_ACK",
    "PACKET_NAMES", "RESERVED_EVENTS", "ParseError", "Packet", "Decoder", "MsgpackDecoder", "parse",
    "payload_valid",
]

CONNECT, DISCONNECT, EVENT, ACK, CONNECT_ERROR, BINARY_EVENT, BINARY_ACK = range(7)
PACKET_NAMES = ("CONNECT", "DISCONNECT", "EVENT", "ACK", "CONNECT_ERROR",
                "BINARY_EVENT", "BINARY_ACK")

#: Event names a client may not emit: they are the server's own socket events.
RESERVED_EVENTS = frozenset({"connect", "connect_error", "disconnect", "disconnecting",
                             "newListener", "removeListener"})

# Ack ids travel back to JavaScript clients as numbers; beyond 2**53 - 1 they
# could not be matched, and the bound also keeps int() away from huge digit runs.
MAX_ACK_ID = 2**53 - 1
_DIGITS = frozenset("0123456789")
_MISSING = object()


class ParseError(ValueError):
    """Input that is not a valid Socket.IO v5 packet."""


@dataclass(slots=True)
class Packet:
    """One decoded packet; binary packets carry their attachments back in place."""

    type: int
    nsp: str = "/"
    data: Any = None
    id: int | None = None


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


# one decoder for every packet: json.loads() with an option builds a new one per call
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_DECODE = _DECODER.decode
_SCAN = _DECODER.scan_once     # (value, end) of the JSON value at an index
_JSON_SPACE = " \t\n\r"     # what JSON allows around a value


def _loads(text: str):
    try:
        return _DECODE(text)
    except (ValueError, RecursionError) as exc:
        raise ParseError(f"invalid JSON payload: {exc}") from None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _payload_valid(ptype: int, data) -> bool:
    # Mirrors socket.io-parser's Decoder.isPayloadValid; _MISSING = no payload.
    if ptype == CONNECT:
        return data is _MISSING or isinstance(data, dict)
    if ptype == DISCONNECT:
        return data is _MISSING
    if ptype in (EVENT, BINARY_EVENT):
        if not isinstance(data, list) or not data:
            return False
        first = data[0]
        return _is_number(first) or (isinstance(first, str) and first not in RESERVED_EVENTS)
    if ptype in (ACK, BINARY_ACK):
        return isinstance(data, list)
    return isinstance(data, (str, dict))  # CONNECT_ERROR


def payload_valid(ptype: int, data: Any) -> bool:
    """Whether ``data`` is a valid payload of a ``ptype`` packet, by the rules of
    socket.io-parser's decoder (the JS client's too): e.g. an EVENT's data is a
    non-empty list whose first item is a number or a non-reserved event name."""
    return _payload_valid(ptype, data)


_ACK_ID = re.compile(r"[0-9]+")   # ASCII digits only, as _DIGITS


def parse(text: str, max_attachments: int = 10) -> tuple[Packet, int]:
    """One packet's text -> (packet with placeholders still in, attachment count)."""
    if not text:
        raise ParseError("empty packet")
    digit = text[0]
    if digit not in "0123456":
        raise ParseError(f"unknown packet type {digit!r}")
    ptype = ord(digit) - 48
    i = 1
    attachments = 0
    if ptype >= BINARY_EVENT:
        dash = text.find("-", 1)
        count = text[1:dash] if dash > 0 else ""
        if not count or not _DIGITS.issuperset(count):
            raise ParseError("illegal attachments: expected '<count>-' after a binary packet type")
        if len(count) > 6 or int(count) > max_attachments:
            raise ParseError(f"too many attachments (at most {max_attachments})")
        attachments = int(count)
        i = dash + 1
    nsp = "/"
    if text.startswith("/", i):
        # as in Node's parser, a namespace without its comma runs to the end
        comma = text.find(",", i)
        if comma < 0:
            comma = len(text)
        nsp = text[i:comma]
        i = comma + 1
    ack_id = None
    digits = _ACK_ID.match(text, i)
    if digits is not None:
        j = digits.end()
        if j - i > 16 or int(text[i:j]) > MAX_ACK_ID:
            raise ParseError(f"ack id out of range: {text[i:j][:20]}")
        ack_id = int(text[i:j])
        i = j
    end = len(text)
    if i < end:
        try:
            data, j = _SCAN(text, i)   # the common case: JSON right there, no copy
            if j != end and text[j:].strip(_JSON_SPACE):
                raise ValueError("extra data")
        except (StopIteration, ValueError, RecursionError):
            data = _loads(text[i:])   # the slow path, for the same result or error
    else:
        data = _MISSING
    if not _payload_valid(ptype, data):
        raise ParseError(f"invalid payload for packet type {PACKET_NAMES[ptype]}")
    return Packet(ptype, nsp, None if data is _MISSING else data, ack_id), attachments


def _reconstruct(data, buffers: list):
    """Replace every ``{"_placeholder": true, "num": N}`` by ``buffers[N]``."""
    if isinstance(data, list):
        return [_reconstruct(item, buffers) for item in data]
    if isinstance(data, dict):
        if data.get("_placeholder") is True:
            num = data.get("num")
            if _is_number(num) and 0 <= num < len(buffers) and num == int(num):
                return buffers[int(num)]
            raise ParseError(f"illegal attachment placeholder: num={num!r}")
        return {key: _reconstruct(value, buffers) for key, value in data.items()}
    return data


class Decoder:
    """Turns a connection's stream of text and binary messages into packets.

    One per connection; feed it in arrival order. While a binary packet waits
    for its attachments, another text message is a protocol error (Node's
    parser raises there as well), and so is binary data nobody waits for.
    """

    def __init__(self, max_attachments: int = 10) -> None:
        self.max_attachments = max_attachments
        self._pending: Packet | None = None
        self._expected = 0
        self._buffers: list[bytes] | tuple = ()   # a list while attachments come

    @property
    def waiting(self) -> bool:
        """True while a binary packet still lacks attachments."""
        return self._pending is not None

    def reset(self) -> None:
        """Forget a partly received binary packet."""
        self._pending = None
        self._expected = 0
        self._buffers = ()

    def feed_text(self, s: str) -> Packet | None:
        if self._pending is not None:
            self.reset()
            raise ParseError("text packet received while waiting for binary attachments")
        packet, attachments = parse(s, self.max_attachments)
        if packet.type >= BINARY_EVENT:
            if attachments:
                self._pending = packet
                self._expected = attachments
                return None
            packet.data = self._put_back(packet.data, [])
        return packet

    def feed_binary(self, b: bytes) -> Packet | None:
        packet = self._pending
        if packet is None:
            raise ParseError("binary data received while no binary packet was waiting")
        if type(self._buffers) is tuple:
            self._buffers = []
        self._buffers.append(b if type(b) is bytes else bytes(b))
        if len(self._buffers) < self._expected:
            return None
        buffers = self._buffers
        self.reset()
        packet.data = self._put_back(packet.data, buffers)
        return packet

    @staticmethod
    def _put_back(data, buffers: list):
        try:
            return _reconstruct(data, buffers)
        except RecursionError:
            raise ParseError("packet data nested too deeply") from None


# ext type 0 of length 1 or 8 is notepack 2.x's undefined / Date in its fixext form, but
# an ArrayBuffer (ext 8, type 0) of 1 or 8 bytes gives the decoder the same (code, data)
_EXT0_ARRAYBUFFER_1_OR_8 = (b"\xc7\x01\x00", b"\xc7\x08\x00")


def _bytes_ext(code: int, data: bytes) -> Any:
    return bytes(data) if code == 0 else [code, bytes(data)]


class MsgpackDecoder:
    """The decoder for socket.io-msgpack-parser 3.x clients: every packet is one binary
    message holding a msgpack map {type, nsp, data?, id?}; bytes are in place (no
    attachments). Checked as that parser checks (type 0-4, nsp a string, data of the
    type's shape, id an integer), plus roomcast's own payload rules (event names, ack
    id range); any violation raises :class:`ParseError`. Same interface as Decoder."""

    waiting = False   # nothing is ever waited for

    def __init__(self, max_attachments: int = 10) -> None:
        self.max_attachments = max_attachments   # unused: msgpack packets have no attachments

    def reset(self) -> None:
        pass

    def feed_text(self, s: str) -> Packet | None:
        raise ParseError("text message received by the msgpack parser (every packet is binary)")

    def feed_binary(self, b: bytes) -> Packet | None:
        import msgpack   # an optional dependency

        from roomcast import _notepack

        try:
            if any(marker in b for marker in _EXT0_ARRAYBUFFER_1_OR_8):
                # maybe a browser's 1- or 8-byte ArrayBuffer: read every ext 0 as bytes
                decoded = msgpack.unpackb(b, raw=False, strict_map_key=False, timestamp=3,
                                          ext_hook=_bytes_ext)
            else:
                decoded = _notepack.decode(b)
        except (ValueError, TypeError, OverflowError, RecursionError, msgpack.UnpackException) as exc:
            raise ParseError(f"invalid msgpack packet: {exc}") from None
        if not isinstance(decoded, dict):
            raise ParseError("a msgpack packet must be a map")
        ptype = decoded.get("type")
        if ptype.__class__ is not int or not CONNECT <= ptype <= CONNECT_ERROR:
            raise ParseError("invalid packet type")
        nsp = decoded.get("nsp")
        if not isinstance(nsp, str):
            raise ParseError("invalid namespace")
        data = decoded.get("data", _MISSING)
        if data is None and ptype in (CONNECT, DISCONNECT):
            data = _MISSING   # notepack writes undefined as nil (3.x) or d4 00 00 (2.x)
        if not _payload_valid(ptype, data):
            raise ParseError(f"invalid payload for packet type {PACKET_NAMES[ptype]}")
        ack_id = decoded.get("id")
        if ack_id is not None and (ack_id.__class__ is not int or not 0 <= ack_id <= MAX_ACK_ID):
            raise ParseError("invalid packet id")
        return Packet(ptype, nsp, None if data is _MISSING else data, ack_id)

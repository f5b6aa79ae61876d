"""Pure-Python twin of ext/_encoder_c.pyx: Socket.IO packet -> finished wire bytes.

A broadcast is encoded once and the result, an :class:`EncodedPacket`, is shared
by every recipient: WebSocket recipients get ``ws`` (every frame of the packet,
already framed), long-polling recipients get the ``polling`` records.

Both twins must give identical results and raise identical exception types
(tests/unit/test_encoder_parity.py checks this); change them together.

Rules shared with Node's socket.io-parser (node-socketio.md section 1):
- ``<type>[<n>-][<nsp>,][<id>][<json>]``, the namespace omitted when it is "/";
- EVENT/ACK data holding bytes-likes becomes BINARY_EVENT/BINARY_ACK, every
  bytes-like replaced by ``{"_placeholder":true,"num":N}`` in traversal order;
- JSON like ``JSON.stringify``: compact, non-ASCII kept, NaN/Infinity -> null,
  datetimes like ``Date.toJSON`` (UTC, milliseconds, "Z").
"""
from __future__ import annotations

import json
import math
import re
import struct
import zlib
from base64 import b64encode
from datetime import date, datetime, timezone
from json.encoder import c_make_encoder, encode_basestring

from roomcast.plain_json import NOT_PLAIN_ERRORS, plain_encoder

__all__ = ["EncodedPacket", "encode_packet", "encode_msgpack", "encode_eio", "ws_frame"]

# Socket.IO packet types (module-level ints, as in the compiled twin).
CONNECT = 0
DISCONNECT = 1
EVENT = 2
ACK = 3
CONNECT_ERROR = 4
BINARY_EVENT = 5
BINARY_ACK = 6

EIO_MESSAGE = 4
_VALID_OPCODES = frozenset((0, 1, 2, 8, 9, 10))
_BYTES_LIKE = (bytes, bytearray, memoryview)


def _frame_header(opcode: int, length: int) -> bytes:
    # Server frames are never masked; always FIN (we never fragment).
    if length < 126:
        return bytes((0x80 | opcode, length))
    if length < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, length)
    return struct.pack("!BBQ", 0x80 | opcode, 127, length)


_RSV1 = 0x40   # permessage-deflate: the message is compressed


def _deflate(payload: bytes) -> bytes:
    """One message compressed alone (server_no_context_takeover), as RFC 7692 sends
    it: raw deflate, 15-bit window, sync-flushed, the final 00 00 ff ff removed."""
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -zlib.MAX_WBITS)
    return (compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


class EncodedPacket:
    """One encoded packet, immutable and shared by every recipient.

    ``text`` is the Engine.IO text packet ("4" + Socket.IO text for messages);
    it is None for a bare binary Engine.IO message (then ``attachments`` holds
    exactly that one payload). ``polling`` is computed on first use and cached,
    since WebSocket-only broadcasts never need it.
    """

    __slots__ = ("_text", "_attachments", "_ws", "_polling", "_deflated")

    def __init__(self, text: str | None, attachments=()) -> None:
        atts = []
        for att in attachments:
            if not isinstance(att, _BYTES_LIKE):
                raise TypeError(f"attachments must be bytes-like, not {type(att).__name__}")
            atts.append(att if type(att) is bytes else bytes(att))
        parts = []
        if text is None:
            if len(atts) != 1:
                raise ValueError("a binary-only packet has exactly one attachment")
        elif isinstance(text, str):
            payload = text.encode("utf-8")
            parts.append(_frame_header(1, len(payload)))
            parts.append(payload)
        else:
            raise TypeError(f"text must be str or None, not {type(text).__name__}")
        for att in atts:
            parts.append(_frame_header(2, len(att)))
            parts.append(att)
        self._text = text
        self._attachments = tuple(atts)
        self._ws = b"".join(parts)
        self._polling = None
        self._deflated = None

    @property
    def text(self) -> str | None:
        return self._text

    @property
    def attachments(self) -> tuple:
        return self._attachments

    @property
    def ws(self) -> bytes:
        return self._ws

    @property
    def polling(self) -> tuple:
        records = self._polling
        if records is None:
            records = [b"b" + b64encode(att) for att in self._attachments]
            if self._text is not None:
                records.insert(0, self._text.encode("utf-8"))
            records = self._polling = tuple(records)
        return records

    def ws_deflated(self, threshold: int = 1024) -> bytes:
        """``ws`` for the recipients that negotiated permessage-deflate: every frame
        whose payload has ``threshold`` bytes or more compressed on its own (RSV1 set),
        the smaller ones plain. Computed once per packet (per threshold) and shared."""
        cached = self._deflated
        if cached is not None and cached[0] == threshold:
            return cached[1]
        frames = [(2, att) for att in self._attachments]
        if self._text is not None:
            frames.insert(0, (1, self._text.encode("utf-8")))
        if all(len(payload) < threshold for _, payload in frames):
            out = self._ws   # nothing to compress: the plain frames are the same bytes
        else:
            parts = []
            for opcode, payload in frames:
                if len(payload) >= threshold:
                    payload = _deflate(payload)
                    opcode |= _RSV1
                parts.append(_frame_header(opcode, len(payload)))
                parts.append(payload)
            out = b"".join(parts)
        self._deflated = (threshold, out)
        return out

    def __eq__(self, other):
        if not isinstance(other, EncodedPacket):
            return NotImplemented
        return self._text == other._text and self._attachments == other._attachments

    def __hash__(self) -> int:
        return hash((self._text, self._attachments))

    def __repr__(self) -> str:
        text = self._text if self._text is None or len(self._text) <= 80 else self._text[:77] + "..."
        return f"EncodedPacket(text={text!r}, attachments={len(self._attachments)})"


# ---------------------------------------------------------------- JSON

def _date_json(value):
    """Date.toJSON for aware datetimes; naive ones have no zone to convert."""
    if isinstance(value, datetime):
        if value.tzinfo is not None and value.utcoffset() is not None:
            u = value.astimezone(timezone.utc)
            return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (
                u.year, u.month, u.day, u.hour, u.minute, u.second, u.microsecond // 1000)
        return value.isoformat(timespec="milliseconds")
    return value.isoformat()


def _dumps(obj, default) -> str:
    # NOTE: the C encoder is driven directly: json.dumps() builds a JSONEncoder
    # on every call, which costs more than encoding a typical small event.
    if c_make_encoder is not None:
        encode = c_make_encoder({}, default, encode_basestring, None, ":", ",", False, False, False)
        return "".join(encode(obj, 0))
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False, default=default)


# The slow path recurses itself (in C, for the compiled twin): bound it the same
# in both twins, below the stdlib encoder's own limit.
_MAX_DEPTH = 200
_NONFINITE_KEYS = {math.inf: "Infinity", -math.inf: "-Infinity"}


_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _escape_surrogate(match) -> str:
    return "\\u%04x" % ord(match.group())


def _finite(obj, active: set, depth: int = 0):
    """A copy of obj with NaN/Infinity replaced by None, as JSON.stringify does.

    Only used on the slow path (a first encode refused a non-finite float).
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (list, tuple, dict)):
        if depth > _MAX_DEPTH:
            raise RecursionError("packet data nested too deeply")
        key = id(obj)
        if key in active:
            raise TypeError("circular reference in packet data")
        active.add(key)
        if isinstance(obj, dict):
            out = {}
            for k, v in obj.items():
                if isinstance(k, float) and not math.isfinite(k):
                    k = _NONFINITE_KEYS.get(k, "NaN")
                out[k] = _finite(v, active, depth + 1)
        else:
            out = []
            for v in obj:  # a loop, not a comprehension: one frame per level
                out.append(_finite(v, active, depth + 1))
        active.discard(key)
        return out
    return obj


def _encode_json(data, binary_ok: bool):
    """(json text, attachments) of data; bytes-likes become placeholders."""
    if plain_encoder is not None:   # plain data first (roomcast.plain_json)
        try:
            return "".join(plain_encoder(data, 0)), []
        except NOT_PLAIN_ERRORS:
            pass   # the full path, from the start: the same text or the same error
    attachments = []

    def default(obj):
        if isinstance(obj, _BYTES_LIKE):
            if not binary_ok:
                raise TypeError("binary data is only allowed in EVENT and ACK packets")
            attachments.append(obj if type(obj) is bytes else bytes(obj))
            return {"_placeholder": True, "num": len(attachments) - 1}
        if isinstance(obj, date):
            return _date_json(obj)
        raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")

    try:
        return _dumps(data, default), attachments
    except ValueError:
        # allow_nan is off so that the common case needs no extra walk; a
        # refusal means NaN/Infinity (-> null), a cycle or an absurd int.
        del attachments[:]
        data = _finite(data, set())
        try:
            return _dumps(data, default), attachments
        except ValueError as exc:
            raise TypeError(f"packet data is not serialisable: {exc}") from None


# ---------------------------------------------------------------- public API

def _check_type(type_: object) -> int:
    if type(type_) is not int:
        raise TypeError(f"packet type must be int, not {type(type_).__name__}")
    if not 0 <= type_ <= 6:
        raise ValueError(f"packet type out of range: {type_}")
    return type_


def encode_packet(type: int, nsp: str, data: object = None, id: int | None = None) -> EncodedPacket:
    """Encode one Socket.IO packet as the Engine.IO message that carries it."""
    ptype = _check_type(type)
    if not isinstance(nsp, str):
        raise TypeError(f"namespace must be str, not {nsp.__class__.__name__}")
    if not nsp.startswith("/") or "," in nsp:
        raise ValueError(f"invalid namespace {nsp!r}: must start with '/' and hold no ','")
    if id is not None:
        if id.__class__ is not int:
            raise TypeError(f"ack id must be int or None, not {id.__class__.__name__}")
        if id < 0:
            raise ValueError(f"ack id must not be negative: {id}")
    binary_ok = ptype in (EVENT, ACK, BINARY_EVENT, BINARY_ACK)
    if data is None:
        body, attachments = "", []
    else:
        body, attachments = _encode_json(data, binary_ok)
    if attachments:
        if ptype == EVENT:
            ptype = BINARY_EVENT
        elif ptype == ACK:
            ptype = BINARY_ACK
    head = "4%d" % ptype
    if ptype >= BINARY_EVENT:
        head += "%d-" % len(attachments)
    if nsp != "/":
        head += nsp + ","
    if id is not None:
        head += "%d" % id
    try:
        return EncodedPacket(head + body, attachments)
    except UnicodeEncodeError:
        # Lone surrogates cannot be UTF-8: JSON.stringify escapes them, and so
        # do we (a namespace holding one cannot be fixed, and raises again).
        return EncodedPacket(head + _LONE_SURROGATE.sub(_escape_surrogate, body), attachments)


def _msgpack_packet(ptype: int, nsp: object, data: object, id: object) -> dict:
    """The packet object socket.io-msgpack-parser encodes, checked as encode_packet checks.

    Keys in the order Node's socket.io builds them for broadcasts and acks
    ({type, data, nsp[, id]}; an ack {id, type, data, nsp}); data and id only when set.
    """
    if ptype > CONNECT_ERROR:
        raise ValueError("the msgpack parser has no binary packet types: use EVENT or ACK")
    if not isinstance(nsp, str):
        raise TypeError(f"namespace must be str, not {nsp.__class__.__name__}")
    if not nsp.startswith("/"):
        raise ValueError(f"invalid namespace {nsp!r}: must start with '/'")
    packet: dict = {}
    if id is not None:
        if id.__class__ is not int:
            raise TypeError(f"ack id must be int or None, not {id.__class__.__name__}")
        if id < 0:
            raise ValueError(f"ack id must not be negative: {id}")
        if ptype == ACK:
            packet["id"] = id
    packet["type"] = ptype
    if data is not None:
        packet["data"] = data
    packet["nsp"] = nsp
    if id is not None and ptype != ACK:
        packet["id"] = id
    return packet


def encode_msgpack(type: int, nsp: str, data: object = None, id: int | None = None) -> EncodedPacket:
    """Encode one Socket.IO packet as socket.io-msgpack-parser 3.x does: one binary
    Engine.IO message holding the msgpack map of the packet; bytes stay in place (no
    attachments), datetimes are notepack.io 2.x Dates. Unserialisable data -> TypeError."""
    from roomcast._notepack import encode   # msgpack is an optional dependency

    packet = _msgpack_packet(_check_type(type), nsp, data, id)
    try:
        payload = encode(packet, legacy_dates=True)
    except RecursionError:
        raise TypeError("packet data nested too deeply or circular") from None
    return EncodedPacket(None, (payload,))


def encode_eio(type: int, data: str | bytes | None = None) -> EncodedPacket:
    """A bare Engine.IO packet; bytes-like data only for a message (type 4)."""
    ptype = _check_type(type)
    if data is None:
        return EncodedPacket("%d" % ptype)
    if isinstance(data, str):
        return EncodedPacket("%d" % ptype + data)
    if isinstance(data, _BYTES_LIKE):
        if ptype != EIO_MESSAGE:
            raise ValueError("binary data is only allowed in a message packet (type 4)")
        return EncodedPacket(None, (data,))
    raise TypeError(f"data must be str, bytes or None, not {data.__class__.__name__}")


def ws_frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked server WebSocket frame."""
    if opcode.__class__ is not int:
        raise TypeError(f"opcode must be int, not {opcode.__class__.__name__}")
    if opcode not in _VALID_OPCODES:
        raise ValueError(f"invalid WebSocket opcode: {opcode}")
    if not isinstance(payload, _BYTES_LIKE):
        raise TypeError(f"payload must be bytes-like, not {payload.__class__.__name__}")
    length = len(payload) if not isinstance(payload, memoryview) else payload.nbytes
    if opcode >= 8 and length > 125:
        raise ValueError("control frame payload longer than 125 bytes")
    return _frame_header(opcode, length) + payload

# cython: language_level=3
"""Compiled twin of roomcast/_encoder_py.py: Socket.IO packet -> finished wire bytes.

Same names, signatures, results and exception types as the pure twin (checked
by tests/unit/test_encoder_parity.py); the module docstring there states the
wire rules. What is compiled here is the framing: every WebSocket frame of a
packet is written into a single bytes object, headers built in C, with one
allocation for the whole ``ws`` buffer. JSON stays with the stdlib C encoder,
which runs once per broadcast, not per recipient.
"""
import json
import math
import re
import zlib
from base64 import b64encode
from datetime import date, datetime, timezone
from json.encoder import c_make_encoder, encode_basestring

from roomcast.plain_json import NOT_PLAIN_ERRORS, plain_encoder

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.string cimport memcpy

__all__ = ["EncodedPacket", "encode_packet", "encode_msgpack", "encode_eio", "ws_frame"]

cdef int EVENT = 2
cdef int ACK = 3
cdef int CONNECT_ERROR = 4
cdef int BINARY_EVENT = 5
cdef int BINARY_ACK = 6
cdef int EIO_MESSAGE = 4

cdef tuple _BYTES_LIKE = (bytes, bytearray, memoryview)


# ---------------------------------------------------------------- framing

cdef inline Py_ssize_t _header_len(Py_ssize_t length) noexcept nogil:
    if length < 126:
        return 2
    if length < 65536:
        return 4
    return 10


cdef inline unsigned char* _write_header(unsigned char* p, int opcode,
                                         Py_ssize_t length) noexcept nogil:
    # Server frames are never masked; always FIN (we never fragment).
    cdef int shift
    cdef unsigned long long n = <unsigned long long>length
    p[0] = <unsigned char>(0x80 | opcode)
    if length < 126:
        p[1] = <unsigned char>length
        return p + 2
    if length < 65536:
        p[1] = 126
        p[2] = <unsigned char>(n >> 8)
        p[3] = <unsigned char>(n & 0xFF)
        return p + 4
    p[1] = 127
    for shift in range(8):
        p[2 + shift] = <unsigned char>((n >> (56 - 8 * shift)) & 0xFF)
    return p + 10


cdef bytes _build_ws(object text, tuple atts):
    """Every frame of the packet, written into one freshly allocated bytes."""
    cdef const char* tp = NULL
    cdef Py_ssize_t tn = 0
    cdef Py_ssize_t total = 0
    cdef Py_ssize_t n
    cdef object att
    if text is not None:
        tp = PyUnicode_AsUTF8AndSize(text, &tn)
        total += _header_len(tn) + tn
    for att in atts:
        n = PyBytes_GET_SIZE(att)
        total += _header_len(n) + n
    cdef bytes out = PyBytes_FromStringAndSize(NULL, total)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
    if text is not None:
        p = _write_header(p, 1, tn)
        memcpy(p, tp, tn)
        p += tn
    for att in atts:
        n = PyBytes_GET_SIZE(att)
        p = _write_header(p, 2, n)
        memcpy(p, PyBytes_AS_STRING(att), n)
        p += n
    return out


cdef int _RSV1 = 0x40   # permessage-deflate: the message is compressed


cdef bytes _deflate(bytes payload):
    """One message compressed alone (server_no_context_takeover), as RFC 7692 sends
    it: raw deflate, 15-bit window, sync-flushed, the final 00 00 ff ff removed."""
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -zlib.MAX_WBITS)
    cdef bytes out = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4]


cdef bytes _build_deflated(list frames, Py_ssize_t threshold):
    """Frames (opcode, payload) into one buffer, each payload of threshold bytes or more
    compressed (RSV1 set)."""
    cdef Py_ssize_t total = 0, n
    cdef int opcode
    cdef bytes payload
    cdef list ready = []
    for opcode, payload in frames:
        if PyBytes_GET_SIZE(payload) >= threshold:
            payload = _deflate(payload)
            opcode |= _RSV1
        n = PyBytes_GET_SIZE(payload)
        total += _header_len(n) + n
        ready.append((opcode, payload))
    cdef bytes out = PyBytes_FromStringAndSize(NULL, total)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
    for opcode, payload in ready:
        n = PyBytes_GET_SIZE(payload)
        p = _write_header(p, opcode, n)
        memcpy(p, PyBytes_AS_STRING(payload), n)
        p += n
    return out


cdef class EncodedPacket:
    """One encoded packet, immutable and shared by every recipient.

    ``text`` is the Engine.IO text packet ("4" + Socket.IO text for messages);
    it is None for a bare binary Engine.IO message (then ``attachments`` holds
    exactly that one payload). ``polling`` is computed on first use and cached,
    since WebSocket-only broadcasts never need it.
    """
    cdef readonly object text
    cdef readonly tuple attachments
    cdef readonly bytes ws
    cdef tuple _polling
    cdef object _deflated_threshold
    cdef bytes _deflated

    def __init__(self, text, attachments=()):
        cdef list atts = []
        for att in attachments:
            if not isinstance(att, _BYTES_LIKE):
                raise TypeError(f"attachments must be bytes-like, not {type(att).__name__}")
            atts.append(att if type(att) is bytes else bytes(att))
        if text is None:
            if len(atts) != 1:
                raise ValueError("a binary-only packet has exactly one attachment")
        elif not isinstance(text, str):
            raise TypeError(f"text must be str or None, not {type(text).__name__}")
        _fill(self, text, tuple(atts))

    @property
    def polling(self):
        cdef const char* tp
        cdef Py_ssize_t tn
        cdef list records
        if self._polling is None:
            records = [b"b" + b64encode(att) for att in self.attachments]
            if self.text is not None:
                # reuses the UTF-8 form cached on the str when ws was built
                tp = PyUnicode_AsUTF8AndSize(self.text, &tn)
                records.insert(0, PyBytes_FromStringAndSize(tp, tn))
            self._polling = tuple(records)
        return self._polling

    def ws_deflated(self, threshold=1024):
        """``ws`` for the recipients that negotiated permessage-deflate: every frame
        whose payload has ``threshold`` bytes or more compressed on its own (RSV1 set),
        the smaller ones plain. Computed once per packet (per threshold) and shared.

        ws_deflated(threshold: int = 1024) -> bytes
        """
        cdef const char* tp
        cdef Py_ssize_t tn
        cdef Py_ssize_t limit = threshold
        cdef list frames
        cdef bint any_big = False
        if self._deflated is not None and self._deflated_threshold == threshold:
            return self._deflated
        frames = [(2, att) for att in self.attachments]
        if self.text is not None:
            tp = PyUnicode_AsUTF8AndSize(self.text, &tn)
            frames.insert(0, (1, PyBytes_FromStringAndSize(tp, tn)))
        for frame in frames:
            if PyBytes_GET_SIZE(frame[1]) >= limit:
                any_big = True
                break
        out = _build_deflated(frames, limit) if any_big else self.ws
        self._deflated_threshold = threshold
        self._deflated = out
        return out

    def __eq__(self, other):
        if not isinstance(other, EncodedPacket):
            return NotImplemented
        cdef EncodedPacket o = other
        return self.text == o.text and self.attachments == o.attachments

    def __hash__(self):
        return hash((self.text, self.attachments))

    def __repr__(self):
        text = self.text if self.text is None or len(self.text) <= 80 else self.text[:77] + "..."
        return f"EncodedPacket(text={text!r}, attachments={len(self.attachments)})"


cdef inline EncodedPacket _fill(EncodedPacket packet, object text, tuple atts):
    # builds ws before storing anything, so a UnicodeEncodeError leaves no half packet
    packet.ws = _build_ws(text, atts)
    packet.text = text
    packet.attachments = atts
    packet._polling = None
    return packet


cdef inline EncodedPacket _make(object text, tuple atts):
    """An EncodedPacket from already checked parts (skips __init__)."""
    return _fill(EncodedPacket.__new__(EncodedPacket), text, atts)


# ---------------------------------------------------------------- JSON

cdef object _date_json(object value):
    """Date.toJSON for aware datetimes; naive ones have no zone to convert."""
    if isinstance(value, datetime):
        if value.tzinfo is not None and value.utcoffset() is not None:
            u = value.astimezone(timezone.utc)
            return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (
                u.year, u.month, u.day, u.hour, u.minute, u.second, u.microsecond // 1000)
        return value.isoformat(timespec="milliseconds")
    return value.isoformat()


@cython.final
cdef class _Collector:
    """The JSON ``default`` hook: bytes-likes become numbered placeholders."""
    cdef list attachments
    cdef bint binary_ok

    def __cinit__(self, bint binary_ok):
        self.attachments = []
        self.binary_ok = binary_ok

    def default(self, obj):
        if isinstance(obj, _BYTES_LIKE):
            if not self.binary_ok:
                raise TypeError("binary data is only allowed in EVENT and ACK packets")
            self.attachments.append(obj if type(obj) is bytes else bytes(obj))
            return {"_placeholder": True, "num": len(self.attachments) - 1}
        if isinstance(obj, date):
            return _date_json(obj)
        raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


cdef str _dumps(object obj, object default):
    # NOTE: the C encoder is driven directly: json.dumps() builds a JSONEncoder
    # on every call, which costs more than encoding a typical small event.
    if c_make_encoder is not None:
        encode = c_make_encoder({}, default, encode_basestring, None, ":", ",", False, False, False)
        return "".join(encode(obj, 0))
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False, default=default)


# The slow path recurses itself (in C, for the compiled twin): bound it the same
# in both twins, below the stdlib encoder's own limit.
cdef int _MAX_DEPTH = 200
cdef dict _NONFINITE_KEYS = {math.inf: "Infinity", -math.inf: "-Infinity"}


_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _escape_surrogate(match) -> str:
    return "\\u%04x" % ord(match.group())


cdef object _finite(object obj, set active, int depth=0):
    """A copy of obj with NaN/Infinity replaced by None, as JSON.stringify does."""
    cdef dict out
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
            result = out
        else:
            result = [_finite(v, active, depth + 1) for v in obj]
        active.discard(key)
        return result
    return obj


cdef tuple _encode_json(object data, bint binary_ok):
    """(json text, attachments) of data; bytes-likes become placeholders."""
    if plain_encoder is not None:   # plain data first (roomcast.plain_json)
        try:
            return "".join(plain_encoder(data, 0)), []
        except NOT_PLAIN_ERRORS:
            pass   # the full path, from the start: the same text or the same error
    cdef _Collector collector = _Collector(binary_ok)
    try:
        return _dumps(data, collector.default), collector.attachments
    except ValueError:
        # allow_nan is off so that the common case needs no extra walk; a
        # refusal means NaN/Infinity (-> null), a cycle or an absurd int.
        del collector.attachments[:]
        data = _finite(data, set())
        try:
            return _dumps(data, collector.default), collector.attachments
        except ValueError as exc:
            raise TypeError(f"packet data is not serialisable: {exc}") from None


# ---------------------------------------------------------------- public API

cdef int _check_type(object type_) except -1:
    if type(type_) is not int:
        raise TypeError(f"packet type must be int, not {type(type_).__name__}")
    if not 0 <= type_ <= 6:
        raise ValueError(f"packet type out of range: {type_}")
    return type_


def encode_packet(type, nsp, data=None, id=None):
    """Encode one Socket.IO packet as the Engine.IO message that carries it.

    encode_packet(type: int, nsp: str, data: object = None, id: int | None = None) -> EncodedPacket
    """
    cdef int ptype = _check_type(type)
    cdef bint binary_ok
    cdef str body, head
    cdef list attachments
    if not isinstance(nsp, str):
        raise TypeError(f"namespace must be str, not {nsp.__class__.__name__}")
    if not nsp.startswith("/") or "," in nsp:
        raise ValueError(f"invalid namespace {nsp!r}: must start with '/' and hold no ','")
    if id is not None:
        if id.__class__ is not int:
            raise TypeError(f"ack id must be int or None, not {id.__class__.__name__}")
        if id < 0:
            raise ValueError(f"ack id must not be negative: {id}")
    binary_ok = EVENT <= ptype <= ACK or ptype >= BINARY_EVENT
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
        return _make(head + body, tuple(attachments))
    except UnicodeEncodeError:
        # Lone surrogates cannot be UTF-8: JSON.stringify escapes them, and so
        # do we (a namespace holding one cannot be fixed, and raises again).
        return _make(head + _LONE_SURROGATE.sub(_escape_surrogate, body), tuple(attachments))


cdef dict _msgpack_packet(int ptype, object nsp, object data, object id):
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
    cdef dict packet = {}
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


def encode_msgpack(type, nsp, data=None, id=None):
    """Encode one Socket.IO packet as socket.io-msgpack-parser 3.x does: one binary
    Engine.IO message holding the msgpack map of the packet; bytes stay in place (no
    attachments), datetimes are notepack.io 2.x Dates. Unserialisable data -> TypeError.

    encode_msgpack(type: int, nsp: str, data: object = None, id: int | None = None) -> EncodedPacket
    """
    from roomcast._notepack import encode   # msgpack is an optional dependency

    cdef dict packet = _msgpack_packet(_check_type(type), nsp, data, id)
    try:
        payload = encode(packet, legacy_dates=True)
    except RecursionError:
        raise TypeError("packet data nested too deeply or circular") from None
    return _make(None, (payload,))


def encode_eio(type, data=None):
    """A bare Engine.IO packet; bytes-like data only for a message (type 4).

    encode_eio(type: int, data: str | bytes | None = None) -> EncodedPacket
    """
    cdef int ptype = _check_type(type)
    if data is None:
        return _make("%d" % ptype, ())
    if isinstance(data, str):
        return _make("%d" % ptype + data, ())
    if isinstance(data, _BYTES_LIKE):
        if ptype != EIO_MESSAGE:
            raise ValueError("binary data is only allowed in a message packet (type 4)")
        return _make(None, (data if data.__class__ is bytes else bytes(data),))
    raise TypeError(f"data must be str, bytes or None, not {data.__class__.__name__}")


def ws_frame(opcode, payload):
    """One final, unmasked server WebSocket frame.

    ws_frame(opcode: int, payload: bytes) -> bytes
    """
    if opcode.__class__ is not int:
        raise TypeError(f"opcode must be int, not {opcode.__class__.__name__}")
    if opcode not in (0, 1, 2, 8, 9, 10):
        raise ValueError(f"invalid WebSocket opcode: {opcode}")
    if not isinstance(payload, _BYTES_LIKE):
        raise TypeError(f"payload must be bytes-like, not {payload.__class__.__name__}")
    cdef bytes data = payload if payload.__class__ is bytes else bytes(payload)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef int op = opcode
    if op >= 8 and n > 125:
        raise ValueError("control frame payload longer than 125 bytes")
    cdef bytes out = PyBytes_FromStringAndSize(NULL, _header_len(n) + n)
    cdef unsigned char* p = _write_header(<unsigned char*>PyBytes_AS_STRING(out), op, n)
    memcpy(p, PyBytes_AS_STRING(data), n)
    return out

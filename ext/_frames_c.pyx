# cython: language_level=3
"""The compiled frame parser (its twin: _frames_py.py): the WebSocket frames every
inbound event arrives in, parsed and unmasked in C (what it returns and refuses:
roomcast.ws_frames).

Same behaviour as the pure-Python parser, check for check and in the same order:
the same messages, the same WSProtocolError (code and text), the same state after
an error. Only what a frame's bytes are read with differs (a C view of the buffer
and a byte loop for the mask instead of big-int XOR).
"""
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize

from roomcast.ws_frames import WSProtocolError, check_close

cdef enum:
    CONTINUATION = 0
    TEXT = 1
    BINARY = 2
    CLOSE = 8
    PING = 9
    PONG = 10
    PROTOCOL_ERROR = 1002
    INVALID_DATA = 1007
    MESSAGE_TOO_BIG = 1009

cdef inline bint _known(int opcode):
    return opcode <= BINARY or CLOSE <= opcode <= PONG


cdef bytes _unmasked(const unsigned char* src, Py_ssize_t n, const unsigned char* mask):
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n)
    cdef unsigned char* dst = <unsigned char*>PyBytes_AS_STRING(out)
    cdef Py_ssize_t i
    for i in range(n):
        dst[i] = src[i] ^ mask[i & 3]
    return out


cdef class FrameParser:
    """Client->server frame parser; one per connection."""

    cdef public object max_message_size
    cdef public object inflater
    cdef bytearray _buf
    cdef int _frag_opcode          # -1: no fragmented message in progress
    cdef bint _frag_compressed
    cdef list _frags
    cdef unsigned long long _frag_size
    cdef object _error
    cdef bint _refuse_all          # max_message_size < 0: every message is too big
    cdef unsigned long long _max

    def __init__(self, max_message_size, inflater=None):
        self.max_message_size = max_message_size
        self.inflater = inflater
        self._buf = bytearray()
        self._frag_opcode = -1
        self._frag_compressed = False
        self._frags = None
        self._frag_size = 0
        self._error = None
        self._refuse_all = max_message_size < 0
        self._max = 0 if self._refuse_all else min(max_message_size, (1 << 64) - 1)

    def feed(self, data):
        """Add bytes; return every message completed by them."""
        if self._error is not None:
            raise self._error
        buf = self._buf
        buf += data
        out = []
        cdef Py_ssize_t pos
        try:
            pos = self._parse(buf, out)
        except WSProtocolError as exc:
            exc.messages = out
            self._error = exc
            self._frags = None
            del buf[:]
            raise
        if pos:
            del buf[:pos]
        return out

    cdef Py_ssize_t _parse(self, bytearray buf, list out) except -1:
        cdef const unsigned char* p = <const unsigned char*>PyByteArray_AS_STRING(buf)
        cdef Py_ssize_t end = PyByteArray_GET_SIZE(buf)
        cdef Py_ssize_t pos = 0
        cdef Py_ssize_t header
        cdef unsigned char b0, b1
        cdef int opcode, rsv
        cdef bint fin, compressed
        cdef unsigned long long length, total
        cdef int k
        cdef object payload
        while end - pos >= 2:
            b0 = p[pos]
            b1 = p[pos + 1]
            fin = b0 & 0x80
            opcode = b0 & 0x0F
            rsv = b0 & 0x70
            if rsv and (rsv != 0x40 or self.inflater is None or opcode == CONTINUATION
                        or opcode >= CLOSE):
                raise WSProtocolError(PROTOCOL_ERROR, "reserved bits set (no extension negotiated)"
                                      if self.inflater is None else "reserved bits set")
            if not _known(opcode):
                raise WSProtocolError(PROTOCOL_ERROR, f"reserved opcode {opcode}")
            if not b1 & 0x80:
                raise WSProtocolError(PROTOCOL_ERROR, "client frames must be masked")
            length = b1 & 0x7F
            header = 6
            if opcode >= CLOSE:
                if not fin:
                    raise WSProtocolError(PROTOCOL_ERROR, "fragmented control frame")
                if length > 125:
                    raise WSProtocolError(PROTOCOL_ERROR, "control frame longer than 125 bytes")
            elif length >= 126:
                if length == 126:
                    header = 8
                    if end - pos < 4:
                        break
                    length = (<unsigned long long>p[pos + 2] << 8) | p[pos + 3]
                else:
                    header = 14
                    if end - pos < 10:
                        break
                    length = 0
                    for k in range(8):
                        length = (length << 8) | p[pos + 2 + k]
                    if length >> 63:
                        raise WSProtocolError(PROTOCOL_ERROR, "payload length with the top bit set")
            if opcode == CONTINUATION:
                if self._frag_opcode < 0:
                    raise WSProtocolError(PROTOCOL_ERROR, "continuation frame with no message")
                total = self._frag_size + length
            elif opcode < CLOSE:
                if self._frag_opcode >= 0:
                    raise WSProtocolError(PROTOCOL_ERROR, "new message before the last one finished")
                total = length
            else:
                total = 0
            if self._refuse_all or total > self._max:
                raise WSProtocolError(
                    MESSAGE_TOO_BIG, f"message of {total} bytes exceeds the limit of "
                    f"{self.max_message_size}")
            if end - pos < header or length > <unsigned long long>(end - pos - header):
                break  # wait for the rest of the payload
            payload = _unmasked(p + pos + header, <Py_ssize_t>length, p + pos + header - 4)
            pos += header + <Py_ssize_t>length
            if opcode >= CLOSE:
                if opcode == CLOSE:
                    check_close(payload)   # shared with the twin (rare frames)
                out.append((opcode, payload))
                continue
            compressed = rsv != 0
            if opcode == CONTINUATION:
                self._frags.append(payload)
                self._frag_size += length
                if not fin:
                    continue
                opcode = self._frag_opcode
                compressed = self._frag_compressed
                payload = b"".join(self._frags)
                self._frag_opcode = -1
                self._frags = None
                self._frag_size = 0
            elif not fin:
                self._frag_opcode = opcode
                self._frag_compressed = compressed
                self._frags = [payload]
                self._frag_size = length
                continue
            if compressed:
                payload = self.inflater.inflate(payload)
            if opcode == TEXT:
                try:
                    payload.decode("utf-8")
                except UnicodeDecodeError:
                    raise WSProtocolError(INVALID_DATA, "text message is not valid UTF-8") from None
            out.append((opcode, payload))
        return pos

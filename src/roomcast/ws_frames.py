"""Incremental WebSocket (RFC 6455) parser for client->server frames (sans-IO).

Feed it bytes as they arrive; it returns every complete message as
``(opcode, payload)``: TEXT (UTF-8 checked, still bytes), BINARY, and the
control frames CLOSE, PING and PONG, in arrival order (a control frame may
arrive between the fragments of a message and is returned on its own).

What a server must refuse is refused with :class:`WSProtocolError`, whose
``code`` is the close code to answer with: 1002 for protocol violations
(unmasked frame, reserved bits or opcodes, bad fragmentation, bad control
frame), 1007 for invalid UTF-8, 1009 for a message over ``max_message_size``
(compressed messages, with permessage-deflate: also once inflated).
The size is judged from the frame header, adding the fragments received so
far, before any of the payload is waited for, so a peer cannot make us
buffer more than the limit. After an error the parser stays failed.

Server frames (unmasked) are built by ``_speedups.ws_frame``; only the close
frame, needed when refusing a peer, has a helper here.
"""
from __future__ import annotations

__all__ = [
    "CONTINUATION", "TEXT", "BINARY", "CLOSE", "PING", "PONG",
    "WSProtocolError", "FrameParser", "close_frame", "parse_close",
]

CONTINUATION = 0
TEXT = 1
BINARY = 2
CLOSE = 8
PING = 9
PONG = 10
_KNOWN_OPCODES = frozenset((CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG))

PROTOCOL_ERROR = 1002
INVALID_DATA = 1007
MESSAGE_TOO_BIG = 1009


class WSProtocolError(Exception):
    """The peer broke RFC 6455; close the connection with ``code``.

    ``messages`` holds the complete messages parsed before the error, in
    case the caller wants to act on them (for instance a preceding close).
    """

    def __init__(self, code: int, message: str, messages: list | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.messages = messages or []


# One 256-byte XOR table per key byte, for the translate() path of _unmask.
_XOR_TABLES = [bytes(b ^ k for b in range(256)) for k in range(256)]


def _unmask(data, mask: bytes) -> bytes:
    # PERF: never a per-byte Python loop. Small payloads XOR as one big int;
    # from ~1 kB on, four strided translate() passes win (measured ~0.9 ms/MB
    # against ~2.6 ms/MB for the int, and ~100 ms/MB for a loop).
    n = len(data)
    if n < 1024:
        if n == 0:
            return b""
        key = (mask * ((n + 3) >> 2))[:n]
        return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")
    out = bytearray(data)
    for i in range(4):
        out[i::4] = out[i::4].translate(_XOR_TABLES[mask[i]])
    return bytes(out)


def _valid_close_code(code: int) -> bool:
    # 1004-1006 and 1015 are reserved and never sent; 1016-2999 are unassigned.
    return (1000 <= code <= 1014 and code not in (1004, 1005, 1006)) or 3000 <= code <= 4999


def parse_close(payload: bytes) -> tuple[int | None, str]:
    """(code, reason) of a close frame's payload; code None when absent."""
    if len(payload) < 2:
        return None, ""
    return int.from_bytes(payload[:2], "big"), payload[2:].decode("utf-8", "replace")


def close_frame(code: int | None = 1000, reason: str = "") -> bytes:
    """An unmasked server close frame (reason cut to fit the 125-byte limit)."""
    if code is None:
        return b"\x88\x00"
    raw = reason.encode("utf-8")[:123]
    # a cut may split a character; drop the partial tail so it stays UTF-8
    payload = code.to_bytes(2, "big") + raw.decode("utf-8", "ignore").encode("utf-8")
    return bytes((0x88, len(payload))) + payload


class FrameParser:
    """Client->server frame parser; one per connection."""

    def __init__(self, max_message_size: int, inflater=None) -> None:
        self.max_message_size = max_message_size
        # permessage-deflate negotiated: a ws_deflate.Inflater; RSV1 then marks a
        # compressed message (on its first frame), inflated up to its own limit
        self.inflater = inflater
        self._buf = bytearray()
        self._frag_opcode: int | None = None  # opcode of the message being fragmented
        self._frag_compressed = False
        self._frags: list[bytes] | tuple = ()   # a list while a fragmented message comes
        self._frag_size = 0
        self._error: WSProtocolError | None = None

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Add bytes; return every message completed by them."""
        if self._error is not None:
            raise self._error
        buf = self._buf
        buf += data
        out: list[tuple[int, bytes]] = []
        pos = 0
        try:
            pos = self._parse(buf, out)
        except WSProtocolError as exc:
            exc.messages = out
            self._error = exc
            self._frags = ()
            del buf[:]
            raise
        if pos:
            del buf[:pos]  # cheap: CPython moves the start of a bytearray in place
        return out

    def _parse(self, buf: bytearray, out: list) -> int:
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            fin = b0 & 0x80
            opcode = b0 & 0x0F
            rsv = b0 & 0x70
            if rsv and (rsv != 0x40 or self.inflater is None or opcode == CONTINUATION
                        or opcode >= CLOSE):
                raise WSProtocolError(PROTOCOL_ERROR, "reserved bits set (no extension negotiated)"
                                      if self.inflater is None else "reserved bits set")
            if opcode not in _KNOWN_OPCODES:
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
                    length = int.from_bytes(buf[pos + 2:pos + 4], "big")
                else:
                    header = 14
                    if end - pos < 10:
                        break
                    length = int.from_bytes(buf[pos + 2:pos + 10], "big")
                    if length >> 63:
                        raise WSProtocolError(PROTOCOL_ERROR, "payload length with the top bit set")
            if opcode == CONTINUATION:
                if self._frag_opcode is None:
                    raise WSProtocolError(PROTOCOL_ERROR, "continuation frame with no message")
                total = self._frag_size + length
            elif opcode < CLOSE:
                if self._frag_opcode is not None:
                    raise WSProtocolError(PROTOCOL_ERROR, "new message before the last one finished")
                total = length
            else:
                total = 0
            if total > self.max_message_size:
                raise WSProtocolError(
                    MESSAGE_TOO_BIG, f"message of {total} bytes exceeds the limit of "
                    f"{self.max_message_size}")
            frame_end = pos + header + length
            if frame_end > end:
                break  # wait for the rest of the payload
            mask = bytes(buf[pos + header - 4:pos + header])
            payload = _unmask(buf[pos + header:frame_end], mask)
            pos = frame_end
            if opcode >= CLOSE:
                if opcode == CLOSE:
                    self._check_close(payload)
                out.append((opcode, payload))
                continue
            compressed = rsv != 0
            if opcode == CONTINUATION:
                if type(self._frags) is tuple:
                    self._frags = list(self._frags)
                self._frags.append(payload)
                self._frag_size += length
                if not fin:
                    continue
                opcode = self._frag_opcode
                compressed = self._frag_compressed
                payload = b"".join(self._frags)
                self._frag_opcode = None
                self._frags = ()
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

    @staticmethod
    def _check_close(payload: bytes) -> None:
        if not payload:
            return
        if len(payload) == 1:
            raise WSProtocolError(PROTOCOL_ERROR, "close frame with a 1-byte payload")
        code = int.from_bytes(payload[:2], "big")
        if not _valid_close_code(code):
            raise WSProtocolError(PROTOCOL_ERROR, f"invalid close code {code}")
        try:
            payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            raise WSProtocolError(INVALID_DATA, "close reason is not valid UTF-8") from None

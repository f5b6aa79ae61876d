"""The pure-Python twin of the compiled frame parser (ext/_frames_c.pyx): client->server
WebSocket frames, parsed incrementally (what it returns and refuses: roomcast.ws_frames).
Sans-IO."""
from __future__ import annotations

from roomcast.ws_frames import (
    BINARY, CLOSE, CONTINUATION, INVALID_DATA, MESSAGE_TOO_BIG, PING, PONG, PROTOCOL_ERROR, TEXT,
    WSProtocolError, check_close,
)

_KNOWN_OPCODES = frozenset((CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG))


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
                    check_close(payload)
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

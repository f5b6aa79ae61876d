"""WebSocket (RFC 6455) frames from clients: what the parser returns and refuses (sans-IO).

The incremental parser is ``_speedups.FrameParser``: compiled (ext/_frames_c.pyx) or
its pure-Python twin (_frames_py.py), with the same behaviour. Feed it bytes as they
arrive; it returns every complete message as
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
    "WSProtocolError", "check_close", "close_frame", "parse_close",
]

CONTINUATION = 0
TEXT = 1
BINARY = 2
CLOSE = 8
PING = 9
PONG = 10

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


def check_close(payload: bytes) -> None:
    """Refuse a client close frame's payload that RFC 6455 forbids (both parsers)."""
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

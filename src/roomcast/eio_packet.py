"""Engine.IO v4 decoding: text packets and long-polling payloads (sans-IO).

A text packet is its type digit followed by its data (``"4hello"``, ``"2"``,
``"3probe"``). A polling body joins packets with the record separator
``\\x1e``; a binary message travels there as ``"b"`` + base64, without a type
digit, since only messages carry binary. Encoding lives in the encoder twins
(``_speedups.encode_eio``), which produce finished frames and records.
"""
from __future__ import annotations

import binascii
from base64 import b64decode

__all__ = [
    "OPEN", "CLOSE", "PING", "PONG", "MESSAGE", "UPGRADE", "NOOP", "PACKET_TYPES",
    "EngineParseError", "decode_text", "decode_polling_payload", "RECORD_SEPARATOR",
]

OPEN = 0
CLOSE = 1
PING = 2
PONG = 3
MESSAGE = 4
UPGRADE = 5
NOOP = 6
PACKET_TYPES = {"open": OPEN, "close": CLOSE, "ping": PING, "pong": PONG,
                "message": MESSAGE, "upgrade": UPGRADE, "noop": NOOP}

RECORD_SEPARATOR = b"\x1e"
_TYPE_DIGITS = "0123456"


class EngineParseError(ValueError):
    """A packet or payload that is not valid Engine.IO v4."""


def decode_text(s: str) -> tuple[int, str]:
    """``"4hello"`` -> ``(4, "hello")``."""
    if not s:
        raise EngineParseError("empty packet")
    digit = s[0]
    if digit not in _TYPE_DIGITS:
        raise EngineParseError(f"unknown packet type {digit!r}")
    return ord(digit) - 48, s[1:]


def decode_polling_payload(body: bytes) -> list[tuple[int, str | bytes]]:
    """Split a POST body into packets; ``b``+base64 records become ``(4, bytes)``."""
    if not body:
        raise EngineParseError("empty payload")
    packets: list[tuple[int, str | bytes]] = []
    for record in bytes(body).split(RECORD_SEPARATOR):
        if record[:1] == b"b":
            try:
                packets.append((MESSAGE, b64decode(record[1:], validate=True)))
            except binascii.Error as exc:
                raise EngineParseError(f"invalid base64 in binary record: {exc}") from None
            continue
        try:
            text = record.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EngineParseError(f"payload is not valid UTF-8: {exc}") from None
        packets.append(decode_text(text))
    return packets

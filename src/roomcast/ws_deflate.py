"""permessage-deflate (RFC 7692) for the server side, sans-IO: negotiation and the
bounded inflater of client messages. Compression of outgoing messages is the
encoder's (``EncodedPacket.ws_deflated``), once per broadcast.

roomcast always answers with ``server_no_context_takeover``: every server message is
compressed without history, so one compressed frame is valid for every recipient
that negotiated the extension, and a broadcast is compressed once however many
recipients it has. The window is 15 bits: an offer that limits
``server_max_window_bits`` below 15 is declined (that client gets plain frames).
A client may keep its own context (``client_no_context_takeover`` is honoured when
offered), so each connection has its own :class:`Inflater`.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

from roomcast.ws_frames import MESSAGE_TOO_BIG, PROTOCOL_ERROR, WSProtocolError

__all__ = ["DEFAULT_THRESHOLD", "DeflateParams", "negotiate", "Inflater", "deflate_options"]

#: Node's perMessageDeflate default threshold: smaller messages are sent plain
DEFAULT_THRESHOLD = 1024
EXTENSION = "permessage-deflate"
_TAIL = b"\x00\x00\xff\xff"


@dataclass(frozen=True)
class DeflateParams:
    """What was agreed with one client."""

    client_no_context_takeover: bool = False
    response: str = EXTENSION + "; server_no_context_takeover"


def deflate_options(value: bool | dict | None) -> dict | None:
    """The per_message_deflate option as {"threshold": int}, or None when off."""
    if value is None or value is False:
        return None
    if value is True:
        return {"threshold": DEFAULT_THRESHOLD}
    if isinstance(value, dict):
        unknown = set(value) - {"threshold"}
        if unknown:
            raise ValueError(f"per_message_deflate: unknown options {sorted(unknown)}")
        threshold = value.get("threshold", DEFAULT_THRESHOLD)
        if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 0:
            raise ValueError("per_message_deflate threshold must be an int >= 0")
        return {"threshold": threshold}
    raise TypeError("per_message_deflate must be a bool or a dict like {'threshold': 1024}")


def _window_bits(value: str | None) -> int | None:
    if value is None or not value.isdigit() or len(value) > 2:
        return None
    bits = int(value)
    return bits if 8 <= bits <= 15 else None


def _offer(params: list[str]) -> DeflateParams | None:
    """One permessage-deflate offer's parameters -> what we answer, or None to decline."""
    seen: set[str] = set()
    client_no_context = False
    for param in params:
        name, eq, value = param.partition("=")
        name = name.strip().lower()
        value = value.strip().strip('"') if eq else None
        if not name or name in seen:
            return None   # duplicate parameters make the offer invalid (RFC 7692 7.1)
        seen.add(name)
        if name == "server_no_context_takeover" or name == "client_no_context_takeover":
            if value is not None:
                return None
            client_no_context = client_no_context or name == "client_no_context_takeover"
        elif name == "server_max_window_bits":
            bits = _window_bits(value)
            if bits is None or bits < 15:
                return None   # we compress with a 15-bit window only
        elif name == "client_max_window_bits":
            # our inflater reads any client window up to 15 bits: nothing to answer
            if value is not None and _window_bits(value) is None:
                return None
        else:
            return None   # unknown parameter
    response = EXTENSION + "; server_no_context_takeover"
    if client_no_context:
        response += "; client_no_context_takeover"
    return DeflateParams(client_no_context, response)


def negotiate(header: str | None) -> DeflateParams | None:
    """The first acceptable permessage-deflate offer of a Sec-WebSocket-Extensions
    request header (several headers joined by ","), or None."""
    if not header:
        return None
    for offer in header.split(","):
        name, *params = offer.split(";")
        if name.strip().lower() != EXTENSION:
            continue
        agreed = _offer(params)
        if agreed is not None:
            return agreed
    return None


class Inflater:
    """Decompresses one connection's compressed messages, never past ``max_size``
    inflated bytes: a compression bomb costs at most that much memory and closes the
    connection (close code 1009)."""

    def __init__(self, max_size: int, no_context_takeover: bool = False) -> None:
        self.max_size = max_size
        self.no_context_takeover = no_context_takeover
        self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)

    def inflate(self, payload: bytes) -> bytes:
        if self.no_context_takeover:
            self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        inflater = self._inflater
        try:
            # at most max_size + 1 bytes: one more than allowed tells "too big"
            out = inflater.decompress(payload + _TAIL, self.max_size + 1)
        except zlib.error as exc:
            raise WSProtocolError(PROTOCOL_ERROR, f"invalid compressed message: {exc}") from None
        if len(out) > self.max_size or inflater.unconsumed_tail:
            raise WSProtocolError(MESSAGE_TOO_BIG, f"inflated message exceeds the limit of "
                                                   f"{self.max_size} bytes")
        return out

"""Packets sent with ``compress(False)``.

Node's engine.io compresses a long-polling response when any packet in it was
sent with ``compress: true`` (the default, which its own open/ping/message
packets carry; the transport's noop and close packets carry no option). An
``Uncompressed`` wraps a shared encoded packet for one send without copying
it: same bytes, only the flag differs.
"""
from __future__ import annotations

from typing import Any


class Uncompressed:
    """An encoded packet (``EncodedPacket``) that asked not to be compressed."""

    __slots__ = ("packet",)
    compress = False

    def __init__(self, packet: Any) -> None:
        self.packet = packet

    @property
    def ws(self) -> bytes:
        return self.packet.ws

    @property
    def polling(self) -> tuple[bytes, ...]:
        return self.packet.polling

    @property
    def text(self) -> str | None:
        return self.packet.text

    @property
    def attachments(self) -> tuple[bytes, ...]:
        return self.packet.attachments


def with_compress(packet: Any, compress: bool) -> Any:
    """The packet as it is (compressible), or wrapped when ``compress`` is False."""
    return packet if compress else Uncompressed(packet)


def wants_compression(packet: Any) -> bool:
    """Whether a queued packet lets its polling response be compressed."""
    return getattr(packet, "compress", True)

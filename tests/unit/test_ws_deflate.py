"""permessage-deflate (RFC 7692): negotiation, the bounded inflater, compressed client
frames in the frame parser, and the compress-once frames of the encoder."""
from __future__ import annotations

import os
import zlib

import pytest

from roomcast import _speedups
from roomcast.ws_deflate import DEFAULT_THRESHOLD, Inflater, deflate_options, negotiate
from roomcast.ws_frames import BINARY, TEXT, WSProtocolError
from tests.unit.test_ws_frames import client_frame


def deflate(data: bytes, keep: zlib.Deflate | None = None) -> bytes:
    c = keep or zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


@pytest.mark.parametrize("header, response", [
    ("permessage-deflate; client_max_window_bits", "permessage-deflate; server_no_context_takeover"),
    ("permessage-deflate", "permessage-deflate; server_no_context_takeover"),
    ("permessage-deflate; server_no_context_takeover; client_no_context_takeover",
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
    ("permessage-deflate; server_max_window_bits=15; client_max_window_bits=10",
     "permessage-deflate; server_no_context_takeover"),
    # the first acceptable offer wins: a 10-bit server window is declined
    ("permessage-deflate; server_max_window_bits=10, permessage-deflate",
     "permessage-deflate; server_no_context_takeover"),
    ("x-webkit-deflate-frame, PERMESSAGE-DEFLATE ; client_max_window_bits",
     "permessage-deflate; server_no_context_takeover"),
])
def test_negotiation_accepts(header, response):
    assert negotiate(header).response == response


@pytest.mark.parametrize("header", [
    None, "", "x-webkit-deflate-frame", "permessage-deflate; server_max_window_bits=10",
    "permessage-deflate; unknown=1", "permessage-deflate; client_max_window_bits=99",
    "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    "permessage-deflate; server_no_context_takeover=1", "permessage-deflate; server_max_window_bits",
])
def test_negotiation_declines(header):
    assert negotiate(header) is None


def test_options():
    assert deflate_options(False) is None and deflate_options(None) is None
    assert deflate_options(True) == {"threshold": DEFAULT_THRESHOLD} == {"threshold": 1024}
    assert deflate_options({"threshold": 0}) == {"threshold": 0}
    with pytest.raises(ValueError):
        deflate_options({"threshold": -1})
    with pytest.raises(ValueError):
        deflate_options({"level": 9})
    with pytest.raises(TypeError):
        deflate_options("yes")


def test_inflater_with_and_without_client_context():
    keep = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    with_context = Inflater(1000)
    first, second = deflate(b"hello hello", keep), deflate(b"hello hello", keep)
    assert with_context.inflate(first) == b"hello hello"
    assert with_context.inflate(second) == b"hello hello"   # refers back to the first
    fresh = Inflater(1000, no_context_takeover=True)
    assert fresh.inflate(deflate(b"abc")) == fresh.inflate(deflate(b"abc")) == b"abc"


def test_inflater_stops_a_bomb_at_the_limit():
    bomb = deflate(b"\x00" * 50_000_000)          # ~50 kB that inflate to 50 MB
    assert len(bomb) < 100_000
    with pytest.raises(WSProtocolError) as err:
        Inflater(1_000_000).inflate(bomb)
    assert err.value.code == 1009
    assert Inflater(1_000_000).inflate(deflate(b"\x00" * 1_000_000)) == b"\x00" * 1_000_000
    with pytest.raises(WSProtocolError) as err:
        Inflater(1000).inflate(b"\xff\xff\xff not deflate")
    assert err.value.code == 1002


def test_frame_parser_inflates_rsv1_messages():
    parser = _speedups.FrameParser(100, inflater=Inflater(10_000))
    text = "é" * 500
    big = deflate(text.encode())
    whole = client_frame(TEXT, big, rsv=4)
    # fragmented: RSV1 on the first frame only
    frag = deflate(b"\x01" * 3000)
    fragments = (client_frame(BINARY, frag[:10], fin=False, rsv=4)
                 + client_frame(0, frag[10:], fin=True))
    plain = client_frame(TEXT, b"plain")
    assert parser.feed(whole + fragments + plain) == [
        (TEXT, text.encode()), (BINARY, b"\x01" * 3000), (TEXT, b"plain")]


@pytest.mark.parametrize("frame", [
    client_frame(TEXT, b"x", rsv=4),                  # RSV1 without the extension
    client_frame(TEXT, deflate(b"x"), rsv=2),         # RSV2
])
def test_frame_parser_refuses_reserved_bits_without_deflate(frame):
    with pytest.raises(WSProtocolError) as err:
        _speedups.FrameParser(100).feed(frame) if frame[0] & 0x40 else \
            _speedups.FrameParser(100, inflater=Inflater(100)).feed(frame)
    assert err.value.code == 1002


def test_frame_parser_bomb_closes_with_1009():
    parser = _speedups.FrameParser(1_000_000, inflater=Inflater(1_000_000))
    with pytest.raises(WSProtocolError) as err:
        parser.feed(client_frame(BINARY, deflate(b"a" * 5_000_000), rsv=4))
    assert err.value.code == 1009


def test_invalid_utf8_inside_a_compressed_text_message():
    parser = _speedups.FrameParser(100, inflater=Inflater(100))
    with pytest.raises(WSProtocolError) as err:
        parser.feed(client_frame(TEXT, deflate(b"\xff\xfe"), rsv=4))
    assert err.value.code == 1007


def read_server_frames(data: bytes) -> list[tuple[bool, int, bytes]]:
    """(rsv1, opcode, payload inflated when rsv1) of each unmasked server frame."""
    out, pos = [], 0
    while pos < len(data):
        b0, n = data[pos], data[pos + 1] & 0x7F
        pos += 2
        if n == 126:
            n, pos = int.from_bytes(data[pos:pos + 2], "big"), pos + 2
        elif n == 127:
            n, pos = int.from_bytes(data[pos:pos + 8], "big"), pos + 8
        payload = data[pos:pos + n]
        pos += n
        if b0 & 0x40:
            payload = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
        out.append((bool(b0 & 0x40), b0 & 0x0F, payload))
    return out


def test_encoder_compresses_each_big_frame_once():
    blob = os.urandom(200) * 20
    packet = _speedups.encode_packet(2, "/", ["big", "x" * 3000, blob, b"tiny"])
    deflated = packet.ws_deflated(DEFAULT_THRESHOLD)
    assert packet.ws_deflated(DEFAULT_THRESHOLD) is deflated       # computed once, shared
    frames = read_server_frames(deflated)
    assert [(rsv1, op) for rsv1, op, _ in frames] == [(True, 1), (True, 2), (False, 2)]
    assert [p for _, _, p in frames] == [p for _, _, p in read_server_frames(packet.ws)]
    assert len(deflated) < len(packet.ws) / 3
    small = _speedups.encode_packet(2, "/", ["hi"])
    assert small.ws_deflated(1024) is small.ws                      # under the threshold: plain
    assert read_server_frames(small.ws_deflated(0))[0] == (True, 1, b'42["hi"]')
    msgpack_packet = _speedups.encode_msgpack(2, "/", ["m", "y" * 2000])
    assert read_server_frames(msgpack_packet.ws_deflated(1024)) == [
        (True, 2, msgpack_packet.attachments[0])]


"""The client->server WebSocket frame parser (RFC 6455 section 5)."""
from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roomcast import _frames_py, _speedups
from roomcast._frames_py import _unmask
from roomcast.ws_frames import (
    BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, WSProtocolError, close_frame, parse_close,
)

try:
    from roomcast import _frames_c
except ImportError:   # the compiled core is not built: the parity test says so
    _frames_c = None


def FrameParser(max_message_size: int, inflater=None):  # noqa: N802 (the class it makes)
    """The parser of the core in use (the suite runs once with each, tests/conftest.py)."""
    return _speedups.FrameParser(max_message_size, inflater)

MASK = b"\x37\xfa\x21\x3d"


def client_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, mask: bytes | None = MASK,
                 rsv: int = 0, length: int | None = None) -> bytes:
    """A client frame built byte by byte (the reference the parser is checked against)."""
    n = len(payload) if length is None else length
    head = bytearray([(0x80 if fin else 0) | rsv << 4 | opcode])
    mask_bit = 0x80 if mask is not None else 0
    if n < 126:
        head.append(mask_bit | n)
    elif n < 65536:
        head.append(mask_bit | 126)
        head += n.to_bytes(2, "big")
    else:
        head.append(mask_bit | 127)
        head += n.to_bytes(8, "big")
    if mask is None:
        return bytes(head) + payload
    return bytes(head) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def feed_all(parser, data: bytes, chunk: int | None = None) -> list:
    if chunk is None:
        return parser.feed(data)
    out = []
    for i in range(0, len(data), chunk):
        out += parser.feed(data[i:i + chunk])
    return out


def error_of(data: bytes, max_size: int = 1 << 20) -> WSProtocolError:
    with pytest.raises(WSProtocolError) as info:
        FrameParser(max_size).feed(data)
    return info.value


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_length_forms(length):
    payload = os.urandom(length)
    frame = client_frame(BINARY, payload)
    assert FrameParser(1 << 20).feed(frame) == [(BINARY, payload)]
    assert feed_all(FrameParser(1 << 20), frame, chunk=4093) == [(BINARY, payload)]


def test_text_is_returned_as_validated_bytes():
    text = "héllo 日本 😀".encode()
    assert FrameParser(100).feed(client_frame(TEXT, text)) == [(TEXT, text)]


def test_byte_by_byte_and_many_frames_per_feed():
    data = (client_frame(TEXT, b"4hello") + client_frame(BINARY, b"\x00\x01")
            + client_frame(PING, b"") + client_frame(PONG, b"probe") + client_frame(TEXT, b""))
    expected = [(TEXT, b"4hello"), (BINARY, b"\x00\x01"), (PING, b""), (PONG, b"probe"), (TEXT, b"")]
    assert feed_all(FrameParser(100), data, chunk=1) == expected
    assert FrameParser(100).feed(data) == expected


def test_partial_frame_returns_nothing_until_complete():
    parser = FrameParser(100)
    frame = client_frame(TEXT, b"abcdef")
    assert parser.feed(frame[:1]) == []
    assert parser.feed(frame[1:7]) == []
    assert parser.feed(frame[7:]) == [(TEXT, b"abcdef")]
    assert parser.feed(b"") == []


def test_fragments_are_reassembled_with_control_frames_between():
    data = (client_frame(TEXT, b"4hel", fin=False) + client_frame(PING, b"1")
            + client_frame(CONTINUATION, b"lo ", fin=False) + client_frame(PONG, b"2")
            + client_frame(CONTINUATION, b"world") + client_frame(BINARY, b"x", fin=False)
            + client_frame(CONTINUATION, b"y"))
    expected = [(PING, b"1"), (PONG, b"2"), (TEXT, b"4hello world"), (BINARY, b"xy")]
    assert FrameParser(100).feed(data) == expected
    assert feed_all(FrameParser(100), data, chunk=3) == expected


def test_utf8_character_split_across_fragments():
    char = "€".encode()  # 3 bytes
    data = client_frame(TEXT, char[:1], fin=False) + client_frame(CONTINUATION, char[1:])
    assert FrameParser(10).feed(data) == [(TEXT, char)]


def test_empty_fragments():
    data = (client_frame(BINARY, b"", fin=False) + client_frame(CONTINUATION, b"", fin=False)
            + client_frame(CONTINUATION, b""))
    assert FrameParser(10).feed(data) == [(BINARY, b"")]


def test_close_frames():
    assert FrameParser(10).feed(client_frame(CLOSE)) == [(CLOSE, b"")]
    payload = (1000).to_bytes(2, "big") + "bye ✓".encode()
    assert FrameParser(10).feed(client_frame(CLOSE, payload)) == [(CLOSE, payload)]
    for code in (1001, 1003, 1007, 1011, 3000, 4999):
        assert FrameParser(10).feed(client_frame(CLOSE, code.to_bytes(2, "big")))[0][0] == CLOSE


# -- protocol errors -------------------------------------------------------------------

def test_unmasked_frame():
    assert error_of(client_frame(TEXT, b"hi", mask=None)).code == 1002


@pytest.mark.parametrize("rsv", [1, 2, 4])
def test_reserved_bits(rsv):
    assert error_of(client_frame(TEXT, b"hi", rsv=rsv)).code == 1002


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 11, 12, 13, 14, 15])
def test_reserved_opcodes(opcode):
    assert error_of(client_frame(opcode, b"")).code == 1002


@pytest.mark.parametrize("opcode", [CLOSE, PING, PONG])
def test_bad_control_frames(opcode):
    assert error_of(client_frame(opcode, b"", fin=False)).code == 1002
    assert error_of(client_frame(opcode, b"x" * 126)).code == 1002


def test_fragmentation_errors():
    assert error_of(client_frame(CONTINUATION, b"x")).code == 1002
    interrupted = client_frame(TEXT, b"a", fin=False) + client_frame(TEXT, b"b")
    assert error_of(interrupted).code == 1002
    interrupted = client_frame(TEXT, b"a", fin=False) + client_frame(BINARY, b"b")
    assert error_of(interrupted).code == 1002


def test_top_bit_of_64_bit_length():
    frame = bytes((0x82, 0xFF)) + (1 << 63 | 5).to_bytes(8, "big") + MASK
    assert error_of(frame).code == 1002


@pytest.mark.parametrize("payload", [b"\xff", b"\xc3", b"\xed\xa0\x80", b"ok\xc0\xaf"])
def test_invalid_utf8(payload):
    assert error_of(client_frame(TEXT, payload)).code == 1007


def test_invalid_utf8_across_fragments():
    data = client_frame(TEXT, "€".encode()[:2], fin=False) + client_frame(CONTINUATION, b"x")
    assert error_of(data).code == 1007


def test_binary_is_not_utf8_checked():
    assert FrameParser(10).feed(client_frame(BINARY, b"\xff")) == [(BINARY, b"\xff")]


@pytest.mark.parametrize("payload, code", [
    (b"\x03", 1002),                                 # a 1-byte close payload
    ((999).to_bytes(2, "big"), 1002), ((1004).to_bytes(2, "big"), 1002),
    ((1005).to_bytes(2, "big"), 1002), ((1006).to_bytes(2, "big"), 1002),
    ((1015).to_bytes(2, "big"), 1002), ((2000).to_bytes(2, "big"), 1002),
    ((5000).to_bytes(2, "big"), 1002),
    ((1000).to_bytes(2, "big") + b"\xff", 1007),     # reason not UTF-8
])
def test_bad_close_payloads(payload, code):
    assert error_of(client_frame(CLOSE, payload)).code == code


# -- the size limit, judged from the header ---------------------------------------------

@pytest.mark.parametrize("length", [101, 200, 70000, 1 << 40])
def test_size_limit_from_the_header_alone(length):
    header = client_frame(BINARY, length=length)  # header + mask, no payload at all
    error = error_of(header, max_size=100)
    assert error.code == 1009


def test_size_limit_exactly():
    payload = b"x" * 100
    assert FrameParser(100).feed(client_frame(TEXT, payload)) == [(TEXT, payload)]
    assert error_of(client_frame(TEXT, payload + b"x"), max_size=100).code == 1009


def test_size_limit_counts_fragments_before_their_payload():
    parser = FrameParser(100)
    assert parser.feed(client_frame(BINARY, b"x" * 60, fin=False)) == []
    assert parser.feed(client_frame(PING, b"p")) == [(PING, b"p")]  # control frames do not count
    with pytest.raises(WSProtocolError) as info:
        parser.feed(client_frame(CONTINUATION, length=41))  # header only
    assert info.value.code == 1009


def test_control_frames_are_not_limited_by_max_message_size():
    assert FrameParser(0).feed(client_frame(PING, b"x" * 125)) == [(PING, b"x" * 125)]


# -- after an error ----------------------------------------------------------------------

def test_messages_before_an_error_are_kept_on_the_error():
    data = client_frame(TEXT, b"ok") + client_frame(CLOSE, b"") + client_frame(TEXT, b"hi", mask=None)
    error = error_of(data)
    assert error.messages == [(TEXT, b"ok"), (CLOSE, b"")]


def test_parser_stays_failed():
    parser = FrameParser(10)
    with pytest.raises(WSProtocolError):
        parser.feed(client_frame(TEXT, b"x", mask=None))
    with pytest.raises(WSProtocolError):
        parser.feed(client_frame(TEXT, b"fine"))


def test_error_message_is_clear():
    assert "masked" in str(error_of(client_frame(TEXT, b"x", mask=None)))
    assert "limit of 100" in str(error_of(client_frame(TEXT, length=500), max_size=100))


# -- unmasking, helpers ---------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(payload=st.binary(max_size=3000), mask=st.binary(min_size=4, max_size=4))
def test_unmask_matches_the_definition(payload, mask):
    assert _unmask(payload, mask) == bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert _unmask(bytearray(payload), mask) == _unmask(payload, mask)


@settings(max_examples=60, deadline=None)
@given(messages=st.lists(st.tuples(st.sampled_from([TEXT, BINARY]), st.binary(max_size=300)),
                         max_size=6),
       chunk=st.integers(min_value=1, max_value=500))
def test_any_chunking_gives_the_same_messages(messages, chunk):
    messages = [(op, p.decode("latin-1").encode() if op == TEXT else p) for op, p in messages]
    data = b"".join(client_frame(op, p, mask=os.urandom(4)) for op, p in messages)
    assert feed_all(FrameParser(1000), data, chunk=chunk) == messages


def test_server_frames_parse_once_masked():
    # what the encoder sends is what a client would mask and send back
    packet = _speedups.encode_packet(2, "/", ["echo", b"\x00\x01"])
    frames = packet.ws
    masked = bytearray()
    while frames:
        opcode, length = frames[0] & 0x0F, frames[1] & 0x7F
        offset = 2
        if length == 126:
            length, offset = int.from_bytes(frames[2:4], "big"), 4
        masked += client_frame(opcode, frames[offset:offset + length])
        frames = frames[offset + length:]
    assert FrameParser(1000).feed(bytes(masked)) == [
        (TEXT, packet.text.encode()), (BINARY, b"\x00\x01")]


def test_close_frame_helper():
    assert close_frame() == b"\x88\x02\x03\xe8"
    assert close_frame(1009, "too big") == b"\x88\x09\x03\xf1too big"
    assert close_frame(None) == b"\x88\x00"
    long = close_frame(1000, "é" * 100)  # 200 bytes of reason: cut on a character boundary
    assert long[1] <= 125 and len(long) == 2 + long[1]
    assert long[4:].decode("utf-8") == "é" * 61
    assert parse_close(long[2:]) == (1000, "é" * 61)
    assert parse_close(b"") == (None, "")


# one frame, well or badly formed: any opcode, reserved bits, mask or not, length forms
# (declared or actual), fin or not
_frames = st.builds(
    lambda opcode, payload, fin, masked, rsv, lie: client_frame(
        opcode, payload, fin=fin, mask=MASK if masked else None, rsv=rsv,
        length=None if lie is None else lie),
    st.sampled_from([CONTINUATION, TEXT, BINARY, 3, CLOSE, PING, PONG, 11]),
    st.binary(max_size=200) | st.sampled_from([b"\xff\xfe", "\u00e9".encode(), b"\x03\xe8ok",
                                                b"\x03\xed", b"\x00"]),
    st.booleans(), st.booleans() | st.just(True), st.sampled_from([0, 0, 0, 4, 2]),
    st.none() | st.none() | st.integers(0, 70000) | st.just(1 << 63))


@settings(max_examples=400, deadline=None)
@given(frames=st.lists(_frames, max_size=6), chunk=st.integers(1, 64),
       limit=st.sampled_from([0, 10, 150, 1 << 20]))
def test_the_compiled_parser_is_the_twin(frames, chunk, limit):
    """Whatever the bytes and their chunking: the same messages, the same error (code,
    text, messages before it) and the same failed state after it."""
    assert _frames_c is not None, "the compiled core is not built (pip install -e .)"
    data = b"".join(frames)
    results = []
    for parser in (_frames_py.FrameParser(limit), _frames_c.FrameParser(limit)):
        got: list = []
        error = None
        try:
            for i in range(0, len(data), chunk):
                got += parser.feed(data[i:i + chunk])
        except WSProtocolError as exc:
            error = (exc.code, str(exc), exc.messages)
            with pytest.raises(WSProtocolError) as again:
                parser.feed(b"\x81\x80" + MASK)
            assert again.value is not None and str(again.value) == str(exc)
        results.append((got, error))
    assert results[0] == results[1]

"""Bounded fuzzing of every decoder that reads bytes from the network: whatever comes
in, a decoder returns its result or raises its one documented exception
(EngineParseError, ParseError, WSProtocolError, NotepackError, or ValueError for
cluster requests), never anything else. Inputs mix random bytes with
near-valid packets, which reach the deeper branches."""
from __future__ import annotations

import base64
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from roomcast import _notepack
from roomcast.adapters import _protocol as proto
from roomcast.eio_packet import EngineParseError, decode_polling_payload, decode_text
from roomcast.sio_packet import Decoder, Packet, ParseError
from roomcast import _speedups
from roomcast.ws_frames import WSProtocolError

FUZZ = settings(max_examples=200)
FUZZ_SLOW = settings(max_examples=100)   # the strategies that build nested values

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 63, 2 ** 64 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12)
placeholders = st.builds(lambda n, extra: {"_placeholder": True, "num": n, **extra},
                         st.integers(-2, 12), st.dictionaries(st.text(max_size=3), json_values,
                                                              max_size=1))


@st.composite
def sio_texts(draw) -> str:
    """Socket.IO packet texts near the grammar: type, attachments, nsp, id, JSON."""
    out = draw(st.sampled_from("0123456789x"))
    if draw(st.booleans()):
        out += str(draw(st.integers(-1, 12))) + draw(st.sampled_from(["-", "", "--"]))
    if draw(st.booleans()):
        out += draw(st.sampled_from(["/", "/chat", "/a,b", "/é"])) + draw(st.sampled_from([",", ""]))
    if draw(st.booleans()):
        out += str(draw(st.integers(-5, 2 ** 60)))
    data = draw(st.one_of(json_values, st.lists(json_values | placeholders, max_size=4)))
    text = json.dumps(data)
    return out + (text[:draw(st.integers(0, len(text)))] if draw(st.booleans()) else text)


@given(st.one_of(st.text(max_size=40), st.builds(lambda d, rest: d + rest,
                                                st.sampled_from("0123456789"), st.text(max_size=20))))
@FUZZ
def test_engineio_text_packets(text):
    try:
        ptype, data = decode_text(text)
    except EngineParseError:
        return
    assert 0 <= ptype <= 6 and isinstance(data, str)


record = st.one_of(
    st.builds(lambda d, s: d + s, st.sampled_from("0123456789b"), st.text(max_size=12)),
    st.builds(lambda b: "b" + base64.b64encode(b).decode(), st.binary(max_size=12)),
    st.builds(lambda b, cut: "b" + base64.b64encode(b).decode()[:cut], st.binary(max_size=12),
              st.integers(0, 16)))


@given(st.one_of(st.binary(max_size=80),
                 st.lists(record, max_size=5).map(lambda rs: "\x1e".join(rs).encode("utf-8"))))
@FUZZ
def test_engineio_polling_payloads(body):
    try:
        packets = decode_polling_payload(body)
    except EngineParseError:
        return
    for ptype, data in packets:
        assert 0 <= ptype <= 6 and isinstance(data, (str, bytes))


@given(st.lists(st.one_of(sio_texts(), st.text(max_size=30), st.binary(max_size=16)),
                min_size=1, max_size=6), st.integers(0, 4))
@FUZZ_SLOW
def test_socketio_packets_with_attachments(messages, max_attachments):
    decoder = Decoder(max_attachments=max_attachments)
    for message in messages:
        try:
            if isinstance(message, bytes):
                packet = decoder.feed_binary(message)
            else:
                packet = decoder.feed_text(message)
        except ParseError:
            return   # the connection is closed: nothing more is fed
        assert packet is None or isinstance(packet, Packet)


@st.composite
def ws_frames(draw) -> bytes:
    """Client frames with random header bits, opcodes, lengths and masks."""
    payload = draw(st.binary(max_size=40))
    opcode = draw(st.integers(0, 15))
    first = (draw(st.integers(0, 15)) << 4) | opcode
    masked = draw(st.booleans())
    n = draw(st.one_of(st.just(len(payload)), st.integers(0, 2 ** 64 - 1)))
    if n < 126:
        head = bytes([first, (0x80 if masked else 0) | n])
    elif n < 65536:
        head = bytes([first, (0x80 if masked else 0) | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([first, (0x80 if masked else 0) | 127]) + n.to_bytes(8, "big")
    mask = draw(st.binary(min_size=4, max_size=4)) if masked else b""
    return head + mask + payload


@given(st.lists(st.one_of(ws_frames(), st.binary(max_size=30)), max_size=6),
       st.integers(1, 64), st.integers(0, 200))
@FUZZ
def test_websocket_frames(frames, chunk, max_size):
    parser = _speedups.FrameParser(max_size)
    data = b"".join(frames)
    try:
        for i in range(0, len(data), chunk):
            for opcode, payload in parser.feed(data[i:i + chunk]):
                assert opcode in (1, 2, 8, 9, 10) and isinstance(payload, bytes)
    except WSProtocolError as exc:
        assert exc.code in (1002, 1007, 1009)


CLUSTER_FIELDS = ("uid", "requestId", "type", "packet", "opts", "rooms", "sid", "room", "close",
                  "data", "responses")
cluster_fields = st.fixed_dictionaries({}, optional={
    "uid": json_values, "requestId": json_values, "type": st.integers(-1, 12) | json_values,
    "packet": json_values, "opts": json_values, "rooms": json_values, "sid": json_values,
    "room": json_values, "close": json_values, "data": json_values, "responses": json_values})


@given(st.one_of(
    st.binary(max_size=60),
    cluster_fields.map(lambda d: json.dumps(d).encode()),
    cluster_fields.map(_notepack.encode),
    st.lists(json_values, max_size=4).map(_notepack.encode)))
@FUZZ_SLOW
def test_cluster_messages(data):
    try:
        proto.decode_request(data)
    except ValueError:   # JSON errors and NotepackError are ValueErrors
        pass
    try:
        _notepack.decode(data)
    except _notepack.NotepackError:
        pass

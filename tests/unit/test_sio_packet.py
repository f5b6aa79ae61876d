"""Socket.IO v5 decoding: Node's wire examples, binary reassembly, isPayloadValid, bad input."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roomcast import _speedups
from roomcast.sio_packet import (
    ACK, BINARY_ACK, BINARY_EVENT, CONNECT, CONNECT_ERROR, DISCONNECT, EVENT,
    RESERVED_EVENTS, Decoder, Packet, ParseError,
)

PH0 = {"_placeholder": True, "num": 0}


def decode(text: str, *attachments: bytes, max_attachments: int = 10) -> Packet:
    decoder = Decoder(max_attachments)
    result = decoder.feed_text(text)
    for attachment in attachments:
        assert result is None and decoder.waiting
        result = decoder.feed_binary(attachment)
    assert not decoder.waiting
    return result


def test_constants():
    assert (CONNECT, DISCONNECT, EVENT, ACK, CONNECT_ERROR, BINARY_EVENT, BINARY_ACK) == tuple(range(7))
    assert RESERVED_EVENTS == {"connect", "connect_error", "disconnect", "disconnecting",
                               "newListener", "removeListener"}
    assert issubclass(ParseError, ValueError)


# The examples of node-socketio.md section 1, without the Engine.IO "4".
@pytest.mark.parametrize("text, packet", [
    ("0", Packet(CONNECT, "/")),
    ('0{"token":"123"}', Packet(CONNECT, "/", {"token": "123"})),
    ("0/admin,", Packet(CONNECT, "/admin")),
    ('0/admin,{"token":"123"}', Packet(CONNECT, "/admin", {"token": "123"})),
    ('0{"pid":"p","offset":"o","token":"x"}', Packet(CONNECT, "/", {"pid": "p", "offset": "o", "token": "x"})),
    ('0{"sid":"wZX3oN0bSVIhsaknAAAI"}', Packet(CONNECT, "/", {"sid": "wZX3oN0bSVIhsaknAAAI"})),
    ('4{"message":"Not authorized"}', Packet(CONNECT_ERROR, "/", {"message": "Not authorized"})),
    ('4{"message":"not authorized","data":{"content":"retry"}}',
     Packet(CONNECT_ERROR, "/", {"message": "not authorized", "data": {"content": "retry"}})),
    ('4/foo,{"message":"Invalid namespace"}', Packet(CONNECT_ERROR, "/foo", {"message": "Invalid namespace"})),
    ('4"plain"', Packet(CONNECT_ERROR, "/", "plain")),
    ('2["hey","Jude"]', Packet(EVENT, "/", ["hey", "Jude"])),
    ('2/admin,["bar"]', Packet(EVENT, "/admin", ["bar"])),
    ('212["foo"]', Packet(EVENT, "/", ["foo"], 12)),
    ("312[]", Packet(ACK, "/", [], 12)),
    ('3/admin,13["bar"]', Packet(ACK, "/admin", ["bar"], 13)),
    ("30[]", Packet(ACK, "/", [], 0)),
    ("1", Packet(DISCONNECT, "/")),
    ("1/admin,", Packet(DISCONNECT, "/admin")),
    ('2[42,"numeric event names are allowed"]', Packet(EVENT, "/", [42, "numeric event names are allowed"])),
    ('2[1.5]', Packet(EVENT, "/", [1.5])),
    ('2["日本",{"a":[null,true,1e3]}]', Packet(EVENT, "/", ["日本", {"a": [None, True, 1000.0]}])),
    ('2/a/b-c.d,["x"]', Packet(EVENT, "/a/b-c.d", ["x"])),
    # without its comma a namespace runs to the end (socket.io-protocol's test suite)
    ("0/custom", Packet(CONNECT, "/custom")),
    ("1/custom", Packet(DISCONNECT, "/custom")),
    ('0/admin{"a":1}', Packet(CONNECT, '/admin{"a":1}')),
])
def test_node_examples(text, packet):
    assert decode(text) == packet


@pytest.mark.parametrize("text, attachments, packet", [
    ('51-["baz",{"_placeholder":true,"num":0}]', [b"\x01\x02\x03\x04"],
     Packet(BINARY_EVENT, "/", ["baz", b"\x01\x02\x03\x04"])),
    ('52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]', [b"a", b"b"],
     Packet(BINARY_EVENT, "/admin", ["baz", b"a", b"b"])),
    ('51-/admin,7["x",{"_placeholder":true,"num":0}]', [b"\x09"],
     Packet(BINARY_EVENT, "/admin", ["x", b"\x09"], 7)),
    ('61-15["bar",{"_placeholder":true,"num":0}]', [b""], Packet(BINARY_ACK, "/", ["bar", b""], 15)),
    # placeholders in any order, nested, and reused
    ('52-["e",{"k":[{"_placeholder":true,"num":1}]},{"_placeholder":true,"num":0},'
     '{"_placeholder":true,"num":1}]', [b"zero", b"one"],
     Packet(BINARY_EVENT, "/", ["e", {"k": [b"one"]}, b"zero", b"one"])),
    ('50-["no attachments"]', [], Packet(BINARY_EVENT, "/", ["no attachments"])),
    ('51-["p",{"_placeholder":true,"num":0.0}]', [b"f"], Packet(BINARY_EVENT, "/", ["p", b"f"])),
    # "_placeholder" not exactly true: an ordinary object
    ('51-["p",{"_placeholder":1,"num":0}]', [b"f"],
     Packet(BINARY_EVENT, "/", ["p", {"_placeholder": 1, "num": 0}])),
])
def test_binary_reassembly(text, attachments, packet):
    assert decode(text, *attachments) == packet


def test_attachments_arrive_as_bytes():
    packet = decode('51-["b",{"_placeholder":true,"num":0}]', bytearray(b"xy"))
    assert type(packet.data[1]) is bytes


def test_decoder_keeps_going_after_a_binary_packet():
    decoder = Decoder()
    assert decoder.feed_text('51-["a",{"_placeholder":true,"num":0}]') is None
    assert decoder.feed_binary(b"1") == Packet(BINARY_EVENT, "/", ["a", b"1"])
    assert decoder.feed_text('2["b"]') == Packet(EVENT, "/", ["b"])


def test_max_attachments():
    placeholders = ",".join('{"_placeholder":true,"num":%d}' % i for i in range(10))
    ten = decode(f'510-["ten",{placeholders}]', *(bytes([i]) for i in range(10)))
    assert ten.data[1:] == [bytes([i]) for i in range(10)]
    with pytest.raises(ParseError, match="too many attachments"):
        Decoder().feed_text('511-["eleven"]')
    with pytest.raises(ParseError, match="too many attachments"):
        Decoder(max_attachments=2).feed_text('53-["three"]')
    with pytest.raises(ParseError, match="too many attachments"):
        Decoder().feed_text('599999999999999999999-["huge"]')


@pytest.mark.parametrize("text", [
    "0[]", '0"str"', "0null", "0true", "01[]",                    # CONNECT: object or nothing
    "1{}", "1[]", '1"x"', "1null",                               # DISCONNECT: nothing
    "2", "2[]", "2{}", '2"ev"', "2[null]", "2[true]", "2[[1]]", '2[{"a":1}]',  # EVENT
    "3", "3{}", '3"x"', "3null", "31",                           # ACK: array
    "4", "4[]", "4null", "41", "4true",                          # CONNECT_ERROR: string or object
    "50-", '50-{}', '50-"x"', "60-", "60-{}",
] + [f'2["{name}"]' for name in sorted(RESERVED_EVENTS)]
  + [f'51-["{name}",{{"_placeholder":true,"num":0}}]' for name in ("connect", "disconnect")])
def test_invalid_payloads(text):
    with pytest.raises(ParseError, match="invalid payload"):
        Decoder().feed_text(text)


@pytest.mark.parametrize("text, message", [
    ("", "empty packet"),
    ("7", "unknown packet type"),
    ("9[]", "unknown packet type"),
    ("x", "unknown packet type"),
    ('2["a"', "invalid JSON"),
    ("2[x]", "invalid JSON"),
    ('2["a"]garbage', "invalid JSON"),
    ('2["a",NaN]', "invalid JSON"),
    ('2["a",Infinity]', "invalid JSON"),
    ("2" + "[" * 100000 + "]" * 100000, "invalid JSON"),
    ('2/admin["x"]', "invalid payload"),   # Node too: namespace '/admin["x"]', no payload
    ('5-["a"]', "illegal attachments"),
    ('5x-["a"]', "illegal attachments"),
    ('5["a"]', "illegal attachments"),
    ('5١-["a"]', "illegal attachments"),      # a non-ASCII digit is not a count
    ("5", "illegal attachments"),
    ('29007199254740992["a"]', "ack id out of range"),   # 2**53
    ('2' + "9" * 5000 + '["a"]', "ack id out of range"),
    ('2-1["a"]', "invalid JSON"),
])
def test_malformed_input(text, message):
    with pytest.raises(ParseError, match=message):
        Decoder().feed_text(text)


def test_largest_ack_id():
    assert decode('29007199254740991["a"]').id == 2**53 - 1


@pytest.mark.parametrize("num", ["1", "-1", '"0"', "0.5", "1e400", "null", "true"])
def test_placeholder_out_of_range(num):
    decoder = Decoder()
    assert decoder.feed_text('51-["a",{"_placeholder":true,"num":%s}]' % num) is None
    with pytest.raises(ParseError, match="placeholder"):
        decoder.feed_binary(b"only one")


def test_placeholder_without_attachments():
    with pytest.raises(ParseError, match="placeholder"):
        Decoder().feed_text('50-["a",{"_placeholder":true,"num":0}]')


def test_text_while_waiting_for_attachments():
    decoder = Decoder()
    decoder.feed_text('52-["a",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]')
    decoder.feed_binary(b"first")
    with pytest.raises(ParseError, match="waiting for binary"):
        decoder.feed_text('2["b"]')
    assert not decoder.waiting  # the broken packet is dropped


def test_binary_without_a_packet():
    with pytest.raises(ParseError, match="no binary packet"):
        Decoder().feed_binary(b"\x00")


def test_reset():
    decoder = Decoder()
    decoder.feed_text('51-["a",{"_placeholder":true,"num":0}]')
    decoder.reset()
    assert decoder.feed_text('2["b"]') == Packet(EVENT, "/", ["b"])


# -- round trips through the encoder (both implementations, via the impl fixture) ------

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**53, max_value=2**53),
              st.floats(allow_nan=False, allow_infinity=False), st.text(), st.binary(max_size=16)),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=6), children, max_size=4)),
    max_leaves=12,
)
event_names = st.one_of(st.text().filter(lambda s: s not in RESERVED_EVENTS), st.integers())


def _binary_type(ptype: int, data) -> int:
    def has_bytes(value):
        if isinstance(value, bytes):
            return True
        if isinstance(value, list):
            return any(map(has_bytes, value))
        if isinstance(value, dict):
            return any(map(has_bytes, value.values()))
        return False
    return ptype + 3 if has_bytes(data) else ptype


@settings(max_examples=100, deadline=None)
@given(ptype=st.sampled_from([EVENT, ACK]), nsp=st.sampled_from(["/", "/admin", "/a/b"]),
       event=event_names, args=st.lists(json_values, max_size=4),
       ack_id=st.one_of(st.none(), st.integers(min_value=0, max_value=2**53 - 1)))
def test_encode_decode_round_trip(ptype, nsp, event, args, ack_id):
    data = [event, *args] if ptype == EVENT else args
    encoded = _speedups.encode_packet(ptype, nsp, data, ack_id)
    assert encoded.text[0] == "4"
    # the limit on attachments is tested on its own; here any count must round-trip
    packet = decode(encoded.text[1:], *encoded.attachments,
                    max_attachments=max(10, len(encoded.attachments)))
    assert packet == Packet(_binary_type(ptype, data), nsp, data, ack_id)


@settings(max_examples=50, deadline=None)
@given(ptype=st.sampled_from([CONNECT, CONNECT_ERROR]), nsp=st.sampled_from(["/", "/x"]),
       data=st.dictionaries(st.text(max_size=6), st.one_of(st.text(), st.integers()), max_size=4))
def test_connect_round_trip(ptype, nsp, data):
    encoded = _speedups.encode_packet(ptype, nsp, data)
    assert decode(encoded.text[1:]) == Packet(ptype, nsp, data)

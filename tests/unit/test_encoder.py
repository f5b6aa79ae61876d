"""The encoder (_speedups.encode_packet / encode_eio / ws_frame) against Node's bytes.

Each case pairs the Python arguments with the equivalent JavaScript value; the
expected strings are made during the run by the real Node encoders of tests/js
(socket.io-parser 4.2 ``Encoder.encode``, engine.io-parser ``encodePacket`` /
``encodePayload`` and ws ``Sender.frame``; ``node_made``, tests/unit/conftest.py).
They include every byte example of node-socketio.md section 1. The autouse ``impl``
fixture runs each test with the compiled core and with the pure twin.
"""
from __future__ import annotations

import base64
import datetime as dt
import math

import pytest

from roomcast import _speedups
from roomcast.eio_packet import decode_polling_payload, decode_text
from roomcast.sio_packet import Decoder, Packet

UTC = dt.timezone.utc

# name: ((type, nsp, data, id), the socket.io-parser packet)
NODE_PACKETS = {
    "connect": ((0, "/", None, None), '{type: 0, nsp: "/"}'),
    "connect_auth": ((0, "/", {"token": "123"}, None), '{type: 0, nsp: "/", data: {token: "123"}}'),
    "connect_admin": ((0, "/admin", None, None), '{type: 0, nsp: "/admin"}'),
    "connect_admin_auth": ((0, "/admin", {"token": "123"}, None),
                           '{type: 0, nsp: "/admin", data: {token: "123"}}'),
    "connect_sid": ((0, "/", {"sid": "wZX3oN0bSVIhsaknAAAI"}, None),
                    '{type: 0, nsp: "/", data: {sid: "wZX3oN0bSVIhsaknAAAI"}}'),
    "disconnect": ((1, "/", None, None), '{type: 1, nsp: "/"}'),
    "disconnect_admin": ((1, "/admin", None, None), '{type: 1, nsp: "/admin"}'),
    "event": ((2, "/", ["hey", "Jude"], None), '{type: 2, nsp: "/", data: ["hey", "Jude"]}'),
    "event_admin": ((2, "/admin", ["bar"], None), '{type: 2, nsp: "/admin", data: ["bar"]}'),
    "event_ack": ((2, "/", ["foo"], 12), '{type: 2, nsp: "/", data: ["foo"], id: 12}'),
    "ack": ((3, "/", [], 12), '{type: 3, nsp: "/", data: [], id: 12}'),
    "ack_admin": ((3, "/admin", ["bar"], 13), '{type: 3, nsp: "/admin", data: ["bar"], id: 13}'),
    "error": ((4, "/", {"message": "Not authorized"}, None),
              '{type: 4, nsp: "/", data: {message: "Not authorized"}}'),
    "error_data": ((4, "/", {"message": "not authorized", "data": {"content": "retry"}}, None),
                   '{type: 4, nsp: "/", data: {message: "not authorized", data: {content: "retry"}}}'),
    "error_foo": ((4, "/foo", {"message": "Invalid namespace"}, None),
                  '{type: 4, nsp: "/foo", data: {message: "Invalid namespace"}}'),
    "bin": ((2, "/", ["baz", b"\x01\x02\x03\x04"], None),
            '{type: 2, nsp: "/", data: ["baz", Buffer.from([1, 2, 3, 4])]}'),
    "bin_id": ((2, "/", ["baz", b"\x01\x02\x03\x04"], 1),   # node-socketio.md's polling example
               '{type: 2, nsp: "/", data: ["baz", Buffer.from([1, 2, 3, 4])], id: 1}'),
    "bin2": ((2, "/admin", ["baz", b"\x01", b"\x02"], None),
             '{type: 2, nsp: "/admin", data: ["baz", Buffer.from([1]), Buffer.from([2])]}'),
    "bin_ack_id": ((2, "/admin", ["x", b"\x09"], 7),
                   '{type: 2, nsp: "/admin", data: ["x", Buffer.from([9])], id: 7}'),
    "bin_ack": ((3, "/", ["bar", b"\x05\x06"], 15),
                '{type: 3, nsp: "/", data: ["bar", Buffer.from([5, 6])], id: 15}'),
    "bin_ack_large": ((3, "/chat", ["r", bytes(range(256)) * 300, b"z" * 200], 9),
                      '{type: 3, nsp: "/chat", id: 9, data: ["r", Buffer.concat(Array(300).fill('
                      'Buffer.from([...Array(256).keys()]))), Buffer.alloc(200, "z")]}'),
    "nested": ((2, "/", ["e", {"a": b"\x01", "b": [b"\x02", {"c": b"\x03"}]}, b"\x04"], None),
               '{type: 2, nsp: "/", data: ["e", {a: Buffer.from([1]), b: [Buffer.from([2]), '
               '{c: Buffer.from([3])}]}, Buffer.from([4])]}'),
    "date": ((2, "/", ["d", dt.datetime.fromtimestamp(1700000000, UTC)], None),
             '{type: 2, nsp: "/", data: ["d", new Date(1700000000000)]}'),
    "date_ms": ((2, "/", ["t", dt.datetime(2023, 11, 14, 23, 13, 20, 123999,
                                           tzinfo=dt.timezone(dt.timedelta(hours=1)))], None),
                '{type: 2, nsp: "/", data: ["t", new Date(1700000000123)]}'),
    "nonfinite": ((2, "/", ["n", math.nan, math.inf, -math.inf, {"x": math.nan}], None),
                  '{type: 2, nsp: "/", data: ["n", NaN, Infinity, -Infinity, {x: NaN}]}'),
    "nonfinite_keys": ((2, "/", ["n", {math.inf: [math.nan], -math.inf: 1, "k": (1.5, -math.inf)}],
                        None),
                       '{type: 2, nsp: "/", data: ["n", {Infinity: [NaN], "-Infinity": 1, '
                       'k: [1.5, -Infinity]}]}'),
    "non_string_keys": ((2, "/", ["k", {1: True, None: False}], None),
                        '{type: 2, nsp: "/", data: ["k", {1: true, null: false}]}'),
    "unicode": ((2, "/", ["héllo", "日本", "\u2028", "\u0000\u001f\"\\/"], None),
                r'{type: 2, nsp: "/", data: ["héllo", "日本", "\u2028", "\u0000\u001f\"\\/"]}'),
    "surrogate": ((2, "/", ["s", "\ud800", "\U0001F600"], None),
                  r'{type: 2, nsp: "/", data: ["s", "\ud800", "\u{1F600}"]}'),
    # a BINARY_EVENT / BINARY_ACK that holds no binary: Node's encoder writes a 0 count
    "binary_type_no_binary": ((5, "/", ["a"], None),
                              '{type: 5, nsp: "/", data: ["a"], attachments: 0}'),
    "binary_ack_type_no_binary": ((6, "/x", [], 3),
                                  '{type: 6, nsp: "/x", data: [], id: 3, attachments: 0}'),
}

# Engine.IO text packets: ((type, data), the engine.io-parser packet)
EIO_PACKETS = {
    "open": ((0, '{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,'
                 '"pingTimeout":20000,"maxPayload":1000000}'),
             '{type: "open", data: JSON.stringify({sid: "lv_VI97HAXpY6yYWAAAC", '
             'upgrades: ["websocket"], pingInterval: 25000, pingTimeout: 20000, '
             'maxPayload: 1000000})}'),
    "close": ((1, None), '{type: "close"}'),
    "ping": ((2, None), '{type: "ping"}'),
    "pong_probe": ((3, "probe"), '{type: "pong", data: "probe"}'),
    "ping_probe": ((2, "probe"), '{type: "ping", data: "probe"}'),
    "upgrade": ((5, None), '{type: "upgrade"}'),
    "noop": ((6, None), '{type: "noop"}'),
    "message": ((4, "hello"), '{type: "message", data: "hello"}'),
}

# the lengths of the ws frame headers checked (text and binary frames of b"a" * n)
FRAME_LENGTHS = [0, 1, 125, 126, 127, 65535, 65536, 70000]

NODE_CASES = {
    "sio": {name: js for name, (_, js) in NODE_PACKETS.items()},
    "eio_packet": {name: js for name, (_, js) in EIO_PACKETS.items()},
    "eio_payload": {"text and binary": '[{type: "message", data: "hello"}, '
                                       '{type: "message", data: Buffer.from([1, 2, 3, 4])}]'},
    "ws_frame": {f"{opcode} {n}": f"{{opcode: {opcode}, length: {n}}}"
                 for opcode in (1, 2) for n in FRAME_LENGTHS},
}


def _frame(opcode: int, payload: bytes) -> bytes:
    """Reference framing written out by hand (RFC 6455 section 5.2)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")
    return head + payload


@pytest.mark.parametrize("name", sorted(NODE_PACKETS))
def test_packet_matches_node(name, node_made):
    (ptype, nsp, data, ack_id), _ = NODE_PACKETS[name]
    node_text, *node_b64 = node_made["sio"][name]
    packet = _speedups.encode_packet(ptype, nsp, data, ack_id)
    attachments = [base64.b64decode(b) for b in node_b64]
    assert packet.text == "4" + node_text
    assert list(packet.attachments) == attachments
    assert packet.polling == (("4" + node_text).encode(), *(b"b" + b.encode() for b in node_b64))
    expected_ws = _frame(1, ("4" + node_text).encode()) + b"".join(_frame(2, a) for a in attachments)
    assert packet.ws == expected_ws


def test_engineio_payload_matches_node(node_made):
    text = _speedups.encode_eio(4, "hello")
    binary = _speedups.encode_eio(4, b"\x01\x02\x03\x04")
    assert b"\x1e".join(text.polling + binary.polling) == \
        node_made["eio_payload"]["text and binary"].encode()
    assert text.ws == b"\x81\x064hello"
    assert binary.ws == b"\x82\x04\x01\x02\x03\x04"
    assert binary.text is None and binary.attachments == (b"\x01\x02\x03\x04",)


@pytest.mark.parametrize("name", sorted(EIO_PACKETS))
def test_engineio_text_packets(name, node_made):
    (ptype, data), _ = EIO_PACKETS[name]
    text = node_made["eio_packet"][name]
    packet = _speedups.encode_eio(ptype, data)
    assert packet.text == text
    assert packet.polling == (text.encode(),)
    assert packet.ws == _frame(1, text.encode())
    assert packet.attachments == ()


@pytest.mark.parametrize("length", FRAME_LENGTHS)
def test_frame_headers_match_node(length, node_made):
    payload = b"a" * length
    for opcode in (1, 2):
        head = node_made["ws_frame"][f"{opcode} {length}"]
        frame = _speedups.ws_frame(opcode, payload)
        assert frame[:14].hex() == head
        assert frame == _frame(opcode, payload)


@pytest.mark.parametrize("length, header", [
    (6, b"\x81\x06"), (125, b"\x81\x7d"), (126, b"\x81\x7e\x00\x7e"),
    (65535, b"\x81\x7e\xff\xff"), (65536, b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
])
def test_packet_text_frame_header_forms(length, header):
    # '4' + '2' + JSON '["' + filler + '"]': choose the filler so the payload is `length`
    filler = "x" * (length - 6)
    packet = _speedups.encode_packet(2, "/", [filler])
    assert len(packet.text) == length
    assert packet.ws[:len(header)] == header
    assert packet.ws[len(header):] == packet.text.encode()


def test_binary_frames_follow_text_frame_with_large_attachment():
    big = bytes(range(256)) * 300  # 76800 bytes: 64-bit length form (text: "bin_ack_large")
    packet = _speedups.encode_packet(3, "/chat", ["r", big, b"z" * 200], 9)
    text = packet.text.encode()
    assert packet.ws == (_frame(1, text) + b"\x82\x7f" + len(big).to_bytes(8, "big") + big
                         + b"\x82\x7e\x00\xc8" + b"z" * 200)
    assert packet.polling[1] == b"b" + base64.b64encode(big)


@pytest.mark.parametrize("opcode", [0, 1, 2, 8, 9, 10])
def test_ws_frame_opcodes(opcode):
    assert _speedups.ws_frame(opcode, b"ab") == bytes((0x80 | opcode, 2)) + b"ab"
    assert _speedups.ws_frame(opcode, bytearray(b"ab")) == bytes((0x80 | opcode, 2)) + b"ab"
    assert _speedups.ws_frame(opcode, memoryview(b"ab")) == bytes((0x80 | opcode, 2)) + b"ab"


def test_ws_frame_rejects_bad_input():
    with pytest.raises(ValueError):
        _speedups.ws_frame(3, b"")
    with pytest.raises(ValueError):
        _speedups.ws_frame(9, b"x" * 126)  # control frames carry at most 125 bytes
    assert len(_speedups.ws_frame(9, b"x" * 125)) == 127
    with pytest.raises(TypeError):
        _speedups.ws_frame(1, "text")
    with pytest.raises(TypeError):
        _speedups.ws_frame(True, b"")


def test_bytes_likes_become_bytes_attachments():
    data = ["e", bytearray(b"ab"), memoryview(b"cd"), (b"ef",)]
    packet = _speedups.encode_packet(2, "/", data)
    assert packet.text.startswith("453-")
    assert packet.attachments == (b"ab", b"cd", b"ef")
    assert all(type(a) is bytes for a in packet.attachments)


def test_python_only_dates():
    # no JavaScript counterpart: a naive datetime (its ISO form, as json.dumps of
    # isoformat() would be) and a date (aware datetimes: the "date" cases above)
    naive = dt.datetime(2023, 11, 14, 22, 13, 20, 5000)
    packet = _speedups.encode_packet(2, "/", ["t", naive, dt.date(2024, 2, 29)])
    assert packet.text == '42["t","2023-11-14T22:13:20.005","2024-02-29"]'


@pytest.mark.parametrize("data", [
    ["e", object()], ["e", {1, 2}], ["e", 1j], ["e", {("t",): 1}], [b"x".decode, 1],
])
def test_unserialisable_data_is_a_type_error(data):
    with pytest.raises(TypeError):
        _speedups.encode_packet(2, "/", data)


def test_circular_data_is_a_type_error():
    data = ["e", {}]
    data[1]["self"] = data
    with pytest.raises(TypeError):
        _speedups.encode_packet(2, "/", data)
    data[1]["nan"] = math.nan  # the slow (non-finite) path must detect it too
    with pytest.raises(TypeError):
        _speedups.encode_packet(2, "/", data)


@pytest.mark.parametrize("ptype", [0, 1, 4])
def test_binary_outside_event_and_ack_is_a_type_error(ptype):
    with pytest.raises(TypeError):
        _speedups.encode_packet(ptype, "/", {"b": b"\x00"})


@pytest.mark.parametrize("args, exc", [
    ((7, "/"), ValueError), ((-1, "/"), ValueError), (("2", "/"), TypeError),
    ((True, "/"), TypeError), ((2, b"/"), TypeError), ((2, "admin", ["a"]), ValueError),
    ((2, "", ["a"]), ValueError), ((2, "/a,b", ["a"]), ValueError),
    ((2, "/", ["a"], -1), ValueError), ((2, "/", ["a"], 1.0), TypeError),
    ((2, "/", ["a"], True), TypeError), ((2, "/", ["a"], "1"), TypeError),
])
def test_encode_packet_argument_errors(args, exc):
    with pytest.raises(exc):
        _speedups.encode_packet(*args)


def test_encode_eio_argument_errors():
    with pytest.raises(ValueError):
        _speedups.encode_eio(2, b"binary ping")  # binary only for messages
    with pytest.raises(ValueError):
        _speedups.encode_eio(7)
    with pytest.raises(TypeError):
        _speedups.encode_eio(4, 12)


def test_encoded_packet_is_immutable_and_caches_polling():
    packet = _speedups.encode_packet(2, "/", ["a", b"\x00"])
    for name in ("text", "ws", "polling", "attachments"):
        with pytest.raises(AttributeError):
            setattr(packet, name, None)
    with pytest.raises(AttributeError):
        packet.extra = 1
    assert packet.polling is packet.polling


def test_encoded_packet_constructor():
    packet = _speedups.EncodedPacket('42["a"]', ())
    assert packet == _speedups.encode_packet(2, "/", ["a"])
    assert hash(packet) == hash(_speedups.encode_packet(2, "/", ["a"]))
    assert repr(packet) == "EncodedPacket(text='42[\"a\"]', attachments=0)"
    binary = _speedups.EncodedPacket(None, [bytearray(b"\x01")])
    assert binary.ws == b"\x82\x01\x01" and binary.polling == (b"bAQ==",)
    with pytest.raises(ValueError):
        _speedups.EncodedPacket(None, ())
    with pytest.raises(TypeError):
        _speedups.EncodedPacket(b"42", ())
    with pytest.raises(TypeError):
        _speedups.EncodedPacket("451-", ("text",))


# -- round trips: encode, then decode with roomcast's own decoders ---------------------

ROUND_TRIPS = [
    Packet(0, "/", None), Packet(0, "/admin", {"token": "123"}), Packet(1, "/"),
    Packet(1, "/admin"), Packet(2, "/", ["hey", "Jude", {"n": [1, 2.5, None, True]}]),
    Packet(2, "/admin", ["bar"], 12), Packet(2, "/", [42, "numeric event"]),
    Packet(3, "/", [], 0), Packet(3, "/admin", ["x", {"y": "é"}], 2**53 - 1),
    Packet(4, "/", {"message": "Not authorized", "data": {"content": "retry"}}),
    Packet(4, "/foo", "plain message"),
    Packet(5, "/", ["baz", b"\x01\x02\x03\x04"]),
    Packet(5, "/admin", ["baz", b"", {"deep": [b"\xff" * 70000]}], 7),
    Packet(6, "/", ["bar", b"\x00"], 15),
]


def _decode_records(records) -> Packet:
    decoder = Decoder()
    result = None
    for ptype, data in decode_polling_payload(b"\x1e".join(records)):
        assert ptype == 4
        result = (decoder.feed_binary(data) if isinstance(data, bytes)
                  else decoder.feed_text(data))
    return result


@pytest.mark.parametrize("packet", ROUND_TRIPS, ids=lambda p: f"{p.type}{p.nsp}{p.id}")
def test_round_trip(packet):
    source_type = {5: 2, 6: 3}.get(packet.type, packet.type)  # binary is detected by the encoder
    encoded = _speedups.encode_packet(source_type, packet.nsp, packet.data, packet.id)
    assert _decode_records(encoded.polling) == packet
    # the same through the text/attachments the WebSocket transport sends
    decoder = Decoder()
    eio_type, sio_text = decode_text(encoded.text)
    assert eio_type == 4
    result = decoder.feed_text(sio_text)
    for attachment in encoded.attachments:
        assert result is None
        result = decoder.feed_binary(attachment)
    assert result == packet

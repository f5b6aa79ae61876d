"""Engine.IO v4 decoding: text packets and long-polling payloads (node-socketio.md section 1)."""
from __future__ import annotations

import base64

import pytest

from roomcast import _speedups
from roomcast.eio_packet import (
    CLOSE, MESSAGE, NOOP, OPEN, PACKET_TYPES, PING, PONG, UPGRADE, EngineParseError,
    decode_polling_payload, decode_text,
)


def test_packet_type_numbers():
    assert (OPEN, CLOSE, PING, PONG, MESSAGE, UPGRADE, NOOP) == tuple(range(7))
    assert PACKET_TYPES["message"] == 4 and PACKET_TYPES["noop"] == 6


@pytest.mark.parametrize("text, expected", [
    ("4hello", (4, "hello")), ("2", (2, "")), ("3probe", (3, "probe")), ("2probe", (2, "probe")),
    ("5", (5, "")), ("6", (6, "")), ("1", (1, "")), ("4", (4, "")),
    ('0{"sid":"lv_VI97HAXpY6yYWAAAC"}', (0, '{"sid":"lv_VI97HAXpY6yYWAAAC"}')),
    ("4日本\x1f", (4, "日本\x1f")),
])
def test_decode_text(text, expected):
    assert decode_text(text) == expected


@pytest.mark.parametrize("text", ["", "7", "9x", "x4", "b4", "٤hello"])
def test_decode_text_rejects(text):
    with pytest.raises(EngineParseError):
        decode_text(text)


def test_engine_parse_error_is_a_value_error():
    assert issubclass(EngineParseError, ValueError)


def test_node_polling_example():
    # engine.io-parser encodePayload of a text "hello" and a binary <01 02 03 04>
    assert decode_polling_payload(b"4hello\x1ebAQIDBA==") == [(4, "hello"), (4, b"\x01\x02\x03\x04")]


def test_socketio_binary_polling_example():
    body = b'451-["baz",{"_placeholder":true,"num":0}]\x1ebAQIDBA=='
    assert decode_polling_payload(body) == [
        (4, '51-["baz",{"_placeholder":true,"num":0}]'), (4, b"\x01\x02\x03\x04")]


def test_single_and_utf8_records():
    assert decode_polling_payload(b"2") == [(2, "")]
    assert decode_polling_payload("4héllo\x1e3".encode()) == [(4, "héllo"), (3, "")]
    assert decode_polling_payload(bytearray(b"6")) == [(6, "")]
    assert decode_polling_payload(b"b") == [(4, b"")]  # an empty binary message


def test_round_trip_of_encoder_records():
    packets = [_speedups.encode_eio(4, "hi"), _speedups.encode_eio(4, bytes(range(256))),
               _speedups.encode_eio(3, "probe"), _speedups.encode_packet(2, "/", ["a", b"\x00"])]
    body = b"\x1e".join(record for p in packets for record in p.polling)
    assert decode_polling_payload(body) == [
        (4, "hi"), (4, bytes(range(256))), (3, "probe"),
        (4, '51-["a",{"_placeholder":true,"num":0}]'), (4, b"\x00")]


@pytest.mark.parametrize("body, message", [
    (b"", "empty payload"),
    (b"4a\x1e", "empty packet"),
    (b"\x1e4a", "empty packet"),
    (b"9x", "unknown packet type"),
    (b"bAQ=", "invalid base64"),
    (b"b!!!!", "invalid base64"),
    (b"b" + base64.b64encode(b"ok") + b"\n", "invalid base64"),
    (b"4\xff\xfe", "not valid UTF-8"),
])
def test_bad_payloads(body, message):
    with pytest.raises(EngineParseError, match=message):
        decode_polling_payload(body)

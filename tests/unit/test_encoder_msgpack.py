"""The msgpack parser's encoder (encode_msgpack, both twins) against the real
socket.io-msgpack-parser 3.x Encoder in node, and the MsgpackDecoder's checks."""
from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
from pathlib import Path

import msgpack
import pytest

from roomcast import _speedups
from roomcast.sio_packet import ACK, CONNECT, CONNECT_ERROR, DISCONNECT, EVENT, MsgpackDecoder, \
    Packet, ParseError

JS = Path(__file__).resolve().parent.parent / "js"
UTC = dt.timezone.utc

# (type, nsp, data, id) as roomcast's server sends them; the JS side builds the same
# packet object, keys in Node's order, and encodes it with the parser's Encoder.
PACKETS = [
    (CONNECT, "/", {"sid": "abc123"}, None),
    (CONNECT_ERROR, "/admin", {"message": "Not authorized", "data": {"retry": False}}, None),
    (DISCONNECT, "/chat", None, None),
    (EVENT, "/", ["hello", 1, 2.5, None, True, "✓ é"], None),
    (EVENT, "/", ["bin", b"\x00\x01\xff", {"nested": [b"", {"deep": b"x" * 300}]}], None),
    (EVENT, "/chat", ["with-ack", {"k": [1, 2, 3]}], 42),
    (ACK, "/", ["answer", b"\x07"], 7),
    (EVENT, "/", ["date", dt.datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)], None),
    (EVENT, "/", ["big", "x" * 70000, list(range(20)), {f"k{i}": i for i in range(20)}], None),
    (EVENT, "/", ["numbers", 3.0, -1, 2**40, -(2**40), 1.5e10, 0.1], None),
]

NODE_ENCODE = r"""
const { Encoder } = require("socket.io-msgpack-parser");
const revive = (k, v) => v && typeof v === "object" && "$bytes" in v ? Buffer.from(v.$bytes, "base64")
  : v && typeof v === "object" && "$date" in v ? new Date(v.$date) : v;
const packets = JSON.parse(require("fs").readFileSync(0, "utf8"), revive);
const out = packets.map(([type, nsp, data, id]) => {
  // the order Node's socket.io builds: {type, data, nsp[, id]}, an ack {id, type, data, nsp}
  const p = type === 3 ? { id, type } : { type };
  if (data !== null) p.data = data;
  p.nsp = nsp;
  if (id !== null && type !== 3) p.id = id;
  return Buffer.from(new Encoder().encode(p)[0]).toString("hex");
});
console.log(JSON.stringify(out));
"""


def _to_json(value):
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode()}
    if isinstance(value, dt.datetime):
        return {"$date": int(value.timestamp() * 1000)}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def node_hex() -> list[str]:
    result = subprocess.run(["node", "-e", NODE_ENCODE], input=json.dumps(_to_json(PACKETS)),
                            capture_output=True, text=True, cwd=JS, timeout=30)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("i", range(len(PACKETS)))
def test_bytes_identical_to_socket_io_msgpack_parser(node_hex, i):
    packet = _speedups.encode_msgpack(*PACKETS[i])
    assert packet.text is None and len(packet.attachments) == 1
    assert packet.attachments[0].hex() == node_hex[i]
    # one binary WebSocket frame; one "b"+base64 polling record
    assert packet.ws == _speedups.ws_frame(2, packet.attachments[0])
    assert packet.polling == (b"b" + base64.b64encode(packet.attachments[0]),)


def test_encoder_refusals():
    with pytest.raises(ValueError):
        _speedups.encode_msgpack(5, "/", ["x"])   # no binary types in this parser
    with pytest.raises(TypeError):
        _speedups.encode_msgpack(EVENT, "/", ["x", object()])
    with pytest.raises(TypeError):
        _speedups.encode_msgpack(EVENT, "/", ["x"], "1")
    loop: list = []
    loop.append(loop)
    with pytest.raises(TypeError):
        _speedups.encode_msgpack(EVENT, "/", ["x", loop])


def pack(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def test_decoder_reads_what_clients_send():
    d = MsgpackDecoder()
    assert d.feed_binary(pack({"type": 0, "nsp": "/"})) == Packet(CONNECT, "/", None, None)
    assert d.feed_binary(pack({"type": 0, "nsp": "/a", "data": {"token": 1}})) == \
        Packet(CONNECT, "/a", {"token": 1}, None)
    assert d.feed_binary(pack({"type": 2, "nsp": "/", "data": ["e", {"b": b"\x00"}], "id": 3})) == \
        Packet(EVENT, "/", ["e", {"b": b"\x00"}], 3)
    assert d.feed_binary(pack({"type": 3, "nsp": "/", "data": [], "id": 0})) == Packet(ACK, "/", [], 0)
    # notepack 2.x extensions: undefined (d4 00 00), Date (d7 00 + int64 ms), ArrayBuffer (ext 0)
    undefined_data = bytes.fromhex("83a474797065") + b"\x01" + bytes.fromhex("a36e7370a12f") \
        + bytes.fromhex("a464617461d40000")
    assert d.feed_binary(undefined_data) == Packet(DISCONNECT, "/", None, None)
    date = msgpack.ExtType(0, (1700000000123).to_bytes(8, "big"))
    got = d.feed_binary(pack({"type": 2, "nsp": "/", "data": ["d", date]}))
    assert got.data[1] == dt.datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)
    for size in (1, 3, 8):   # a browser's ArrayBuffer, including the ambiguous 1 and 8 bytes
        raw = bytes(range(size))
        ext8 = b"\xc7" + bytes([size]) + b"\x00" + raw
        body = bytes.fromhex("83a474797065") + b"\x02" + bytes.fromhex("a36e7370a12f") \
            + bytes.fromhex("a46461746192a162") + ext8
        assert d.feed_binary(body).data == ["b", raw]


@pytest.mark.parametrize("bad", [
    b"", b"\xc1", b"\x92\x01", pack([1, 2]), pack({"type": 2}),
    pack({"type": 9, "nsp": "/", "data": ["x"]}), pack({"type": 5, "nsp": "/", "data": ["x"]}),
    pack({"type": True, "nsp": "/", "data": ["x"]}), pack({"type": 2, "nsp": 1, "data": ["x"]}),
    pack({"type": 2, "nsp": "/", "data": "x"}), pack({"type": 2, "nsp": "/", "data": []}),
    pack({"type": 2, "nsp": "/", "data": ["disconnect"]}), pack({"type": 2, "nsp": "/", "data": [None]}),
    pack({"type": 2, "nsp": "/", "data": ["x"], "id": -1}),
    pack({"type": 2, "nsp": "/", "data": ["x"], "id": 1.5}),
    pack({"type": 2, "nsp": "/", "data": ["x"], "id": 2**60}),
    pack({"type": 1, "nsp": "/", "data": ["x"]}), pack({"type": 0, "nsp": "/", "data": "tok"}),
    pack({"type": 2, "nsp": "/", "data": ["x"]}) + b"\x00",
])
def test_decoder_refuses_malformed_packets(bad):
    with pytest.raises(ParseError):
        MsgpackDecoder().feed_binary(bad)


def test_decoder_refuses_text():
    with pytest.raises(ParseError):
        MsgpackDecoder().feed_text('2["x"]')

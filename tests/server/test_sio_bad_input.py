"""Bad input at the Socket.IO level, over raw WebSockets (websocket-client).

Each case gets Node's answer and closes at most the offending connection, while
another connected client keeps receiving broadcasts.
"""
from __future__ import annotations

import json

import gevent
import pytest
import websocket

import roomcast
from roomcast.errors import ConnectError


class RawSio:
    """A raw Engine.IO WebSocket (websocket-client, run in a thread so the server serves)."""

    def __init__(self, in_thread, url: str) -> None:
        self.in_thread = in_thread
        ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        self.ws = in_thread(websocket.create_connection, ws_url, timeout=5)
        opening = self.recv()
        assert opening.startswith("0{")

    def send(self, data: str | bytes) -> None:
        if isinstance(data, bytes):
            self.in_thread(self.ws.send_binary, data)
        else:
            self.in_thread(self.ws.send, data)

    def recv(self) -> str | bytes:
        opcode, data = self.in_thread(self.ws.recv_data, True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            raise ConnectionError("closed")
        return data.decode() if opcode == websocket.ABNF.OPCODE_TEXT else data

    def closed(self) -> bool:
        """True when the server closes this connection (before any other message)."""
        try:
            message = self.recv()
        except (ConnectionError, websocket.WebSocketException, OSError):
            return True
        raise AssertionError(f"expected a close, got {message!r}")

    def close(self) -> None:
        self.in_thread(self.ws.close, timeout=1)


@pytest.fixture
def sio_server(serve):
    io = roomcast.Server()
    io.of("/chat")
    reasons = []
    io.on("connection", lambda s: s.on("disconnect", reasons.append))
    return io, serve(io), reasons


def good_client(in_thread, url) -> RawSio:
    client = RawSio(in_thread, url)
    client.send("40")
    assert client.recv().startswith('40{"sid":"')
    return client


def assert_still_served(io, client: RawSio) -> None:
    io.emit("tick", 1)
    assert client.recv() == '42["tick",1]'


@pytest.mark.parametrize("packet", [
    '42["unterminated',                     # bad JSON
    "42{\"not\":\"an array\"}",               # EVENT payload must be an array
    "42[]",                                 # ... and not empty
    '42["disconnect"]',                     # reserved event names
    '42["connect_error", 1]',
    "43{}",                                 # ACK payload must be an array
    '41{"x":1}',                            # DISCONNECT carries no payload
    "9",                                    # unknown packet type
    '4511-["x",{"_placeholder":true,"num":0}]',   # more attachments than max_attachments
    "42abc[\"x\"]",                         # garbage where the ack id goes
])
def test_invalid_packet_closes_only_that_connection(sio_server, in_thread, packet, wait_for):
    io, url, reasons = sio_server
    good = good_client(in_thread, url)
    bad = good_client(in_thread, url)
    bad.send(packet)
    assert bad.closed()
    assert_still_served(io, good)
    wait_for(lambda: "parse error" in reasons, "the parse error")
    assert reasons == ["parse error"]
    good.close()


def test_invalid_connect_payload_closes(sio_server, in_thread):
    io, url, _ = sio_server
    good = good_client(in_thread, url)
    bad = RawSio(in_thread, url)
    bad.send('40"a string"')
    assert bad.closed()
    assert_still_served(io, good)


def test_unexpected_binary_attachment_closes(sio_server, in_thread):
    io, url, reasons = sio_server
    good = good_client(in_thread, url)
    bad = good_client(in_thread, url)
    bad.send(b"\x01\x02")
    assert bad.closed()
    assert_still_served(io, good)


def test_binary_event_round_trip_over_raw_websocket(sio_server, in_thread):
    io, url, _ = sio_server
    got = []
    io.on("connection", lambda s: s.on("up", lambda data, ack: (got.append(data), ack(data))))
    client = good_client(in_thread, url)
    client.send('451-7["up",{"_placeholder":true,"num":0}]')
    client.send(b"\xde\xad")
    assert client.recv() == '461-7[{"_placeholder":true,"num":0}]'
    assert client.recv() == b"\xde\xad"
    assert got == [b"\xde\xad"]


def test_invalid_namespace_gets_connect_error_and_the_connection_stays(sio_server, in_thread):
    io, url, _ = sio_server
    client = RawSio(in_thread, url)
    client.send("40/nope,")
    assert client.recv() == '44/nope,{"message":"Invalid namespace"}'
    client.send("40/chat,")
    assert client.recv().startswith('40/chat,{"sid":"')


def test_packet_for_unjoined_namespace_closes(sio_server, in_thread, wait_for):
    io, url, reasons = sio_server
    good = good_client(in_thread, url)
    bad = good_client(in_thread, url)
    bad.send('42/chat,["hello"]')
    assert bad.closed()
    assert_still_served(io, good)
    wait_for(lambda: reasons, "the disconnect reason")
    assert reasons == ["forced server close"]


def test_duplicate_connect_closes(sio_server, in_thread):
    io, url, reasons = sio_server
    good = good_client(in_thread, url)
    bad = good_client(in_thread, url)
    bad.send("40")
    assert bad.closed()
    assert_still_served(io, good)


def test_connect_error_from_middleware_on_the_wire(serve, in_thread):
    io = roomcast.Server()
    io.use(lambda socket, next: next(ConnectError("no", {"retry": 3})))
    io.of("/plain").use(lambda socket, next: next(ValueError("nope")))
    url = serve(io)
    client = RawSio(in_thread, url)
    client.send('40{"token":"x"}')
    assert json.loads(client.recv()[2:]) == {"message": "no", "data": {"retry": 3}}
    client.send("40/plain,")
    assert client.recv() == '44/plain,{"message":"nope"}'


def test_connect_reply_and_ack_ids_on_the_wire(serve, in_thread):
    io = roomcast.Server()
    chat = io.of("/chat")

    @chat.on("connection")
    def connection(socket):
        socket.emit("a", callback=lambda *x: None)
        socket.emit("b", callback=lambda *x: None)
        socket.on("echo", lambda v, ack: ack(v))

    client = RawSio(in_thread, serve(io))
    client.send("40/chat,")
    reply = client.recv()
    assert reply.startswith('40/chat,{"sid":"') and len(json.loads(reply[8:])["sid"]) == 20
    assert client.recv() == '42/chat,0["a"]'
    assert client.recv() == '42/chat,1["b"]'
    client.send('42/chat,5["echo",{"é":[1,2]}]')
    assert client.recv() == '43/chat,5[{"é":[1,2]}]'

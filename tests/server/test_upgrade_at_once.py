"""roomcast's WebSocketHandler answers a new session's WebSocket request itself
(roomcast.upgrade_request) instead of through pywsgi and gevent-websocket: the app
sees the same environ, the client the same bytes, and every other request still
goes the pywsgi way (WebSocketHandler.upgrade_at_once = False is that way only)."""
from __future__ import annotations

import base64
import hashlib
import os
import time

import gevent
import pytest
from gevent import socket

import roomcast
from roomcast import wsgi
from roomcast.engine.server import EngineServer
from tests.rawclient import RawWebSocket

KEY = base64.b64encode(b"roomcast-upgrade").decode()


@pytest.fixture
def answered_at_once(monkeypatch):
    """How many WebSocket requests were answered at once, by accept_websocket."""
    calls = []
    accept = EngineServer.accept_websocket

    def counted(self, *args, **kwargs):
        calls.append(args[0])
        return accept(self, *args, **kwargs)

    monkeypatch.setattr(EngineServer, "accept_websocket", counted)
    return calls


@pytest.fixture(params=[True, False], ids=["at-once", "pywsgi"])
def way(request, monkeypatch):
    monkeypatch.setattr(wsgi.WebSocketHandler, "upgrade_at_once", request.param)
    return request.param


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def upgrade(url: str, query: str = "EIO=4&transport=websocket", extra: str = "",
            then: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port_of(url)), timeout=10)
    sock.sendall((f"GET /socket.io/?{query} HTTP/1.1\r\nHost: example.com\r\n"
                  "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
                  f"{extra}\r\n").encode() + then)
    return sock


def read_until(sock: socket.socket, marker: bytes, timeout: float = 5.0) -> bytes:
    data = b""
    with gevent.Timeout(timeout):
        while marker not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


def masked(text: str) -> bytes:
    mask = os.urandom(4)
    payload = text.encode()
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(
        b ^ mask[i % 4] for i, b in enumerate(payload))


def test_the_app_sees_the_environ_pywsgi_would_give(serve, monkeypatch, answered_at_once):
    io = roomcast.Server()
    seen = []
    io.on("connection", lambda s: seen.append(s.environ))
    url = serve(io)
    extra = "Cookie: a=1\r\nCookie: b=2\r\nX-Tag: one\r\nX-Tag: two\r\nX_Under: x\r\n"
    environs = []
    for at_once in (True, False):
        monkeypatch.setattr(wsgi.WebSocketHandler, "upgrade_at_once", at_once)
        sock = upgrade(url, extra=extra, then=masked("40"))
        read_until(sock, b"40{")
        environs.append({k: v for k, v in seen.pop().items()
                         if k not in ("REMOTE_PORT", "wsgi.input")})
        sock.close()
    assert len(answered_at_once) == 1
    assert environs[0] == environs[1]
    assert environs[0]["HTTP_COOKIE"] == "a=1; b=2"
    assert environs[0]["QUERY_STRING"] == "EIO=4&transport=websocket"


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
def test_the_client_gets_the_same_101(serve, way, answered_at_once, deflate):
    url = serve(roomcast.Server(per_message_deflate=deflate))
    sock = upgrade(url, extra="Sec-WebSocket-Extensions: permessage-deflate; "
                              "client_max_window_bits\r\n")
    head = read_until(sock, b"\r\n\r\n").split(b"\r\n\r\n")[0]
    sock.close()
    accept = base64.b64encode(hashlib.sha1(
        (KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
    expected = [b"HTTP/1.1 101 Switching Protocols", b"Upgrade: websocket",
                b"Connection: Upgrade", b"Sec-WebSocket-Accept: " + accept]
    if deflate:
        expected.append(b"Sec-WebSocket-Extensions: permessage-deflate; "
                        b"server_no_context_takeover")
    assert head.split(b"\r\n") == expected
    assert len(answered_at_once) == (1 if way else 0)


def test_frames_sent_with_the_request_are_read(serve, answered_at_once):
    io = roomcast.Server()
    io.on("connection", lambda s: s.on("hi", lambda ack: ack("there")))
    url = serve(io)
    sock = upgrade(url, then=masked("40"))   # the connect, in the request's segment
    assert b"40{" in read_until(sock, b"40{")
    sock.sendall(masked('421["hi"]'))
    assert b'431["there"]' in read_until(sock, b'431["there"]')
    assert len(answered_at_once) == 1
    sock.close()


@pytest.mark.parametrize("case", ["origin", "version", "allow_request"])
def test_refusals_are_the_same_and_ask_once(serve, way, answered_at_once, case):
    asked = []

    def allow(environ):
        asked.append(environ["QUERY_STRING"])
        return case != "allow_request"

    io = roomcast.Server(cors={"origin": "http://ok.example"}, allow_request=allow)
    refused = []
    io.engine.on("connection_error", lambda error: refused.append(error["code"]))
    url = serve(io)
    query = "EIO=3&transport=websocket" if case == "version" else "EIO=4&transport=websocket"
    extra = "Origin: http://evil.example\r\n" if case == "origin" else ""
    sock = upgrade(url, query=query, extra=extra)
    response = read_until(sock, b"\x00never", timeout=5)   # to the close
    sock.close()
    head, _, body = response.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.startswith(b"Date: ")]
    status, body_of = {
        "origin": (b"403 Forbidden", b'{"code":4,"message":"Origin not allowed"}'),
        # Node's abortUpgrade: the message alone
        "version": (b"400 Bad Request", b"Unsupported protocol version"),
        "allow_request": (b"400 Bad Request", b"Forbidden"),
    }[case]
    assert lines[0] == b"HTTP/1.1 " + status
    assert b"Connection: close" in lines
    assert body == body_of
    assert answered_at_once == []
    # a "connection_error" each, as Node's handleUpgrade emits; allow_request asked once
    assert refused == [{"origin": 4, "version": 5, "allow_request": 4}[case]]
    assert len(asked) == (1 if case == "allow_request" else 0)


def test_an_accepted_websocket_asks_allow_request_once(serve, way, answered_at_once):
    asked = []
    io = roomcast.Server(allow_request=lambda environ: asked.append(environ["PATH_INFO"]) or True)
    seen = []
    io.on("connection", lambda s: seen.append(s.environ))
    url = serve(io)
    sock = upgrade(url, then=masked("40"))
    read_until(sock, b"40{")
    sock.close()
    assert asked == ["/socket.io/"]
    assert "roomcast.verified" not in seen[0]


def test_a_request_in_pieces_goes_the_pywsgi_way_and_works(serve, answered_at_once):
    url = serve(roomcast.Server())
    sock = socket.create_connection(("127.0.0.1", port_of(url)), timeout=10)
    sock.sendall(b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n")
    gevent.sleep(0.1)
    sock.sendall(f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    assert read_until(sock, b"0{").startswith(b"HTTP/1.1 101 ")
    assert answered_at_once == []
    sock.close()


def test_the_headers_timeout_counts_from_the_connection(answered_at_once):
    io = roomcast.Server()
    server = wsgi.make_server(io, "127.0.0.1", 0, headers_timeout=1.0)
    server.start()
    try:
        sock = socket.create_connection(("127.0.0.1", server.server_port), timeout=10)
        start = time.monotonic()
        sock.sendall(b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n")
        gevent.sleep(0.6)
        sock.sendall(b"Host: x\r\n")   # more, but never the whole request
        response = read_until(sock, b"\x00never", timeout=5)
        took = time.monotonic() - start
        assert response.startswith(b"HTTP/1.1 408 Request Timeout")
        assert 0.9 < took < 1.5, took
        sock.close()
    finally:
        io.close(timeout=0.2)
        server.stop(timeout=1)


def test_an_app_that_overrides_call_gets_every_request(serve, answered_at_once):
    seen = []

    class Guarded(roomcast.WSGIApp):
        def __call__(self, environ, start_response):
            seen.append(environ["PATH_INFO"])
            return super().__call__(environ, start_response)

    url = serve(Guarded(roomcast.Server()))
    ws = RawWebSocket(url)
    assert ws.status == 101 and ws.recv().startswith("0{")
    ws.close()
    assert seen == ["/socket.io/"] and answered_at_once == []


def test_the_compat_wsgi_app_is_answered_at_once(serve, answered_at_once):
    from roomcast import compat

    sio = compat.Server(async_mode="gevent")
    url = serve(compat.WSGIApp(sio, static_files={"/": "index.html"}))
    ws = RawWebSocket(url)
    assert ws.status == 101 and ws.recv().startswith("0{")
    ws.close()
    assert len(answered_at_once) == 1

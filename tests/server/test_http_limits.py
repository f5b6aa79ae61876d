"""roomcast's own HTTP server (io.run / make_server): header, keep-alive and body
timeouts, and max_connections, against raw sockets."""
from __future__ import annotations

import time

import gevent
import pytest
from gevent import socket

import roomcast
from roomcast import wsgi
from tests.rawclient import RawWebSocket, handshake, request


@pytest.fixture
def limited():
    """limited(**limits) -> (url, HTTPServer) serving a Socket.IO server."""
    started = []

    def start(**limits):
        io = roomcast.Server()
        server = wsgi.make_server(io, "127.0.0.1", 0, **limits)
        server.start()
        started.append((io, server))
        return f"http://127.0.0.1:{server.server_port}", server

    yield start
    for io, server in started:
        io.close(timeout=0.2)
        server.stop(timeout=1)


def connect(url: str) -> socket.socket:
    host, port = url.rsplit(":", 1)
    return socket.create_connection(("127.0.0.1", int(port)), timeout=10)


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes; raises on the timeout."""
    data = b""
    with gevent.Timeout(timeout):
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk


def test_documented_defaults_are_nodes():
    server = wsgi.HTTPServer(("127.0.0.1", 0), lambda e, s: [])
    assert (server.headers_timeout, server.keep_alive_timeout, server.request_timeout) == \
        (60.0, 5.0, 300.0)   # Node's headersTimeout, keepAliveTimeout, requestTimeout
    assert server.max_connections == wsgi.default_max_connections()
    assert server.max_connections is None or server.max_connections > 0


def test_slowloris_headers_are_closed_at_the_header_timeout(limited):
    url, _ = limited(headers_timeout=1.0)
    trickling = []
    for _ in range(30):
        sock = connect(url)
        sock.sendall(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n")
        trickling.append(sock)

    def trickle(sock):   # one byte of a header line every 100 ms, forever
        try:
            while True:
                sock.sendall(b"X")
                gevent.sleep(0.1)
        except OSError:
            pass

    started = time.monotonic()
    workers = [gevent.spawn(trickle, s) for s in trickling]
    answers = [read_until_closed(s, timeout=15) for s in trickling]
    elapsed = time.monotonic() - started
    gevent.killall(workers)
    assert all(a.startswith(b"HTTP/1.1 408 Request Timeout") for a in answers), answers[0]
    assert elapsed >= 0.9   # not before the timeout
    # a silent connection (not one byte) is closed too, and the server still serves
    silent = connect(url)
    assert read_until_closed(silent, timeout=15).startswith(b"HTTP/1.1 408")
    assert handshake(url)[0]
    for s in trickling + [silent]:
        s.close()


def test_idle_keep_alive_connections_are_closed(limited):
    url, _ = limited(keep_alive_timeout=0.5)
    sock = connect(url)
    sock.sendall(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n")
    f = sock.makefile("rb")
    assert f.readline().startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    with gevent.Timeout(10):
        while f.read(1):   # the response, then EOF when the server closes
            pass
    assert time.monotonic() - started >= 0.4
    f.close()
    sock.close()


def test_a_trickled_polling_post_body_is_closed_at_the_request_timeout(limited):
    url, _ = limited(request_timeout=1.0)
    sid, _ = handshake(url)
    sock = connect(url)
    sock.sendall(f"POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\n"
                 "Host: x\r\nContent-Length: 100\r\n\r\n40".encode())
    started = time.monotonic()
    answer = read_until_closed(sock, timeout=15)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout"), answer
    assert time.monotonic() - started >= 0.9
    sock.close()
    # a whole body on time is served as before
    assert handshake(url)[0]


def test_connections_beyond_max_connections_get_503(limited, wait_for):
    url, server = limited(max_connections=3)
    held = [RawWebSocket(url, query="EIO=4&transport=websocket") for _ in range(3)]
    assert all(ws.status == 101 for ws in held)
    assert server.connections == 3
    refused = request(url, query="EIO=4&transport=polling")
    assert refused.status == 503
    held.pop().close()
    wait_for(lambda: server.connections == 2, "the server to notice the closed connection")
    assert request(url, query="EIO=4&transport=polling").text.startswith("0{")
    for ws in held:
        ws.close()

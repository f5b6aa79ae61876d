"""roomcast.upgrade_request: which first segments it reads itself, and the very
environ items and 101 that pywsgi and gevent-websocket would give them."""
from __future__ import annotations

import base64
import hashlib

import pytest

from roomcast.upgrade_request import parse, switching_protocols

KEY = "dGhlIHNhbXBsZSBub25jZQ=="   # RFC 6455's example key
PLAIN = ("GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
         "Host: example.com:3000\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n")


def test_a_plain_request_is_read_with_what_follows_it_left_over():
    data = PLAIN.encode() + b"\x81\x82early"
    request = parse(data)
    assert request is not None
    assert request.requestline == "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1"
    assert (request.path, request.query) == ("/socket.io/", "EIO=4&transport=websocket")
    assert request.headers == {
        "HTTP_HOST": "example.com:3000", "HTTP_UPGRADE": "websocket",
        "HTTP_CONNECTION": "Upgrade", "HTTP_SEC_WEBSOCKET_KEY": KEY,
        "HTTP_SEC_WEBSOCKET_VERSION": "13"}
    assert data[request.length:] == b"\x81\x82early"


def test_headers_are_merged_and_dropped_as_pywsgi_does():
    extra = ("Cookie: a=1\r\nCookie: b=2\r\nX-Tag: one\r\nX-Tag:  two \r\n"
             "X_Under: dropped\r\nAccept:\r\n")
    request = parse(PLAIN.replace("\r\n\r\n", "\r\n" + extra + "\r\n").encode())
    assert request is not None
    assert request.headers["HTTP_COOKIE"] == "a=1; b=2"
    assert request.headers["HTTP_X_TAG"] == "one,two"
    assert request.headers["HTTP_ACCEPT"] == ""
    assert not any("UNDER" in key for key in request.headers)


@pytest.mark.parametrize("change", [
    ("\r\n\r\n", "\r\n"),                                    # not whole yet
    ("GET ", "POST "),
    ("HTTP/1.1\r\n", "HTTP/1.0\r\n"),
    ("GET /socket.io/", "GET http://example.com/socket.io/"),   # absolute form
    ("/socket.io/?", "/socket%2Eio/?"),                      # escapes: pywsgi unquotes
    ("Upgrade: websocket", "Upgrade: h2c"),
    ("Connection: Upgrade", "Connection: keep-alive"),
    ("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 12"),
    (f"Sec-WebSocket-Key: {KEY}", "Sec-WebSocket-Key: c2hvcnQ="),   # not 16 bytes
    (f"Sec-WebSocket-Key: {KEY}", "Sec-WebSocket-Key: !!!"),
    ("Host: example.com:3000\r\n", "Host: example.com\r\n  folded\r\n"),
    ("Host: example.com:3000\r\n", "Not a header line\r\n"),
    ("Host: example.com:3000\r\n", "Content-Length: 0\r\n"),
    ("Host: example.com:3000\r\n", "Transfer-Encoding: chunked\r\n"),
    ("Host: example.com:3000\r\n", "Expect: 100-continue\r\n"),
    ("Host: example.com:3000\r\n", "Host: a\nb\r\n"),       # a bare LF in a line
], ids=lambda change: change[1].strip()[:30])
def test_anything_else_goes_the_pywsgi_way(change):
    assert parse(PLAIN.replace(*change).encode()) is None


def test_too_many_headers_go_the_pywsgi_way():
    many = "".join(f"X-{i}: {i}\r\n" for i in range(100))
    assert parse(PLAIN.replace("\r\n\r\n", "\r\n" + many + "\r\n").encode()) is None


def test_the_101_is_gevent_websockets_with_the_agreed_extensions():
    accept = base64.b64encode(hashlib.sha1(
        (KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
    assert accept == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="   # RFC 6455, section 1.3
    assert switching_protocols(KEY) == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
    assert switching_protocols(KEY, "permessage-deflate").endswith(
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n")

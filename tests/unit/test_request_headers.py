"""roomcast.request_headers gives the very message http.client.parse_headers gives."""
from __future__ import annotations

import http.client
import io
import random

import pytest
from gevent.pywsgi import OldMessage

from roomcast import request_headers
from roomcast.request_headers import parse_headers


def _read(parse, data: bytes):
    fp = io.BytesIO(data)
    try:
        message = parse(fp)
    except http.client.HTTPException as exc:
        return ("raised", type(exc).__name__, str(exc)), fp.tell()
    state = dict(vars(message))
    state["policy"] = repr(state["policy"])
    state["defects"] = [type(defect).__name__ for defect in state["defects"]]
    return (state, message.items(), list(message.headers), message.get("host"),
            message.typeheader, message.status), fp.tell()


def _same(data: bytes) -> None:
    expected = _read(lambda fp: http.client.parse_headers(fp, _class=OldMessage), data)
    assert _read(lambda fp: parse_headers(fp, OldMessage), data) == expected


WEBSOCKET_REQUEST = (b"Host: 127.0.0.1:5000\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: cm9vbWNhc3QtYmVuY2htYQ==\r\n"
                     b"Sec-WebSocket-Version: 13\r\n\r\n")


@pytest.mark.parametrize("data", [
    WEBSOCKET_REQUEST,
    WEBSOCKET_REQUEST + b"the body: not read",
    b"\r\n", b"\n", b"",
    b"Host: a\nX-Empty:\nX-Spaces: \t v \t\n\n",
    b"Host: a\r\nX-Folded: one\r\n two\r\n\r\n",         # folded: the email parser's way
    b"Host: a\r\nnot a header\r\nX: y\r\n\r\n",            # a defect ends the headers
    b"From nobody\r\nHost: a\r\n\r\n",
    b"Host: a\r\nX-Latin: \xe9\x85\x0c\r\n\r\n",          # bytes str.splitlines() would split on
    b"Host: a\r\nX-Cr: a\rb\r\n\r\n",
    b"Host: a",                                            # the connection ended mid-line
    b"X: " + b"v" * 70000 + b"\r\n\r\n",                   # LineTooLong
    b"".join(b"H%d: v\r\n" % i for i in range(101)) + b"\r\n",   # over 100 headers
])
def test_same_message_as_http_client(data):
    _same(data)


def test_same_message_for_random_header_blocks():
    names = ["Host", "X-A", "a_b", "From", "From ", "", " ", "\t", "x y", "\x85", "\xe9"]
    values = ["", " ", "v", " v ", "\tv", "a:b", "\x85q", "v\r", "x\x0cy"]
    ends = ["\r\n", "\n", "\r", ""]
    rng = random.Random(8)
    plain = 0
    for _ in range(3000):
        block = "".join(rng.choice(names) + rng.choice([":", ": ", ""]) + rng.choice(values)
                        + rng.choice(ends) for _ in range(rng.randint(0, 5)))
        data = (block + rng.choice(["\r\n", "\n", ""])).encode("latin-1")
        plain += request_headers.PLAIN_BLOCK.fullmatch(data.decode("latin-1")) is not None
        _same(data)
    assert plain > 100   # the fast path was taken too


def test_environ_items_as_pywsgi_makes_them():
    # roomcast's WebSocketHandler overrides pywsgi's _headers() (the request's HTTP_*
    # environ items): the same items, from the stored names and values
    from gevent import pywsgi

    from roomcast.wsgi import WebSocketHandler

    names = ["Host", "X-A", "a_b", "Content-Type", "content-length", "Cookie", "", "x-y", "\xc9"]
    values = ["", " v ", "v", "a:b", "\tq\t", "\xe9"]
    rng = random.Random(9)
    for _ in range(2000):
        block = "".join(rng.choice(names) + ":" + rng.choice(values)
                        + rng.choice(["\r\n", "\r\n folded\r\n"]) for _ in range(rng.randint(0, 6)))
        handler = object.__new__(WebSocketHandler)
        handler.headers = parse_headers(io.BytesIO((block + "\r\n").encode("latin-1")), OldMessage)
        assert list(handler._headers()) == list(pywsgi.WSGIHandler._headers(handler))

"""Origin checks: when ``cors`` names origins, every Engine.IO request from another
origin is refused with 403 (WebSocket upgrades too: cross-site WebSocket hijacking);
requests without an Origin header pass."""
from __future__ import annotations

import json

import geventwebsocket.handler
import pytest
from gevent.pywsgi import WSGIServer

import roomcast
from tests.rawclient import RawWebSocket, handshake, request

OK, EVIL = "http://ok.example", "http://evil.example"
WS_QUERY = "EIO=4&transport=websocket"


def chat_server(**kwargs) -> roomcast.Server:
    io = roomcast.Server(**kwargs)
    io.on("connection", lambda socket: socket.on("echo", lambda msg, ack: ack(msg)))
    return io


@pytest.mark.parametrize("origins", [[OK], OK, lambda origin: origin == OK],
                         ids=["list", "string", "callable"])
def test_cross_origin_websocket_is_refused_and_same_origin_works(serve, origins):
    url = serve(chat_server(cors={"origin": origins, "credentials": True}))
    refused = RawWebSocket(url, query=WS_QUERY, headers={"Origin": EVIL})
    assert refused.status == 403
    body = json.loads(refused.f.read(int(refused.headers["content-length"])))
    assert body == {"code": 4, "message": "Origin not allowed"}
    refused.close()

    for headers in ({"Origin": OK}, {}):   # the named origin, and a non-browser client
        ws = RawWebSocket(url, query=WS_QUERY, headers=headers)
        assert ws.status == 101
        assert ws.recv().startswith("0{")
        ws.send("40")
        assert ws.recv().startswith("40{")
        ws.send('421["echo","hi"]')
        assert ws.recv() == '431["hi"]'
        ws.close()


def test_cross_origin_polling_requests_are_refused(serve):
    io = chat_server(cors={"origin": [OK]})
    errors: list = []
    io.engine.on("connection_error", lambda err: errors.append((err["code"], err["message"])))
    url = serve(io)
    # a handshake from another origin
    r = request(url, query="EIO=4&transport=polling", headers={"Origin": EVIL})
    assert r.status == 403 and r.json() == {"code": 4, "message": "Origin not allowed"}
    assert errors == [(4, "Origin not allowed")]
    # requests of a session opened elsewhere (a stolen sid) from another origin
    sid, _ = handshake(url)
    q = f"EIO=4&transport=polling&sid={sid}"
    assert request(url, "POST", query=q, body="40", headers={"Origin": EVIL}).status == 403
    assert request(url, query=q, headers={"Origin": EVIL}).status == 403
    preflight = request(url, "OPTIONS", query=q, headers={"Origin": EVIL})
    assert preflight.status == 403
    # the same session from the named origin works
    assert request(url, "POST", query=q, body="40", headers={"Origin": OK}).text == "ok"
    answer = request(url, query=q, headers={"Origin": OK})
    assert answer.text.startswith("40{")
    assert answer.headers["access-control-allow-origin"] == OK


def test_wildcard_and_no_cors_refuse_nothing(serve):
    for cors in ("*", {"origin": True}, None):
        url = serve(chat_server(cors=cors))
        ws = RawWebSocket(url, query=WS_QUERY, headers={"Origin": EVIL})
        assert ws.status == 101, cors
        ws.close()
        assert request(url, query="EIO=4&transport=polling",
                       headers={"Origin": EVIL}).status == 200


def test_a_failing_origin_callable_refuses(serve):
    def broken(origin):
        raise RuntimeError("bug")

    url = serve(chat_server(cors={"origin": broken}))
    assert request(url, query="EIO=4&transport=polling",
                   headers={"Origin": OK}).status == 403


def test_stock_gevent_websocket_handler_closes_a_cross_origin_websocket():
    """Under the stock handler the 101 is already sent: the WebSocket is closed, 1008."""
    io = chat_server(cors={"origin": [OK]})
    server = WSGIServer(("127.0.0.1", 0), roomcast.WSGIApp(io), log=None,
                        handler_class=geventwebsocket.handler.WebSocketHandler)
    server.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        ws = RawWebSocket(url, query=WS_QUERY, headers={"Origin": EVIL})
        opcode, payload = ws.recv_frame()
        assert (opcode, payload[:2], payload[2:]) == (8, b"\x03\xf0", b"Origin not allowed")
        ws.close()
        assert io.engine.clients_count == 0
    finally:
        io.close()
        server.stop(timeout=1)

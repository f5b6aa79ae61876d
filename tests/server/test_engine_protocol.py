"""Engine.IO v4 at the wire: a bare EngineServer driven with raw HTTP and WebSocket."""
from __future__ import annotations

import gzip
import json
import time

import gevent
import pytest

import roomcast
from roomcast.engine import EngineServer
from tests.rawclient import RawWebSocket, handshake, request

P = "/engine.io/"


def echo_engine(**kwargs) -> tuple[EngineServer, list]:
    """An Engine.IO server that echoes every message and records close reasons."""
    engine = EngineServer(path="/engine.io", **kwargs)
    closed: list = []

    @engine.on("connection")
    def on_connection(conn):
        conn.on("message", conn.send)
        conn.on("close", lambda reason, desc: closed.append((conn.id, reason)))

    return engine, closed


class CountingApp:
    """WSGI middleware that counts the GETs reaching the engine.

    A request's greenlet runs from here into the engine without yielding, until a
    long-polling GET waits for packets; so once the test sees a GET counted, that GET
    is pending in its session."""

    def __init__(self, app) -> None:
        self.app = app
        self.gets = 0

    def __call__(self, environ, start_response):
        if environ["REQUEST_METHOD"] == "GET":
            self.gets += 1
        return self.app(environ, start_response)

    def websocket_refusal(self, environ):   # roomcast's handler asks before upgrading
        return self.app.websocket_refusal(environ)


@pytest.fixture
def serve_counting(serve):
    """serve_counting(engine) -> (url, CountingApp); the engine is closed at teardown."""
    engines = []

    def _serve(engine):
        engines.append(engine)
        app = CountingApp(roomcast.WSGIApp(engine))
        return serve(app), app

    yield _serve
    for engine in engines:
        engine.close(timeout=0.2)   # no graceful wait for sessions a test left open


# ---------------------------------------------------------------- handshake and errors
def test_polling_handshake_open_packet(serve):
    url = serve(echo_engine(ping_interval=0.3, ping_timeout=0.4, max_http_buffer_size=5000)[0])
    r = request(url, path=P, query="EIO=4&transport=polling&t=abc")
    assert r.status == 200
    assert r.headers["content-type"] == "text/plain; charset=UTF-8"
    assert r.text[0] == "0"
    info = json.loads(r.text[1:])
    assert list(info) == ["sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"]
    assert len(info["sid"]) == 20
    assert info["upgrades"] == ["websocket"]
    assert (info["pingInterval"], info["pingTimeout"], info["maxPayload"]) == (300, 400, 5000)


def test_no_upgrades_advertised_when_disallowed(serve):
    url = serve(echo_engine(allow_upgrades=False)[0])
    assert handshake(url, P)[1]["upgrades"] == []


@pytest.mark.parametrize("method,query,status,code,message", [
    ("GET", "EIO=4&transport=carrier-pigeon", 400, 0, "Transport unknown"),
    ("GET", "EIO=4", 400, 0, "Transport unknown"),
    ("GET", "EIO=4&transport=polling&sid=nope", 400, 1, "Session ID unknown"),
    ("POST", "EIO=4&transport=polling", 400, 2, "Bad handshake method"),
    ("GET", "EIO=4&transport=websocket", 400, 3, "Bad request"),
    ("GET", "EIO=3&transport=polling", 400, 5, "Unsupported protocol version"),
])
def test_errors_answer_as_node(serve, method, query, status, code, message):
    url = serve(echo_engine()[0])
    r = request(url, method=method, path=P, query=query)
    assert r.status == status
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"code": code, "message": message}


def test_transport_mismatch_is_bad_request(serve):
    url = serve(echo_engine()[0])
    sid, _ = handshake(url, P)
    r = request(url, path=P, query=f"EIO=4&transport=websocket&sid={sid}")
    assert (r.status, r.json()["code"]) == (400, 3)


def test_allow_request_refusal_is_403_code_4(serve):
    engine, _ = echo_engine(allow_request=lambda environ: "no entry"
                            if "HTTP_X_TOKEN" not in environ else True)
    url = serve(engine)
    r = request(url, path=P, query="EIO=4&transport=polling")
    assert r.status == 403
    assert r.json() == {"code": 4, "message": "no entry"}
    ok = request(url, path=P, query="EIO=4&transport=polling", headers={"X-Token": "1"})
    assert ok.status == 200


def test_header_events_and_connection_error(serve):
    engine, _ = echo_engine()
    errors, seen = [], []
    engine.on("connection_error", errors.append)
    engine.on("initial_headers", lambda headers, environ: headers.update({"X-First": "1"}))

    @engine.on("headers")
    def every(headers, environ):
        seen.append(environ["REQUEST_METHOD"])
        headers["X-Every"] = "yes"

    url = serve(engine)
    r = request(url, path=P, query="EIO=4&transport=polling")
    assert (r.headers["x-first"], r.headers["x-every"]) == ("1", "yes")
    sid = json.loads(r.text[1:])["sid"]
    r = request(url, "POST", P, f"EIO=4&transport=polling&sid={sid}", "4x")
    assert r.headers["x-every"] == "yes" and "x-first" not in r.headers
    assert seen == ["GET", "POST"]
    request(url, path=P, query="EIO=4&transport=polling&sid=nope")
    assert [(e["code"], e["message"]) for e in errors] == [(1, "Session ID unknown")]


# ---------------------------------------------------------------- long-polling
def test_polling_round_trip_text_and_binary(serve):
    url = serve(echo_engine()[0])
    sid, _ = handshake(url, P)
    q = f"EIO=4&transport=polling&sid={sid}"
    r = request(url, "POST", P, q, "4hello\x1ebAQIDBA==")
    assert (r.status, r.text, r.headers["content-type"]) == (200, "ok", "text/html")
    r = request(url, path=P, query=q)
    assert r.text == "4hello\x1ebAQIDBA=="


def test_get_waits_until_a_packet_is_queued(serve_counting, wait_for):
    engine, _ = echo_engine()
    url, app = serve_counting(engine)
    sid, _ = handshake(url, P)
    pending = gevent.spawn(request, url, "GET", P, f"EIO=4&transport=polling&sid={sid}")
    wait_for(lambda: app.gets == 2, "the GET to reach the session")
    gevent.sleep(0.2)   # proving a negative: the GET is still unanswered after a while
    assert not pending.ready()
    engine.clients[sid].send("late")
    assert pending.get(timeout=5).text == "4late"


def test_oversized_post_gets_413_and_the_session_survives(serve):
    url = serve(echo_engine(max_http_buffer_size=100)[0])
    sid, _ = handshake(url, P)
    q = f"EIO=4&transport=polling&sid={sid}"
    assert request(url, "POST", P, q, "4" + "x" * 200).status == 413
    assert request(url, "POST", P, q, "4" + "x" * 99).text == "ok"
    assert request(url, path=P, query=q).text == "4" + "x" * 99


def test_duplicate_get_is_400_and_closes_the_session(serve_counting, wait_for):
    engine, closed = echo_engine()
    url, app = serve_counting(engine)
    sid, _ = handshake(url, P)
    q = f"EIO=4&transport=polling&sid={sid}"
    first = gevent.spawn(request, url, "GET", P, q)
    wait_for(lambda: app.gets == 2, "the first GET to be pending")
    second = request(url, path=P, query=q)
    assert second.status == 400
    assert first.get(timeout=5).text == "1"
    assert closed == [(sid, "transport error")]
    assert request(url, path=P, query=q).json()["code"] == 1


def test_undecodable_payload_is_ok_then_closes_the_session(serve):
    engine, closed = echo_engine()
    url = serve(engine)
    sid, _ = handshake(url, P)
    q = f"EIO=4&transport=polling&sid={sid}"
    assert request(url, "POST", P, q, "9garbage").text == "ok"
    assert closed == [(sid, "parse error")]
    assert request(url, path=P, query=q).json()["code"] == 1


def test_client_close_packet_closes_the_session(serve):
    engine, closed = echo_engine()
    url = serve(engine)
    sid, _ = handshake(url, P)
    request(url, "POST", P, f"EIO=4&transport=polling&sid={sid}", "1")
    assert closed == [(sid, "transport close")]


def test_polling_responses_are_compressed_above_the_threshold(serve):
    engine, _ = echo_engine()
    url = serve(engine)
    sid, _ = handshake(url, P)
    q = f"EIO=4&transport=polling&sid={sid}"
    engine.clients[sid].send("y" * 5000)
    r = request(url, path=P, query=q, headers={"Accept-Encoding": "gzip, deflate"})
    assert r.headers["content-encoding"] == "gzip"
    assert gzip.decompress(r.body).decode() == "4" + "y" * 5000


def test_cors_preflight_and_origin_reflection(serve):
    engine, _ = echo_engine(cors={"origin": ["http://a.example"], "credentials": True})
    url = serve(engine)
    pre = request(url, "OPTIONS", P, "EIO=4&transport=polling",
                  headers={"Origin": "http://a.example",
                           "Access-Control-Request-Method": "POST",
                           "Access-Control-Request-Headers": "content-type"})
    assert pre.status == 204
    assert pre.headers["access-control-allow-origin"] == "http://a.example"
    assert pre.headers["access-control-allow-credentials"] == "true"
    assert "POST" in pre.headers["access-control-allow-methods"]
    assert pre.headers["access-control-allow-headers"] == "content-type"
    other = request(url, path=P, query="EIO=4&transport=polling",
                    headers={"Origin": "http://evil.example"})
    assert other.status == 403 and "access-control-allow-origin" not in other.headers


def test_cookie_option_sets_the_sticky_session_cookie(serve):
    url = serve(echo_engine(cookie=True)[0])
    r = request(url, path=P, query="EIO=4&transport=polling")
    sid = json.loads(r.text[1:])["sid"]
    assert r.headers["set-cookie"] == f"io={sid}; Path=/; HttpOnly; SameSite=Lax"


# ---------------------------------------------------------------- WebSocket
def test_websocket_only_session_starts_with_the_open_packet(serve):
    url = serve(echo_engine()[0])
    ws = RawWebSocket(url, P)
    assert ws.status == 101
    first = ws.recv()
    assert first.startswith("0{") and json.loads(first[1:])["upgrades"] == []
    ws.send("4hi")
    assert ws.recv() == "4hi"
    ws.send(b"\x00\x01\xff")
    assert ws.recv() == b"\x00\x01\xff"
    ws.close()


def test_upgrade_from_polling(serve_counting, wait_for):
    engine, _ = echo_engine()
    url, app = serve_counting(engine)
    sid, _ = handshake(url, P)
    q = f"EIO=4&transport=polling&sid={sid}"
    pending = gevent.spawn(request, url, "GET", P, q)
    wait_for(lambda: app.gets == 2, "the GET to be pending")
    ws = RawWebSocket(url, P, query=f"EIO=4&transport=websocket&sid={sid}")
    ws.send("2probe")
    assert ws.recv() == "3probe"
    assert pending.get(timeout=2).text == "6"   # the noop that frees the pending GET
    ws.send("5")
    wait_for(lambda: engine.clients[sid].transport == "websocket", "the upgrade")
    ws.send("4after")
    assert ws.recv() == "4after"
    engine.clients[sid].send(b"\x07")
    assert ws.recv() == b"\x07"
    ws.close()


def test_packets_queued_during_upgrade_arrive_in_order(serve):
    engine, _ = echo_engine()
    url = serve(engine)
    sid, _ = handshake(url, P)
    ws = RawWebSocket(url, P, query=f"EIO=4&transport=websocket&sid={sid}")
    ws.send("2probe")
    assert ws.recv() == "3probe"
    for i in range(3):
        engine.clients[sid].send(f"m{i}")
    ws.send("5")
    assert [ws.recv() for _ in range(3)] == ["4m0", "4m1", "4m2"]
    ws.close()


def test_upgrade_that_never_completes_times_out_and_polling_goes_on(serve):
    engine, closed = echo_engine(upgrade_timeout=0.2)
    url = serve(engine)
    sid, _ = handshake(url, P)
    ws = RawWebSocket(url, P, query=f"EIO=4&transport=websocket&sid={sid}")
    ws.send("2probe")
    assert ws.recv() == "3probe"
    assert ws.wait_closed(timeout=2)                  # no "5" within upgrade_timeout
    q = f"EIO=4&transport=polling&sid={sid}"
    request(url, "POST", P, q, "4still polling")
    assert request(url, path=P, query=q).text == "4still polling"
    assert closed == [] and engine.clients[sid].transport == "polling"


def test_server_close_during_upgrade_closes_over_polling(serve_counting, wait_for):
    engine, closed = echo_engine()
    url, app = serve_counting(engine)
    sid, _ = handshake(url, P)
    q = f"EIO=4&transport=polling&sid={sid}"
    ws = RawWebSocket(url, P, query=f"EIO=4&transport=websocket&sid={sid}")
    ws.send("2probe")
    assert ws.recv() == "3probe"
    pending = gevent.spawn(request, url, "GET", P, q)
    wait_for(lambda: app.gets == 3, "the GET to be pending")   # handshake, upgrade, this
    engine.clients[sid].close()
    assert pending.get(timeout=2).text.endswith("1")   # the close packet
    assert ws.wait_closed(timeout=2)                    # the probe socket is dropped
    assert closed == [(sid, "forced close")]


def test_server_close_of_a_websocket_session_flushes_first(serve):
    engine, closed = echo_engine()
    url = serve(engine)
    ws = RawWebSocket(url, P)
    ws.recv()
    conn = next(iter(engine.clients.values()))
    for i in range(50):
        conn.send("x" * 10000 + str(i))
    conn.close()
    got = [ws.recv() for _ in range(50)]
    assert got[-1] == "4" + "x" * 10000 + "49"
    assert ws.wait_closed()
    assert closed == [(conn.id, "forced close")]


def test_message_over_max_payload_closes_only_that_websocket(serve, wait_for):
    engine, closed = echo_engine(max_http_buffer_size=1000)
    url = serve(engine)
    good, bad = RawWebSocket(url, P), RawWebSocket(url, P)
    good.recv(), bad.recv()
    bad.send("4" + "z" * 999)                 # just under: accepted
    assert bad.recv() == "4" + "z" * 999
    bad.send("4" + "z" * 1000)                # over: that connection is closed
    assert bad.wait_closed()
    wait_for(lambda: len(closed) == 1, "the close")
    assert closed[0][1] == "transport error"
    good.send("4still")
    assert good.recv() == "4still"
    good.close()


def test_malformed_websocket_packet_closes_with_parse_error(serve, wait_for):
    engine, closed = echo_engine()
    url = serve(engine)
    ws, other = RawWebSocket(url, P), RawWebSocket(url, P)
    ws.recv(), other.recv()
    ws.send("x-not-a-packet")
    assert ws.wait_closed()
    wait_for(lambda: closed, "the close")
    assert closed[0][1] == "parse error"
    other.send("4alive")
    assert other.recv() == "4alive"


def test_client_ping_is_an_invalid_heartbeat_direction(serve, wait_for):
    engine, closed = echo_engine()
    url = serve(engine)
    ws = RawWebSocket(url, P)
    ws.recv()
    ws.send("2")
    assert ws.wait_closed()
    wait_for(lambda: closed, "the close")
    assert closed[0][1] == "transport error"


def test_refused_websocket_gets_nodes_plain_400(serve):
    engine, _ = echo_engine()
    url = serve(engine)
    ws = RawWebSocket(url, P, query="EIO=4&transport=websocket&sid=unknown")
    assert ws.status == 400   # before any upgrade, with roomcast's handler
    assert ws.f.read() == b"Session ID unknown"
    sid, _ = handshake(url, P)
    engine.clients[sid].upgrading = True   # a second upgrade: Node upgrades, then closes it
    second = RawWebSocket(url, P, query=f"EIO=4&transport=websocket&sid={sid}")
    assert second.status == 101
    assert second.recv_frame() == (8, b"")   # a close frame without a status code


def test_stock_gevent_websocket_handler_closes_a_refused_websocket(serve):
    from gevent.pywsgi import WSGIServer
    from geventwebsocket.handler import WebSocketHandler

    import roomcast

    server = WSGIServer(("127.0.0.1", 0), roomcast.WSGIApp(echo_engine()[0]),
                        handler_class=WebSocketHandler, log=None)
    server.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        ws = RawWebSocket(url, P, query="EIO=4&transport=websocket&sid=unknown")
        assert ws.status == 101
        opcode, payload = ws.recv_frame()
        assert opcode == 8 and payload[2:] == b"Session ID unknown"
        good = RawWebSocket(url, P)       # the stock handler serves sessions normally
        assert good.recv().startswith("0{")
        good.close()
    finally:
        server.stop(timeout=1)


# ---------------------------------------------------------------- heartbeats
def test_heartbeat_keeps_an_answering_client_alive_and_drops_a_silent_one(serve):
    engine, closed = echo_engine(ping_interval=0.2, ping_timeout=0.15)
    url = serve(engine)
    alive, silent = RawWebSocket(url, P), RawWebSocket(url, P)
    alive.recv(), silent.recv()
    silent_sid = list(engine.clients)[-1]
    pings = 0
    start = time.monotonic()
    with gevent.Timeout(3):
        while pings < 5:
            opcode, payload = alive.recv_frame()
            if payload == b"2":
                pings += 1
                alive.send("3")
    elapsed = time.monotonic() - start
    assert 0.8 <= elapsed < 2.0          # five pings, 0.2 s apart
    assert [c for c in closed if c[1] == "ping timeout"] == [(silent_sid, "ping timeout")]
    assert len(engine.clients) == 1
    alive.close()


def test_silent_client_is_closed_within_interval_plus_timeout(serve, wait_for):
    engine, closed = echo_engine(ping_interval=0.3, ping_timeout=0.2)
    url = serve(engine)
    sid, _ = handshake(url, P)
    start = time.monotonic()
    wait_for(lambda: closed, "the ping timeout", timeout=3)
    took = time.monotonic() - start
    assert closed == [(sid, "ping timeout")]
    assert 0.45 <= took <= 0.5 + 1.0   # the slack is for a loaded machine's scheduling


def test_close_handlers_run_with_the_slot_off_the_direct_write_path(serve, wait_for):
    engine = EngineServer(path="/engine.io")
    seen = []

    @engine.on("connection")
    def on_connection(conn):
        conn.on("close", lambda reason, desc: seen.append(
            (engine.table.is_busy(conn.slot), conn._fd, reason)))

    url = serve(engine)
    ws = RawWebSocket(url, P)
    ws.recv()
    ws.close()
    wait_for(lambda: seen, "the close handler")
    assert seen[0][1] == -1 and seen[0][2] == "transport close"

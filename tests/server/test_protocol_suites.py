"""The checks of the official protocol test suites, in roomcast's own words.

The ``test-suite/`` folders of socketio/engine.io-protocol (24 checks) and
socketio/socket.io-protocol (32 checks) are mocha tests that Node's servers pass;
they are not published on a package registry, so they cannot be installed at run
time. Each of their checks is written again here with raw HTTP and WebSocket
clients, against the server configuration their READMEs give (ping interval
300 ms, ping timeout 200 ms, maxPayload 1e6, connectTimeout 1 s, CORS "*").
The Engine.IO checks that both suites share run against the bare EngineServer
(``/engine.io/``, echo) and the Socket.IO server (``/socket.io/``).
"""
from __future__ import annotations

import json

import gevent
import pytest

import roomcast
import roomcast.wsgi
from roomcast.engine import EngineServer
from tests.rawclient import Connection, RawWebSocket, handshake, request, request_bytes

PING_INTERVAL, PING_TIMEOUT = 0.3, 0.2


def suite_engine() -> EngineServer:
    """engine.io-protocol's reference server: every message is sent back."""
    engine = EngineServer(path="/engine.io", ping_interval=PING_INTERVAL,
                          ping_timeout=PING_TIMEOUT, max_http_buffer_size=1_000_000,
                          cors={"origin": "*"})

    @engine.on("connection")
    def on_connection(conn):
        conn.on("message", conn.send)

    return engine


def suite_io() -> roomcast.Server:
    """socket.io-protocol's reference server."""
    io = roomcast.Server(ping_interval=PING_INTERVAL, ping_timeout=PING_TIMEOUT,
                         max_http_buffer_size=1_000_000, connect_timeout=1.0,
                         cors={"origin": "*"})

    @io.on("connection")
    def on_connection(socket):
        socket.emit("auth", socket.handshake["auth"])
        socket.on("message", lambda *args: socket.emit("message-back", *args))

        def with_ack(*args):
            *values, ack = args
            ack(*values)

        socket.on("message-with-ack", with_ack)

    io.of("/custom").on("connection",
                        lambda socket: socket.emit("auth", socket.handshake["auth"]))
    return io


@pytest.fixture(params=["engine", "socketio"])
def served(request, serve) -> tuple[str, str]:
    """(url, path) of either suite's server, for the Engine.IO checks both suites make."""
    if request.param == "engine":
        return serve(suite_engine()), "/engine.io/"
    return serve(suite_io()), "/socket.io/"


def polling(sid: str | None = None) -> str:
    return "EIO=4&transport=polling" + (f"&sid={sid}" if sid else "")


def websocket(sid: str | None = None) -> str:
    return "EIO=4&transport=websocket" + (f"&sid={sid}" if sid else "")


def open_packet(text: str) -> dict:
    assert text.startswith("0"), text
    info = json.loads(text[1:])
    assert set(info) == {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}
    assert isinstance(info["sid"], str)
    assert (info["pingInterval"], info["pingTimeout"], info["maxPayload"]) == (300, 200, 1000000)
    return info


def next_text(ws: RawWebSocket) -> str | bytes:
    """The next message, pings included and not answered (``ws.recv()`` answers
    and skips them)."""
    while True:
        opcode, payload = ws.recv_frame()
        if opcode == 1:
            return payload.decode("utf-8")
        if opcode == 2:
            return payload
        if opcode == 8:
            raise ConnectionError("closed by the server")


class _CountingHandler(roomcast.wsgi.WebSocketHandler):
    """Counts the connections whose handler waits for a request line, so that a test
    can write to several connections while all of their readers are parked: the
    server then wakes them in an order the test does not choose (gevent tends to
    wake the last-written socket first). Every request goes the pywsgi way, where the
    handler waits in read_requestline (these are polling requests anyway)."""

    upgrade_at_once = False

    def read_requestline(self):
        self.server.parked += 1
        return super().read_requestline()


@pytest.fixture
def serve_parked():
    """serve_parked(app) -> (url, server): roomcast's handler, counting parked readers."""
    from gevent.pywsgi import WSGIServer

    servers = []

    def _serve(app):
        server = WSGIServer(("127.0.0.1", 0), roomcast.WSGIApp(app),
                            handler_class=_CountingHandler, log=None)
        server.parked = 0
        server.start()
        servers.append((server, app))
        return f"http://127.0.0.1:{server.server_port}", server

    yield _serve
    for server, app in servers:
        app.close()
        server.stop(timeout=1)


def parked_connection(url: str, server, wait_for) -> Connection:
    before = server.parked
    conn = Connection(url)
    wait_for(lambda: server.parked > before, "the server to wait for the request")
    return conn


# ---------------------------------------------------------------- handshake (both suites)
def test_polling_handshake_opens_a_session(served):
    url, path = served
    r = request(url, path=path, query=polling())
    assert r.status == 200
    assert open_packet(r.text)["upgrades"] == ["websocket"]


def test_polling_handshake_needs_eio_4(served):
    url, path = served
    assert request(url, path=path, query="transport=polling").status == 400
    assert request(url, path=path, query="EIO=abc&transport=polling").status == 400


def test_polling_handshake_needs_a_known_transport(served):
    url, path = served
    assert request(url, path=path, query="EIO=4").status == 400
    assert request(url, path=path, query="EIO=4&transport=abc").status == 400


def test_polling_handshake_needs_get(served):
    url, path = served
    assert request(url, "POST", path, polling()).status == 400
    assert request(url, "PUT", path, polling()).status == 400


def test_websocket_handshake_opens_a_session(served):
    url, path = served
    ws = RawWebSocket(url, path, websocket())
    assert open_packet(next_text(ws))["upgrades"] == []
    ws.close()


@pytest.mark.parametrize("query", ["transport=websocket", "EIO=abc&transport=websocket",
                                   "EIO=4", "EIO=4&transport=abc"])
def test_websocket_handshake_with_bad_query_is_refused(served, query):
    url, path = served
    ws = RawWebSocket(url, path, query)
    assert ws.status == 400   # Node's abortUpgrade: no session, no WebSocket
    ws.close()


# ---------------------------------------------------------------- messages (engine.io suite)
@pytest.mark.parametrize("payload", ["4hello", "4test1\x1e4test2\x1e4test3", "4hello\x1ebAQIDBA=="])
def test_polling_payload_comes_back(serve, payload):
    url = serve(suite_engine())
    sid, _ = handshake(url, "/engine.io/")
    post = request(url, "POST", "/engine.io/", polling(sid), payload)
    assert (post.status, post.text) == (200, "ok")
    poll = request(url, path="/engine.io/", query=polling(sid))
    assert (poll.status, poll.text) == (200, payload)


def test_polling_invalid_payload_closes_the_session(serve):
    url = serve(suite_engine())
    sid, _ = handshake(url, "/engine.io/")
    request(url, "POST", "/engine.io/", polling(sid), "abc")
    assert request(url, path="/engine.io/", query=polling(sid)).status == 400


def test_polling_duplicate_get_closes_the_session(serve, wait_for):
    engine = suite_engine()
    url = serve(engine)
    sid, _ = handshake(url, "/engine.io/")
    first = gevent.spawn(request, url, "GET", "/engine.io/", polling(sid))
    wait_for(lambda: engine.clients[sid].polling_request_pending, "the first GET to wait")
    second = request(url, path="/engine.io/", query=polling(sid) + "&t=burst")
    assert second.status == 400
    assert (first.get(timeout=5).status, first.get().text) == (200, "1")
    assert request(url, path="/engine.io/", query=polling(sid)).status == 400


def test_websocket_text_and_binary_come_back(serve):
    url = serve(suite_engine())
    ws = RawWebSocket(url, "/engine.io/", websocket())
    open_packet(next_text(ws))
    ws.send("4hello")
    assert ws.recv() == "4hello"
    ws.send(bytes([1, 2, 3, 4]))
    assert ws.recv() == bytes([1, 2, 3, 4])
    ws.close()


def test_websocket_invalid_packet_closes_the_connection(serve):
    url = serve(suite_engine())
    ws = RawWebSocket(url, "/engine.io/", websocket())
    open_packet(next_text(ws))
    ws.send("abc")
    assert ws.wait_closed()


# ---------------------------------------------------------------- heartbeat (both suites)
def test_polling_ping_pong(served):
    url, path = served
    sid, _ = handshake(url, path)
    for _ in range(3):
        poll = request(url, path=path, query=polling(sid))
        assert (poll.status, poll.text) == (200, "2")
        assert request(url, "POST", path, polling(sid), "3").status == 200


def test_polling_session_closes_on_ping_timeout(served, wait_for):
    url, path = served
    sid, _ = handshake(url, path)
    # the pending GETs get the ping, then the close packet, then 400: never a pong
    wait_for(lambda: request(url, path=path, query=polling(sid)).status == 400,
             "the silent session to be closed", timeout=5)


def test_websocket_ping_pong(served):
    url, path = served
    ws = RawWebSocket(url, path, websocket())
    open_packet(next_text(ws))
    for _ in range(3):
        assert next_text(ws) == "2"
        ws.send("3")
    ws.close()


def test_websocket_session_closes_on_ping_timeout(served):
    url, path = served
    ws = RawWebSocket(url, path, websocket())
    assert ws.wait_closed(timeout=5)


# ---------------------------------------------------------------- close (both suites)
def test_polling_client_close_ends_the_pending_get_with_a_noop(served):
    url, path = served
    for _ in range(5):   # sent at once as in the suites: the same outcome every time
        sid, _ = handshake(url, path)
        get, post = Connection(url), Connection(url)
        get.send(request_bytes(url, "GET", path, polling(sid)))
        post.send(request_bytes(url, "POST", path, polling(sid), "1"))
        answer = get.response()
        assert (answer.status, answer.text) == (200, "6")
        assert post.response().status == 200
        assert request(url, path=path, query=polling(sid)).status == 400


def test_client_close_after_the_get_is_pending(serve, wait_for):
    engine = suite_engine()
    url = serve(engine)
    sid, _ = handshake(url, "/engine.io/")
    get = gevent.spawn(request, url, "GET", "/engine.io/", polling(sid))
    wait_for(lambda: engine.clients[sid].polling_request_pending, "the GET to wait")
    assert request(url, "POST", "/engine.io/", polling(sid), "1").text == "ok"
    assert (get.get(timeout=5).status, get.get().text) == (200, "6")
    assert request(url, path="/engine.io/", query=polling(sid)).status == 400


def test_client_close_and_get_written_together_whichever_is_woken_first(serve_parked, wait_for):
    engine = suite_engine()
    url, server = serve_parked(engine)
    for _ in range(5):
        sid, _ = handshake(url, "/engine.io/")
        get = parked_connection(url, server, wait_for)
        post = parked_connection(url, server, wait_for)
        # the GET is written first: Node, reading in order, has it pending when "1" comes
        get.send(request_bytes(url, "GET", "/engine.io/", polling(sid)))
        post.send(request_bytes(url, "POST", "/engine.io/", polling(sid), "1"))
        assert post.response().text == "ok"
        answer = get.response()
        assert (answer.status, answer.text) == (200, "6")


def test_websocket_client_close_closes_the_connection(served):
    url, path = served
    ws = RawWebSocket(url, path, websocket())
    open_packet(next_text(ws))
    ws.send("1")
    assert ws.wait_closed()


# ---------------------------------------------------------------- upgrade (both suites)
def test_upgrade_from_polling_to_websocket(served):
    url, path = served
    sid, _ = handshake(url, path)
    ws = RawWebSocket(url, path, websocket(sid))
    ws.send("2probe")
    assert ws.recv() == "3probe"
    poll = request(url, path=path, query=polling(sid))
    assert (poll.status, poll.text) == (200, "6")   # the noop that ends polling
    ws.send("5")
    if path == "/engine.io/":
        ws.send("4hello")
        assert ws.recv() == "4hello"
    ws.close()


def test_polling_after_upgrade_is_refused_whatever_wakes_first(served):
    url, path = served
    for _ in range(10):
        sid, _ = handshake(url, path)
        ws = RawWebSocket(url, path, websocket(sid))
        ws.send("2probe")
        ws.send("5")
        # sent after "5" on the WebSocket: answered as after the upgrade, even when
        # the server happens to wake this request before the WebSocket's reader
        assert request(url, path=path, query=polling(sid)).status == 400
        assert ws.recv() == "3probe"
        if path == "/engine.io/":
            ws.send("4hello")
            assert ws.recv() == "4hello"
        ws.close()


def test_polling_written_after_the_upgrade_is_refused_whichever_is_woken_first(
        serve_parked, wait_for):
    engine = suite_engine()
    url, server = serve_parked(engine)
    for _ in range(5):
        sid, _ = handshake(url, "/engine.io/")
        ws = RawWebSocket(url, "/engine.io/", websocket(sid))
        wait_for(lambda: engine.clients[sid].upgrading, "the probe WebSocket to be read")
        get = parked_connection(url, server, wait_for)
        ws.send("2probe")
        ws.send("5")
        get.send(request_bytes(url, "GET", "/engine.io/", polling(sid)))
        assert get.response().status == 400
        ws.send("4hello")
        assert ws.recv() == "3probe"
        assert ws.recv() == "4hello"
        ws.close()


@pytest.mark.parametrize("upgraded", [True, False])
def test_second_websocket_of_a_session_is_upgraded_then_closed(served, upgraded):
    url, path = served
    sid, _ = handshake(url, path)
    ws = RawWebSocket(url, path, websocket(sid))
    ws.send("2probe")
    if upgraded:
        ws.send("5")
    second = RawWebSocket(url, path, websocket(sid))
    assert second.status == 101
    assert second.recv_frame() == (8, b"")   # Node's websocket.close(): no status code
    assert ws.recv() == "3probe"
    if not upgraded:
        ws.send("5")   # the first one's upgrade goes on
    if path == "/engine.io/":
        ws.send("4hello")
        assert ws.recv() == "4hello"
    ws.close()


# ---------------------------------------------------------------- Socket.IO (socket.io suite)
def sio_connection(url: str) -> RawWebSocket:
    """A WebSocket session connected to the main namespace, its "auth" event read."""
    ws = RawWebSocket(url, "/socket.io/", websocket())
    open_packet(next_text(ws))
    ws.send("40")
    assert ws.recv().startswith("40")
    assert ws.recv() == '42["auth",{}]'
    return ws


@pytest.mark.parametrize("connect, prefix, auth", [
    ("40", "40", "{}"),
    ('40{"token":"123"}', "40", '{"token":"123"}'),
    ("40/custom,", "40/custom,", "{}"),
    ('40/custom,{"token":"abc"}', "40/custom,", '{"token":"abc"}'),
])
def test_connect_to_a_namespace(serve, connect, prefix, auth):
    url = serve(suite_io())
    ws = RawWebSocket(url, "/socket.io/", websocket())
    open_packet(next_text(ws))
    ws.send(connect)
    reply = ws.recv()
    assert reply.startswith(prefix)
    assert set(json.loads(reply[len(prefix):])) == {"sid"}
    nsp = prefix[2:]
    assert ws.recv() == f'42{nsp}["auth",{auth}]'
    ws.close()


def test_connect_to_an_unknown_namespace_without_its_comma(serve):
    url = serve(suite_io())
    ws = RawWebSocket(url, "/socket.io/", websocket())
    open_packet(next_text(ws))
    ws.send("40/random")
    assert ws.recv() == '44/random,{"message":"Invalid namespace"}'
    ws.close()


@pytest.mark.parametrize("first", ["4abc", None])
def test_no_valid_connect_closes_the_connection(serve, first):
    url = serve(suite_io())
    ws = RawWebSocket(url, "/socket.io/", websocket())
    open_packet(next_text(ws))
    if first is not None:
        ws.send(first)   # not a CONNECT: parse error
    # else: nothing at all, until connect_timeout (1 s) closes it
    assert ws.wait_closed(timeout=5)


def test_disconnect_from_the_main_namespace(serve):
    url = serve(suite_io())
    ws = sio_connection(url)
    ws.send("41")
    assert next_text(ws) == "2"   # the session lives on: the next thing is a ping
    ws.close()


def test_connect_then_disconnect_a_namespace_without_its_comma(serve):
    url = serve(suite_io())
    ws = sio_connection(url)
    ws.send("40/custom")
    assert ws.recv().startswith("40/custom,")
    assert ws.recv() == '42/custom,["auth",{}]'
    ws.send("41/custom")
    ws.send('42["message","message to main namespace"]')
    assert ws.recv() == '42["message-back","message to main namespace"]'
    ws.close()


@pytest.mark.parametrize("sent, expected", [
    (['42["message",1,"2",{"3":[true]}]'], ['42["message-back",1,"2",{"3":[true]}]']),
    (['452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
      bytes([1, 2, 3]), bytes([4, 5, 6])],
     ['452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
      bytes([1, 2, 3]), bytes([4, 5, 6])]),
    (['42456["message-with-ack",1,"2",{"3":[false]}]'], ['43456[1,"2",{"3":[false]}]']),
    (['452-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
      bytes([1, 2, 3]), bytes([4, 5, 6])],
     ['462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
      bytes([1, 2, 3]), bytes([4, 5, 6])]),
])
def test_events_and_acks(serve, sent, expected):
    url = serve(suite_io())
    ws = sio_connection(url)
    for message in sent:
        ws.send(message)
    assert [m for m in (ws.recv() for _ in expected)] == expected
    ws.close()


@pytest.mark.parametrize("bad", ["4abc", "42{}", '42abc["message-with-ack",1,"2",{"3":[false]}]'])
def test_invalid_packet_closes_the_connection(serve, bad):
    url = serve(suite_io())
    ws = sio_connection(url)
    ws.send(bad)
    assert ws.wait_closed()


def test_a_request_that_asks_to_close_is_told_so(serve):
    # node-fetch (as the suites use it) sends "Connection: close" yet pools the
    # connection unless the response says it closes
    url = serve(suite_engine())
    r = request(url, path="/engine.io/", query=polling())   # rawclient asks to close
    assert r.headers["connection"] == "close"


def test_websocket_with_a_sid_when_upgrades_are_off_is_closed_after_101(serve):
    # roomcast's choice (docs/differences.md): Node would upgrade the session anyway
    engine = EngineServer(path="/engine.io", allow_upgrades=False)
    url = serve(engine)
    sid, info = handshake(url, "/engine.io/")
    assert info["upgrades"] == []
    ws = RawWebSocket(url, "/engine.io/", websocket(sid))
    assert ws.status == 101
    assert ws.recv_frame() == (8, b"")
    assert engine.clients[sid].transport == "polling"


def test_polling_after_the_ping_timeout_is_refused_even_if_the_timer_is_late(
        serve_parked, wait_for):
    import time

    engine = suite_engine()
    url, server = serve_parked(engine)
    for _ in range(3):
        sid, _ = handshake(url, "/engine.io/")
        assert request(url, path="/engine.io/", query=polling(sid)).text == "2"
        get = parked_connection(url, server, wait_for)
        # a busy loop: nothing runs past the pong deadline, then the timeout timer
        # and the request are ready together
        time.sleep(PING_TIMEOUT + 0.05)
        get.send(request_bytes(url, "GET", "/engine.io/", polling(sid)))
        assert get.response().status == 400

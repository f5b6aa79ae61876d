"""roomcast.compat: python-socketio's server options (CORS, Engine.IO settings) and
the clear errors for what it does not provide. The options' scenarios run against
roomcast.compat and against python-socketio itself (``both_sides``,
tests/compat_sides.py); the errors for what roomcast does not provide are its own."""
from __future__ import annotations

import json
import logging

import pytest
import requests
import socketio as real_socketio

import roomcast.compat
import roomcast.compat as socketio


def handshake(in_thread, url: str, origin: str | None = None, path: str = "/socket.io/",
              transport: str = "polling") -> requests.Response:
    headers = {"Origin": origin} if origin else {}
    return in_thread(requests.get, f"{url}{path}?EIO=4&transport={transport}",
                     headers=headers, timeout=5)


def open_packet(response: requests.Response) -> dict:
    assert response.status_code == 200, response.text
    assert response.text.startswith("0")
    return json.loads(response.text[1:])


ALLOWED, REFUSED = "allowed", "refused"


def outcome(response: requests.Response, origin: str) -> str:
    if response.status_code == 200:
        assert response.headers.get("Access-Control-Allow-Origin") == origin
        return ALLOWED
    # python-engineio's refusal, byte for byte
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "text/plain"
    assert response.json() == "Not an accepted origin."
    return REFUSED


@pytest.mark.parametrize("setting, verdicts", [
    (None, {"same": ALLOWED, "http://ok.example": REFUSED, "http://evil.example": REFUSED}),
    ("*", {"same": ALLOWED, "http://ok.example": ALLOWED, "http://evil.example": ALLOWED}),
    ("http://ok.example", {"same": REFUSED, "http://ok.example": ALLOWED,
                           "http://evil.example": REFUSED}),
    (["http://ok.example", "http://also.example"],
     {"same": REFUSED, "http://ok.example": ALLOWED, "http://evil.example": REFUSED}),
    # (python-engineio also calls these with None when there is no Origin header)
    (lambda origin: (origin or "").startswith("http://ok"),
     {"same": REFUSED, "http://ok.example": ALLOWED, "http://evil.example": REFUSED}),
    (lambda origin, environ: environ["HTTP_HOST"] in (origin or ""),
     {"same": ALLOWED, "http://ok.example": REFUSED, "http://evil.example": REFUSED}),
    (["http://ok.example", "*"],
     {"same": ALLOWED, "http://ok.example": ALLOWED, "http://evil.example": ALLOWED}),
], ids=["same-origin", "star", "one", "list", "callable", "callable-environ", "list-star"])
def test_cors_allowed_origins(serve, in_thread, setting, verdicts):
    url = serve(socketio.Server(cors_allowed_origins=setting))
    # the real python-engineio with the same setting, side by side
    real_url = serve(real_socketio.WSGIApp(real_socketio.Server(
        async_mode="gevent", cors_allowed_origins=setting)))
    for origin, verdict in verdicts.items():
        for server_url in (url, real_url):
            sent = server_url if origin == "same" else origin
            response = handshake(in_thread, server_url, sent)
            assert outcome(response, sent) == verdict, (server_url, sent)
            if verdict == ALLOWED:
                assert response.headers["Access-Control-Allow-Credentials"] == "true"
    # no Origin header at all (not a browser): always served
    assert handshake(in_thread, url).status_code == 200
    assert handshake(in_thread, real_url).status_code == 200


def test_refused_origin_on_every_request_like_python_engineio(both_sides, in_thread):
    """python-engineio checks the Origin of every request, not only handshakes:
    a POST or GET of an open session and a preflight from another origin get 400."""
    def scenario(sio_module, serve):
        url = serve(sio_module.Server(cors_allowed_origins=["http://ok.example"]))
        sid = open_packet(handshake(in_thread, url, "http://ok.example"))["sid"]
        q = f"{url}/socket.io/?EIO=4&transport=polling&sid={sid}"
        evil = {"Origin": "http://evil.example"}
        post = in_thread(requests.post, q, data="40", headers=evil, timeout=5)
        get = in_thread(requests.get, q, headers=evil, timeout=5)
        pre = in_thread(requests.options, q, headers=evil, timeout=5)
        return [outcome(response, "http://evil.example") for response in (post, get, pre)]

    assert both_sides(scenario) == [REFUSED] * 3


def test_cors_handling_off_and_without_credentials(both_sides, in_thread):
    def scenario(sio_module, serve):
        url = serve(sio_module.Server(cors_allowed_origins=[]))
        off = handshake(in_thread, url, "http://anyone.example")
        url = serve(sio_module.Server(cors_allowed_origins="*", cors_credentials=False))
        star = handshake(in_thread, url, "http://anyone.example")
        return (off.status_code, off.headers.get("Access-Control-Allow-Origin"),
                star.headers.get("Access-Control-Allow-Origin"),
                star.headers.get("Access-Control-Allow-Credentials"))

    assert both_sides(scenario) == (200, None, "http://anyone.example", None)


def test_websocket_from_a_refused_origin(serve, run_js):
    # roomcast.compat only: under gevent-websocket's handler, python-engineio's refusal
    # comes after the WebSocket upgrade and the JS client is left waiting
    url = serve(roomcast.compat.Server(cors_allowed_origins=["http://ok.example"]))
    assert run_js("""
        const attempt = (origin) => new Promise((resolve) => {
            const s = io(URL, {transports: ["websocket"], extraHeaders: {origin},
                               forceNew: true, reconnection: false});
            s.on("connect", () => resolve("connected"));
            s.on("connect_error", (err) => resolve("refused"));
        });
        done([await attempt("http://ok.example"), await attempt("http://evil.example")]);
    """, url) == ["connected", "refused"]


def test_engineio_options(both_sides, in_thread):
    def scenario(sio_module, serve):
        sio = sio_module.Server(ping_interval=(0.5, 0.25), ping_timeout=2,
                                max_http_buffer_size=1234, allow_upgrades=False,
                                cookie="sticky", monitor_clients=True)
        response = handshake(in_thread, serve(sio))
        info = open_packet(response)
        del info["sid"]
        websocket_only = handshake(in_thread, serve(sio_module.Server(transports="websocket")))
        with pytest.raises(ValueError, match="No valid transports"):
            sio_module.Server(transports=["carrier pigeon"])
        return (info, response.headers["Set-Cookie"].split("=")[0],
                websocket_only.status_code, websocket_only.json())

    results = both_sides(scenario, same=False)
    assert results["roomcast.compat"] == (
        {"upgrades": [], "pingInterval": 500, "pingTimeout": 2250, "maxPayload": 1234},
        "sticky", 400, {"code": 0, "message": "Transport unknown"})
    # python-engineio 4.x tells the client int(interval) * 1000 ms (0 for 0.5 s) and keeps
    # the grace to itself, and names a refused transport its own way; roomcast sends the
    # interval in ms, the grace inside the ping timeout (documented) and Node's message
    assert results["python-socketio"] == (
        {"upgrades": [], "pingInterval": 0, "pingTimeout": 2000, "maxPayload": 1234},
        "sticky", 400, "Invalid transport")


def test_unsupported_choices_say_so(caplog):
    assert socketio.Server(async_mode="gevent").async_mode == "gevent"
    with pytest.raises(ValueError, match="gevent only"):
        socketio.Server(async_mode="eventlet")
    with pytest.raises(ValueError, match="serializer"):
        socketio.Server(serializer="pickle")

    class QueueManager:
        pass

    with pytest.raises(ValueError, match="in-memory, Redis and Kombu client managers.*QueueManager"):
        socketio.Server(client_manager=QueueManager())
    # the in-memory managers, ours and python-socketio's, are fine
    assert isinstance(socketio.Server(client_manager=socketio.Manager()).manager, socketio.Manager)
    assert isinstance(socketio.Server(client_manager=real_socketio.Manager()).manager,
                      socketio.Manager)

    with caplog.at_level(logging.WARNING, logger="roomcast.compat"):
        socketio.Server(manage_session=False)
    assert "manage_session" in caplog.text

    with pytest.raises(AttributeError, match="KafkaManager.*not supported"):
        socketio.KafkaManager
    with pytest.raises(AttributeError, match="Client.*python-socketio package"):
        socketio.Client
    with pytest.raises(ValueError, match="auth must be specified"):
        socketio.Server().instrument()


def test_exception_names():
    exc = socketio.exceptions
    assert issubclass(exc.ConnectionRefusedError, exc.ConnectionError)
    assert issubclass(exc.ConnectionError, exc.SocketIOError)
    for name in ("TimeoutError", "BadNamespaceError", "DisconnectedError"):
        assert issubclass(getattr(exc, name), exc.SocketIOError)
    assert exc.ConnectionRefusedError("a", "b", "c").error_args == {"message": "a",
                                                                    "data": ("b", "c")}
    assert socketio.Server.reason.CLIENT_DISCONNECT == real_socketio.Server.reason.CLIENT_DISCONNECT


def test_engineio_logger_receives_the_engine_records():
    engine_log = logging.getLogger("roomcast.engine")
    saved_level, saved_handlers = engine_log.level, list(engine_log.handlers)
    app_log = logging.getLogger("test_compat.app_engine_log")
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    app_log.addHandler(Keep())
    app_log.setLevel(logging.INFO)
    try:
        socketio.Server(engineio_logger=app_log)
        socketio.Server(engineio_logger=app_log)    # a second server adds no second copy
        engine_log.error("session %s: %s", "abc", "transport error")
        assert records == ["session abc: transport error"]
    finally:
        engine_log.handlers[:] = saved_handlers
        engine_log.setLevel(saved_level)


@pytest.mark.parametrize("kwargs, encoded", [({}, "gzip"), ({"http_compression": False}, None),
                                             ({"compression_threshold": 100_000}, None)])
def test_polling_compression_options(both_sides, in_thread, wait_for, kwargs, encoded):
    def scenario(sio_module, serve):
        sio = sio_module.Server(**kwargs)
        url = serve(sio)
        sid = open_packet(handshake(in_thread, url))["sid"]
        session = f"{url}/socket.io/?EIO=4&transport=polling&sid={sid}"
        # python-engineio answers a POST "OK", Node and roomcast "ok"
        posted = in_thread(requests.post, session, data="40", timeout=5).text.lower()
        connected = in_thread(requests.get, session, timeout=5).text[:2]
        wait_for(lambda: list(sio.manager.get_participants("/", None)), "the connection")
        sio.emit("big", "x" * 5000)
        response = in_thread(requests.get, session, headers={"Accept-Encoding": "gzip"},
                             timeout=5)
        return posted, connected, response.text, response.headers.get("Content-Encoding")

    assert both_sides(scenario) == ("ok", "40", '42["big","' + "x" * 5000 + '"]', encoded)

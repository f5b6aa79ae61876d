"""The test fixtures themselves: serving in-process, node snippets, Redis, the core chooser."""
import socket

import json

import gevent
import pytest
import requests
from geventwebsocket import WebSocketError

import roomcast
from roomcast import _speedups


def hello_app(environ, start_response):
    body = f"hello {environ['PATH_INFO']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def echo_ws_app(environ, start_response):
    ws = environ.get("wsgi.websocket")
    if ws is None:
        start_response("400 Bad Request", [("Content-Type", "text/plain")])
        return [b"websocket only"]
    try:
        while (message := ws.receive()) is not None:
            ws.send(message, binary=isinstance(message, (bytes, bytearray)))
    except WebSocketError:
        pass
    return []


def test_impl_selects_the_core(impl):
    assert _speedups.USING_EXTENSIONS is (impl == "c")


def test_served_wsgi_app_answers_a_blocking_client(serve, in_thread):
    url = serve(hello_app)
    response = in_thread(requests.get, url + "/there", timeout=5)
    assert response.status_code == 200
    assert response.text == "hello /there"


def test_served_wsgi_app_answers_node(serve, run_js):
    url = serve(hello_app)
    text = run_js("const r = await fetch(URL + '/from-node'); done(await r.text());", url)
    assert text == "hello /from-node"


def test_served_app_speaks_websocket(serve, run_js):
    url = serve(echo_ws_app)
    echoed = run_js("""
        const WebSocket = require("ws");
        const ws = new WebSocket(URL.replace("http", "ws") + "/echo");
        await once(ws, "open");
        ws.send("text é");
        const [first] = await once(ws, "message");
        ws.send(Buffer.from([0, 1, 255]));
        const [second] = await once(ws, "message");
        ws.close();
        done([first.toString(), second]);
    """, url)
    assert echoed == ["text é", b"\x00\x01\xff"]


def test_serve_wraps_a_roomcast_server(serve, run_js):
    io = roomcast.Server()

    @io.on("connection")
    def on_connection(socket):
        socket.on("echo", lambda value, ack: ack(value))

    url = serve(io)
    assert run_js("""
        const socket = io(URL);
        done(await socket.emitWithAck("echo", {hello: "world"}));
    """, url) == {"hello": "world"}


def test_serve_wraps_an_engine_server(serve, eio_url, in_thread):
    url = serve(roomcast.EngineServer(path="/engine.io"))
    response = in_thread(requests.get, eio_url(url, path="/engine.io/"), timeout=5)
    assert response.status_code == 200
    assert response.text[0] == "0"  # the Engine.IO open packet
    assert set(json.loads(response.text[1:])) >= {"sid", "pingInterval", "pingTimeout"}


def test_run_js_returns_json_and_bytes(run_js):
    value = run_js("return {n: 1.5, s: 'ü', list: [true, null, undefined], "
                   "buf: new Uint8Array([7, 8])};", "http://127.0.0.1:9")
    assert value == {"n": 1.5, "s": "ü", "list": [True, None, None], "buf": b"\x07\x08"}


def test_run_js_fail_raises_with_the_message(run_js):
    with pytest.raises(AssertionError, match="node failed: no luck"):
        run_js("log('a hint on stderr'); fail('no luck');", "http://127.0.0.1:9")


def test_run_js_exception_raises_with_node_stderr(run_js):
    with pytest.raises(AssertionError) as info:
        run_js("log('before the error'); throw new Error('boom');", "http://127.0.0.1:9")
    assert "Error: boom" in str(info.value)
    assert "before the error" in str(info.value)


def test_run_js_timeout_raises(run_js):
    with pytest.raises(AssertionError, match="timed out after 0.5s"):
        run_js("await sleep(60000);", "http://127.0.0.1:9", timeout=0.5)


def test_socket_io_client_does_not_keep_node_alive(run_js):
    # The client keeps reconnecting to a closed port; done() must still end node.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    value = run_js("""
        const socket = io(URL, {reconnectionDelay: 10});
        await once(socket.io, "reconnect_attempt");
        done("retrying");
    """, url, timeout=5)
    assert value == "retrying"


def test_start_js_runs_alongside_the_test(serve, start_js):
    url = serve(hello_app)
    handles = [start_js(f"done((await (await fetch(URL + '/{n}')).text()));", url)
               for n in range(3)]
    gevent.sleep(0)  # the test may keep working while node runs
    assert [h.result() for h in handles] == ["hello /0", "hello /1", "hello /2"]


def test_start_js_kill(start_js):
    handle = start_js("await sleep(60000);", "http://127.0.0.1:9")
    handle.kill()
    with pytest.raises(AssertionError, match="killed"):
        handle.result()


def test_eio_url(eio_url):
    assert (eio_url("http://h:1", sid="abc") ==
            "http://h:1/socket.io/?EIO=4&transport=polling&sid=abc")
    assert (eio_url("http://h:1", path="/engine.io/", transport="websocket") ==
            "http://h:1/engine.io/?EIO=4&transport=websocket")


def test_redis_url_answers(redis_url, in_thread):
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        assert in_thread(client.ping) is True
    finally:
        client.close()

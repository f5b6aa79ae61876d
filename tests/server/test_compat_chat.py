"""A python-socketio chat app, written as python-socketio's docs and examples show,
with only ``import socketio`` changed, driven by the JS client and by
python-socketio's own client; each scenario runs against roomcast.compat and against
python-socketio itself (``both_sides``, tests/compat_sides.py), with the same results."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import roomcast.compat


INDEX = "<!doctype html><title>chat</title><p>hello from the chat</p>"


def make_chat_app(socketio, tmp_path: Path, log: list):
    """The app, as it would sit in a python-socketio project's app.py."""
    (tmp_path / "index.html").write_text(INDEX)

    sio = socketio.Server(async_mode="gevent", cors_allowed_origins="*")

    def other_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"the rest of the site"]

    app = socketio.WSGIApp(sio, other_app, static_files={
        "/": {"content_type": "text/html", "filename": str(tmp_path / "index.html")},
    })

    @sio.event
    def connect(sid, environ, auth):
        name = (auth or {}).get("name", "anonymous")
        with sio.session(sid) as session:
            session["name"] = name
        log.append(("connect", name))
        sio.emit("my_response", {"data": "Connected", "name": name}, room=sid)

    @sio.event
    def my_event(sid, message):
        sio.emit("my_response", {"data": message["data"]}, room=sid)

    @sio.event
    def my_broadcast_event(sid, message):
        name = sio.get_session(sid)["name"]
        sio.emit("my_response", {"data": message["data"], "from": name})

    @sio.event
    def join(sid, message):
        sio.enter_room(sid, message["room"])
        sio.emit("my_response", {"data": "Entered room: " + message["room"]}, room=sid)
        return sorted(r for r in sio.rooms(sid) if r != sid)

    @sio.event
    def leave(sid, message):
        sio.leave_room(sid, message["room"])
        sio.emit("my_response", {"data": "Left room: " + message["room"]}, room=sid)

    @sio.event
    def close_room(sid, message):
        sio.emit("my_response", {"data": "Room " + message["room"] + " is closing."},
                 room=message["room"])
        sio.close_room(message["room"])

    @sio.event
    def my_room_event(sid, message):
        name = sio.get_session(sid)["name"]
        sio.emit("my_response", {"data": message["data"], "from": name},
                 room=message["room"], skip_sid=sid)

    @sio.event
    def disconnect_request(sid):
        sio.disconnect(sid)

    @sio.event
    def disconnect(sid, reason):
        log.append(("disconnect", reason))

    return sio, app


def test_static_files_and_other_app(both_sides, run_js, tmp_path):
    def scenario(socketio, serve):
        sio, app = make_chat_app(socketio, tmp_path, [])
        return run_js("""
            const index = await fetch(URL + "/");
            const other = await fetch(URL + "/about");
            done([index.headers.get("content-type"), await index.text(), await other.text()]);
        """, serve(app))

    assert both_sides(scenario) == ["text/html", INDEX, "the rest of the site"]


CHAT = """
        const inbox = {alice: [], bob: []};
        const alice = io(URL, {auth: {name: "alice"}});
        const bob = io(URL, {auth: {name: "bob"}, transports: ["websocket"]});
        alice.on("my_response", (m) => inbox.alice.push(m));
        bob.on("my_response", (m) => inbox.bob.push(m));
        await Promise.all([once(alice, "connect"), once(bob, "connect")]);
        const has = (who, n) => until(() => inbox[who].length >= n, `${n} messages for ${who}`);

        alice.emit("my_event", {data: "just for me"});
        const rooms = await alice.emitWithAck("join", {room: "r1"});
        await bob.emitWithAck("join", {room: "r1"});
        await has("alice", 3); await has("bob", 2);

        alice.emit("my_room_event", {room: "r1", data: "hi room"});     // bob only
        await has("bob", 3);
        bob.emit("my_broadcast_event", {data: "hi all"});               // both
        await has("alice", 4); await has("bob", 4);

        bob.emit("close_room", {room: "r1"});                           // both, then closed
        await has("alice", 5); await has("bob", 5);
        alice.emit("my_room_event", {room: "r1", data: "anyone?"});     // nobody
        bob.emit("my_event", {data: "still here"});
        await has("bob", 6);

        const gone = once(alice, "disconnect");
        alice.emit("disconnect_request");
        const [reason] = await gone;
        done({inbox, rooms, reason});
"""


def test_chat_with_the_js_client(both_sides, run_js, tmp_path, wait_for):
    def scenario(socketio, serve):
        log: list = []
        sio, app = make_chat_app(socketio, tmp_path, log)
        result = run_js(CHAT, serve(app))
        wait_for(lambda: ("disconnect", "server disconnect") in log, "the disconnect handler")
        # (bob's own disconnect, when node exits, may come before or after this)
        return result, sorted(e for e in log if e != ("disconnect", "client disconnect"))

    result, log = both_sides(scenario)
    assert log == [("connect", "alice"), ("connect", "bob"), ("disconnect", "server disconnect")]
    assert result["rooms"] == ["r1"]
    assert result["reason"] == "io server disconnect"
    assert result["inbox"]["alice"] == [
        {"data": "Connected", "name": "alice"},
        {"data": "just for me"},
        {"data": "Entered room: r1"},
        {"data": "hi all", "from": "bob"},
        {"data": "Room r1 is closing."},
    ]
    assert result["inbox"]["bob"] == [
        {"data": "Connected", "name": "bob"},
        {"data": "Entered room: r1"},
        {"data": "hi room", "from": "alice"},
        {"data": "hi all", "from": "bob"},
        {"data": "Room r1 is closing."},
        {"data": "still here"},
    ]


def test_chat_with_the_python_socketio_client(both_sides, start_psio, tmp_path, wait_for):
    client = textwrap.dedent("""
        sio = socketio.Client()
        inbox = Inbox()
        gone = threading.Event()
        sio.on("my_response", lambda m: inbox.put(m))
        sio.on("disconnect", lambda *reason: gone.set())
        sio.connect(URL, auth={"name": NAME}, transports=TRANSPORTS)
        inbox.wait(1)
        rooms = sio.call("join", {"room": "r1"}, timeout=5)
        inbox.wait(2)
        if NAME == "carol":
            inbox.wait(3)                        # dave's room message
            sio.emit("my_broadcast_event", {"data": "hi all from " + NAME})
            inbox.wait(4)
            time.sleep(0.2)                      # proving a negative: nothing more comes
        else:                                    # carol is in r1 already
            sio.emit("my_room_event", {"room": "r1", "data": "hello carol"})
            inbox.wait(3)
            sio.emit("disconnect_request")
            gone.wait(5)
        done({"rooms": rooms, "inbox": inbox.items, "connected": sio.connected})
    """)

    def scenario(socketio, serve):
        log: list = []
        sio, app = make_chat_app(socketio, tmp_path, log)
        url = serve(app)
        carol = start_psio('NAME = "carol"; TRANSPORTS = ["polling", "websocket"]\n' + client, url)

        def carol_in_r1():
            if carol.proc.poll() is not None:
                carol.result()             # raises with the client's output
            return list(sio.manager.get_participants("/", "r1"))

        wait_for(carol_in_r1, "carol to join r1")
        dave = start_psio('NAME = "dave"; TRANSPORTS = ["websocket"]\n' + client, url)
        results = carol.result(), dave.result()
        wait_for(lambda: ("disconnect", "server disconnect") in log, "the disconnect handler")
        return results

    carol_result, dave_result = both_sides(scenario)
    assert carol_result == {"rooms": ["r1"], "connected": True, "inbox": [
        {"data": "Connected", "name": "carol"},
        {"data": "Entered room: r1"},
        {"data": "hello carol", "from": "dave"},
        {"data": "hi all from carol", "from": "carol"},
    ]}
    assert dave_result == {"rooms": ["r1"], "connected": False, "inbox": [
        {"data": "Connected", "name": "dave"},
        {"data": "Entered room: r1"},
        {"data": "hi all from carol", "from": "carol"},
    ]}


@pytest.mark.parametrize("wrapper", ["WSGIApp", "Middleware"])
def test_custom_socketio_path(both_sides, run_js, wrapper):
    def scenario(socketio, serve):
        sio = socketio.Server()

        @sio.event
        def hello(sid, name):
            return "hello " + name

        app = getattr(socketio, wrapper)(sio, socketio_path="/chat/io/")
        return run_js("""
            const socket = io(URL, {path: "/chat/io/"});
            done(await socket.emitWithAck("hello", "path"));
        """, serve(app))

    assert both_sides(scenario) == "hello path"


def test_flask_app_as_python_socketio_documents_it(both_sides, run_js):
    from flask import Flask, session

    def scenario(socketio, serve):
        app = Flask(__name__)
        app.secret_key = "test"
        sio = socketio.Server(async_mode="gevent")
        app.wsgi_app = socketio.WSGIApp(sio, app.wsgi_app)

        @app.route("/")
        def index():
            session["visits"] = session.get("visits", 0) + 1
            return "flask page"

        @sio.event
        def connect(sid, environ):
            sio.save_session(sid, {"cookie": "session=" in environ.get("HTTP_COOKIE", "")})

        @sio.event
        def hello(sid):
            return "hello from socketio", sio.get_session(sid)["cookie"]

        return run_js("""
            const page = await fetch(URL + "/");
            const cookie = page.headers.get("set-cookie").split(";")[0];
            const socket = io(URL, {extraHeaders: {cookie}});
            const answer = await new Promise((r) => socket.emit("hello", (...a) => r(a)));
            done([await page.text(), answer]);
        """, serve(app))

    assert both_sides(scenario) == ["flask page", ["hello from socketio", True]]


def test_served_with_pywsgi_and_gevent_websocket_as_documented(run_js, tmp_path):
    # python-socketio's gevent deployment section: pywsgi + gevent-websocket's own handler
    from gevent import pywsgi
    from geventwebsocket.handler import WebSocketHandler

    sio, app = make_chat_app(roomcast.compat, tmp_path, [])
    server = pywsgi.WSGIServer(("127.0.0.1", 0), app, handler_class=WebSocketHandler, log=None)
    server.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        assert run_js("""
            const out = [];
            for (const transports of [["websocket"], ["polling", "websocket"]]) {
                const s = io(URL, {transports, forceNew: true, auth: {name: "doc"}});
                const [first] = await once(s, "my_response");
                s.emit("my_event", {data: transports.join("+")});
                const [second] = await once(s, "my_response");
                out.push([first.data, second.data]);
            }
            done(out);
        """, url) == [["Connected", "websocket"], ["Connected", "polling+websocket"]]
    finally:
        sio.shutdown()
        server.stop(timeout=1)

"""roomcast.flask runs an unchanged Flask-SocketIO app (tests/apps/flask_chat.py):

- the same socket.io-client script against the app served by ``socketio.run()``
  on real Flask-SocketIO and on roomcast.flask gives the same results;
- the app's ``socketio.test_client()`` tests pass on both.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import gevent
import gevent.subprocess
import pytest

from apps.flask_chat import make_app

BOTH = ["flask_socketio", "roomcast.flask"]
APP = Path(__file__).resolve().parent.parent / "apps" / "flask_chat.py"

CLIENT = """
    const inbox = {};
    const connect = (name, path, opts = {}) => {
        inbox[name] = [];
        const s = io(URL + path, {forceNew: true, transports: ["websocket"], ...opts});
        s.on("reply", (r, ack) => { inbox[name].push([r.text, r.n]); if (ack) ack(); });
        s.on("message", (m) => inbox[name].push(["message", m]));
        s.on("json", (m) => inbox[name].push(["json", m]));
        s.on("disconnect", (reason) => inbox[name].push(["disconnect", reason]));
        return s;
    };
    const reach = (name, n) => until(() => inbox[name].length >= n, `${name}'s event ${n}`);
    const login = await fetch(URL + "/login/alice");
    const cookie = login.headers.get("set-cookie").split(";")[0];

    const a = connect("a", "/", {extraHeaders: {cookie}});
    await reach("a", 1);
    const b = connect("b", "/");
    await reach("b", 1);
    const refused = io(URL, {forceNew: true, auth: {token: "bad"}});
    const [err] = await once(refused, "connect_error");
    const results = {refused: [err.message, err.data]};

    a.emit("say", {text: "hi"}); await reach("a", 2);
    a.emit("shout", {text: "all"}); await reach("a", 3); await reach("b", 2);
    b.emit("shout_others", {text: "others"}); await reach("a", 4);
    a.emit("join", {room: "r1"}); await reach("a", 5);
    b.emit("join", {room: "r1"}); await reach("b", 3);
    a.emit("to_room", {room: "r1", text: "room msg"}); await reach("a", 6); await reach("b", 4);
    b.emit("whisper", {room: "r1", text: "psst"}); await reach("a", 7);
    results.ask = await a.emitWithAck("ask", "q");
    results.binary = await a.emitWithAck("binary", Buffer.from([1, 2, 3]));
    await reach("a", 8);
    a.emit("boom", "x"); await reach("a", 9);
    a.emit("whatever", 1); await reach("a", 10);
    a.send("hello"); await reach("a", 11);
    a.emit("json", {k: 1}); await reach("a", 12);
    a.emit("tick", "t"); await reach("a", 13);
    results.announce = await (await fetch(URL + "/announce/news")).text();
    await reach("a", 14); await reach("b", 5);
    const chat = connect("chat", "/chat", {extraHeaders: {cookie}});
    await reach("chat", 1);
    results.whoami = await chat.emitWithAck("whoami");
    chat.emit("post", "p"); await reach("chat", 2);
    a.emit("close", {room: "r1"}); await reach("a", 15); await reach("b", 6);
    a.emit("to_room", {room: "r1", text: "after close"});
    a.emit("say", {text: "still here"}); await reach("a", 16);
    a.emit("leave", {room: "nowhere"}); await reach("a", 17);
    a.emit("bye"); await reach("a", 19);
    b.disconnect();
    results.inbox = inbox;
    done(results);
"""

EXPECTED = {
    "refused": ["bad token", None],
    "ask": "answer to q",
    "binary": b"\x03\x02\x01",
    "announce": "sent",
    "whoami": "alice",
    "inbox": {
        "a": [["welcome alice", 0], ["hi", 1], ["all", 2], ["others", 1], ["rooms: r1", 3],
              ["room msg", 4], ["message", "psst"], ["bytes", 3], ["error: boom x in boom", 0],
              ["unhandled whatever", 5], ["message", "echo hello"], ["json", {"echo": {"k": 1}}],
              ["tick t", 0], ["announced news", 0], ["closing r1", 6], ["still here", 8],
              ["rooms: ", 9], ["bye", 10], ["disconnect", "io server disconnect"]],
        "b": [["welcome stranger", 0], ["all", 2], ["rooms: r1", 2], ["room msg", 4],
              ["announced news", 0], ["closing r1", 6], ["disconnect", "io client disconnect"]],
        "chat": [["chat welcome", 0], ["/chat p", 1]],
    },
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def flask_server(impl, wait_for):
    """flask_server(module) -> URL of tests/apps/flask_chat.py served by socketio.run()."""
    procs = []

    def start(module: str) -> str:
        port = _free_port()
        env = dict(os.environ, ROOMCAST_NO_EXTENSIONS="1" if impl == "py" else "0")
        proc = gevent.subprocess.Popen([sys.executable, str(APP), module, str(port)],
                                       stdout=subprocess.PIPE, env=env)
        procs.append(proc)
        with gevent.Timeout(20, AssertionError(f"{module}: the app did not start")):
            assert proc.stdout.readline().strip() == b"serving"

        def listening() -> bool:   # socketio.run() binds right after the line above
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_for(listening, f"{module} to listen on {port}")
        return f"http://127.0.0.1:{port}"

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_same_client_script_same_results(flask_server, run_js):
    results = {module: run_js(CLIENT, flask_server(module), timeout=30) for module in BOTH}
    assert results["roomcast.flask"] == results["flask_socketio"]
    assert results["roomcast.flask"] == EXPECTED


# -- the app's test_client tests, run on both -----------------------------------------

@pytest.fixture(params=BOTH)
def chat(request):
    return make_app(request.param)


def test_connect_and_events(chat):
    app, socketio = chat
    client = socketio.test_client(app)
    assert client.is_connected()
    assert client.get_received() == [
        {"name": "reply", "args": [{"text": "welcome stranger", "n": 0}], "namespace": "/"}]
    client.emit("say", {"text": "hi"})
    client.send("hello")
    client.emit("json", {"k": 1})
    client.emit("whatever", 1)
    assert client.get_received() == [
        {"name": "reply", "args": [{"text": "hi", "n": 1}], "namespace": "/"},
        {"name": "message", "args": "echo hello", "namespace": "/"},
        {"name": "json", "args": {"echo": {"k": 1}}, "namespace": "/"},
        {"name": "reply", "args": [{"text": "unhandled whatever", "n": 2}], "namespace": "/"},
    ]
    assert client.get_received() == []


def test_acks_binary_and_errors(chat):
    app, socketio = chat
    client = socketio.test_client(app)
    client.get_received()
    assert client.emit("ask", "q", callback=True) == "answer to q"
    assert client.emit("binary", b"abc", callback=True) == b"cba"
    assert client.emit("boom", "x") is None
    assert [m["args"][0]["text"] for m in client.get_received()] == [
        "bytes", "error: boom x in boom"]


def test_rooms_and_broadcasts_between_clients(chat):
    app, socketio = chat
    one, two = socketio.test_client(app), socketio.test_client(app)
    one.emit("join", {"room": "r"})
    two.emit("join", {"room": "r"})
    one.get_received(), two.get_received()
    one.emit("to_room", {"room": "r", "text": "x"})
    two.emit("whisper", {"room": "r", "text": "psst"})
    one.emit("shout_others", {"text": "others"})
    assert one.get_received() == [
        {"name": "reply", "args": [{"text": "x", "n": 2}], "namespace": "/"},
        {"name": "message", "args": "psst", "namespace": "/"}]
    assert two.get_received() == [
        {"name": "reply", "args": [{"text": "x", "n": 2}], "namespace": "/"},
        {"name": "reply", "args": [{"text": "others", "n": 3}], "namespace": "/"}]
    one.emit("close", {"room": "r"})
    one.emit("to_room", {"room": "r", "text": "nobody"})
    assert [m["args"][0]["text"] for m in two.get_received()] == ["closing r"]
    socketio.emit("reply", {"text": "from outside", "n": 0})
    assert one.get_received()[-1]["args"][0]["text"] == "from outside"


def test_namespaces_sessions_and_disconnect(chat):
    app, socketio = chat
    http = app.test_client()
    http.get("/login/bob")
    client = socketio.test_client(app, flask_test_client=http)
    assert client.get_received()[0]["args"][0]["text"] == "welcome bob"
    client.connect("/chat")
    assert client.is_connected("/chat")
    assert client.get_received("/chat") == [
        {"name": "reply", "args": [{"text": "chat welcome", "n": 0}], "namespace": "/chat"}]
    assert client.emit("whoami", namespace="/chat", callback=True) == "bob"
    client.disconnect("/chat")
    assert not client.is_connected("/chat") and client.is_connected()
    client.disconnect()
    assert not client.is_connected()
    assert app.ticks == ["gone"]
    refused = socketio.test_client(app, auth={"token": "bad"})
    assert not refused.is_connected()
    with pytest.raises(RuntimeError, match="not connected"):
        refused.emit("say", {"text": "x"})


def test_query_string_headers_and_request(chat):
    app, socketio = chat
    seen = {}

    @socketio.on("inspect")
    def inspect():
        from flask import request
        seen.update(q=request.args.get("q"), h=request.headers.get("X-Test"),
                    ns=request.namespace, ev=request.event["message"],
                    sid=request.sid is not None)

    client = socketio.test_client(app, query_string="q=1", headers={"X-Test": "yes"})
    client.emit("inspect")
    assert seen == {"q": "1", "h": "yes", "ns": "/", "ev": "inspect", "sid": True}


def test_message_queue_call_and_write_only_emitter(serve, run_js, start_js, redis_url, wait_for):
    import uuid

    import roomcast.flask as fsio

    channel = f"roomcast-test-{uuid.uuid4().hex[:12]}"
    app, socketio = make_app("roomcast.flask", message_queue=redis_url, channel=channel)
    assert socketio.server.manager.channel == channel
    assert socketio.server.manager.wait_subscribed(10)
    with pytest.raises(RuntimeError, match="message queue"):
        socketio.test_client(app)
    sids = []

    @socketio.on("hello")
    def hello():
        from flask import request
        sids.append(request.sid)

    url = serve(app)
    run = start_js("""
        const s = io(URL, {transports: ["websocket"]});
        const got = [];
        s.on("question", (q, ack) => ack("answer to " + q));
        s.on("reply", (r) => got.push(r.text));
        await once(s, "connect");
        s.emit("hello");
        await until(() => got.includes("from a worker"), "the worker's message");
        done(got);
    """, url)
    wait_for(lambda: sids, "the client's hello")
    assert socketio.call("question", "x", to=sids[0], timeout=5) == "answer to x"
    worker = fsio.SocketIO(message_queue=redis_url, channel=channel)   # write-only, no app
    assert worker.server.manager.write_only
    worker.emit("reply", {"text": "from a worker", "n": 0})
    assert run.result() == ["welcome stranger", "from a worker"]
    worker.server.shutdown()
    socketio.server.shutdown()


@pytest.mark.parametrize("module", BOTH)
def test_unmanaged_session_is_flasks_own(module):
    # manage_session=False: handlers see the Flask session of the handshake request;
    # with cookie sessions, what they change is not kept between events
    app, socketio = make_app(module, manage_session=False)
    http = app.test_client()
    http.get("/login/carol")
    client = socketio.test_client(app, flask_test_client=http)
    client.emit("say", {"text": "one"})
    client.emit("say", {"text": "two"})
    assert [m["args"][0] for m in client.get_received()] == [
        {"text": "welcome carol", "n": 0}, {"text": "one", "n": 1}, {"text": "two", "n": 1}]


@pytest.mark.parametrize("module", BOTH)
def test_app_factory_on_event_catch_alls_and_default_error_handler(module):
    import importlib

    from flask import Flask, request

    fsio = importlib.import_module(module)
    socketio = fsio.SocketIO()           # the app factory pattern: init_app later
    seen = []

    def on_ping(data):
        fsio.emit("pong", data)

    socketio.on_event("ping", on_ping)

    @socketio.on("mystery", namespace="*")     # any namespace
    def mystery(data):
        seen.append((request.namespace, request.event["message"], data))

    @socketio.on("crash", namespace="/other")
    def crash():
        raise ValueError("crashed")

    @socketio.on_error_default
    def default_error(exc):
        fsio.emit("error_seen", f"{type(exc).__name__}: {exc}")

    app = Flask(__name__)
    socketio.init_app(app)
    assert app.extensions["socketio"] is socketio
    client = socketio.test_client(app)
    client.connect("/other")
    client.emit("ping", 1)
    client.emit("mystery", 2, namespace="/other")
    client.emit("crash", namespace="/other")
    assert client.get_received() == [{"name": "pong", "args": [1], "namespace": "/"}]
    assert client.get_received("/other") == [
        {"name": "error_seen", "args": ["ValueError: crashed"], "namespace": "/other"}]
    assert seen == [("/other", "mystery", 2)]

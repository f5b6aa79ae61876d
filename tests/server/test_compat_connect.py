"""roomcast.compat: connecting and disconnecting the python-socketio way
(connect handler forms and refusals, always_connect, namespaces, disconnect reasons)."""
from __future__ import annotations

import builtins

import gevent
import gevent.event
import pytest

import roomcast.compat as socketio



def test_connect_refusals_reach_the_js_client(serve, run_js):
    sio = socketio.Server()
    seen = []

    @sio.event
    def connect(sid, environ, auth):
        seen.append(auth)
        how = auth["how"]
        if how == "false":
            return False
        if how == "no args":
            raise socketio.exceptions.ConnectionRefusedError()
        if how == "message":
            raise socketio.exceptions.ConnectionRefusedError("nope")
        if how == "message and data":
            raise socketio.exceptions.ConnectionRefusedError("nope", {"code": 7})
        if how == "more args":
            raise socketio.exceptions.ConnectionRefusedError("a", "b", 3)
        if how == "builtin":
            raise builtins.ConnectionRefusedError("ignored")
        if how == "bug":
            raise KeyError("internal detail")   # logged; the client learns nothing of it
        return None   # anything but False accepts

    url = serve(sio)
    result = run_js("""
        const out = {};
        for (const how of ["false", "no args", "message", "message and data", "more args",
                           "builtin", "bug", "ok"]) {
            const socket = io(URL, {auth: {how}, forceNew: true, reconnection: false});
            out[how] = await new Promise((resolve) => {
                socket.on("connect", () => resolve("connected"));
                socket.on("connect_error", (err) => resolve([err.message, err.data ?? null]));
            });
            socket.disconnect();
        }
        done(out);
    """, url)
    assert result == {
        "false": ["Connection rejected by server", None],
        "no args": ["Connection rejected by server", None],
        "message": ["nope", None],
        "message and data": ["nope", {"code": 7}],
        "more args": ["a", ["b", 3]],
        "builtin": ["Connection refused by server", None],
        "bug": ["Connection rejected by server", None],
        "ok": "connected",
    }
    assert len(seen) == 8


def test_refusal_reaches_the_python_client(serve, run_psio):
    sio = socketio.Server()

    @sio.event
    def connect(sid, environ, auth):
        if not auth or auth.get("token") != "secret":
            raise socketio.exceptions.ConnectionRefusedError("authentication failed",
                                                             {"hint": "token"})

    url = serve(sio)
    result = run_psio("""
        sio = socketio.Client()
        inbox = Inbox()
        sio.on("connect_error", lambda data: inbox.put(data))
        try:
            sio.connect(URL, auth={"token": "wrong"}, wait_timeout=3)
        except socketio.exceptions.ConnectionError:
            pass
        refused = inbox.wait(1)[0]
        ok = socketio.Client()
        ok.connect(URL, auth={"token": "secret"})
        done({"refused": refused, "ok": ok.connected})
    """, url)
    assert result == {"refused": {"message": "authentication failed", "data": {"hint": "token"}},
                      "ok": True}


def test_legacy_handler_signatures(serve, run_js, wait_for):
    sio = socketio.Server()
    log = []

    @sio.event
    def connect(sid, environ):                 # no auth argument
        log.append(("connect", environ["REQUEST_METHOD"]))

    @sio.event
    def disconnect(sid):                       # no reason argument
        log.append(("disconnect", sid))

    @sio.on("connect", namespace="/auth")
    def connect_auth(sid, environ, auth):
        log.append(("auth", auth))

    url = serve(sio)
    sid = run_js("""
        const main = io(URL);
        await once(main, "connect");
        const withAuth = io(URL + "/auth", {auth: {k: 1}});
        await once(withAuth, "connect");
        const noAuth = io(URL + "/auth", {forceNew: true});
        await once(noAuth, "connect");
        const sid = main.id;
        const sent = once(main.io.engine, "drain");   // the DISCONNECT packet is written
        main.disconnect();
        await sent;
        done(sid);
    """, url)
    wait_for(lambda: ("disconnect", sid) in log, "the disconnect handler")
    assert ("connect", "GET") in log
    assert ("auth", {"k": 1}) in log and ("auth", None) in log


def test_a_connect_handler_can_use_its_sid_before_the_connection_is_accepted(serve, run_js):
    sio = socketio.Server()

    @sio.event
    def connect(sid, environ, auth):
        sio.enter_room(sid, "early")
        sio.save_session(sid, {"user": auth["user"]})
        sio.emit("welcome", "hello " + auth["user"], to=sid)   # sent before CONNECT
        assert sio.rooms(sid) == [sid, "early"]

    @sio.event
    def whoami(sid):
        return sio.get_session(sid)["user"], sorted(sio.rooms(sid))

    url = serve(sio)
    result = run_js("""
        const socket = io(URL, {auth: {user: "ann"}});
        const [welcome] = await once(socket, "welcome");
        socket.emit("whoami", (...args) => done({welcome, args, sid: socket.id}));
    """, url)
    assert result["welcome"] == "hello ann"
    assert result["args"] == ["ann", sorted([result["sid"], "early"])]


def test_broadcasts_from_a_connect_handler_include_the_new_client(serve, run_js):
    sio = socketio.Server()
    count = []

    @sio.event
    def connect(sid, environ, auth):
        count.append(sid)
        sio.enter_room(sid, "lobby")
        sio.emit("count", len(count))                              # everyone, new one too
        sio.emit("lobby", auth["name"], room="lobby")              # the room it just entered
        sio.emit("others", auth["name"], skip_sid=sid)             # everyone else

    url = serve(sio)
    result = run_js("""
        const inbox = {first: [], second: []};
        const open = async (name) => {
            const s = io(URL, {auth: {name}, forceNew: true});
            s.onAny((...e) => inbox[name].push(e));
            await once(s, "connect");
            return s;
        };
        await open("first");
        await open("second");
        await until(() => inbox.first.length >= 5 && inbox.second.length >= 2, "seven events");
        done(inbox);
    """, url)
    assert result == {
        "first": [["count", 1], ["lobby", "first"], ["count", 2], ["lobby", "second"],
                  ["others", "second"]],
        "second": [["count", 2], ["lobby", "second"]],
    }


def test_always_connect(serve, run_js):
    sio = socketio.Server(always_connect=True)
    disconnects = []

    @sio.event
    def connect(sid, environ, auth):
        sio.emit("hello", "early bird", to=sid)
        if auth.get("refuse"):
            return False

    @sio.event
    def disconnect(sid, reason):
        disconnects.append(reason)

    url = serve(sio)
    result = run_js("""
        const events = [];
        const socket = io(URL, {auth: {refuse: true}, reconnection: false});
        socket.on("connect", () => events.push("connect"));
        socket.on("hello", (m) => events.push(m));
        const [reason] = await once(socket, "disconnect");
        events.push(reason);
        done(events);
    """, url)
    assert result == ["connect", "early bird", "io server disconnect"]
    gevent.sleep(0.1)   # proving a negative: no disconnect handler runs, even a bit later
    assert disconnects == []    # a refused connection never "connected" for the app


def test_namespaces_option(serve, run_js):
    sio = socketio.Server(namespaces=["/a"])   # '/' is not in the list and has no handler
    url = serve(sio)
    result = run_js("""
        const attempt = (nsp) => new Promise((resolve) => {
            const socket = io(URL + nsp, {forceNew: true, reconnection: false});
            socket.on("connect", () => resolve("connected"));
            socket.on("connect_error", (err) => resolve(err.message));
        });
        done([await attempt("/a"), await attempt("/b"), await attempt("/")]);
    """, url)
    assert result == ["connected", "Invalid namespace", "Unable to connect"]

    any_sio = socketio.Server(namespaces="*")
    seen = []

    @any_sio.on("connect", namespace="*")
    def any_connect(namespace, sid, environ, auth):
        seen.append(namespace)

    url = serve(any_sio)
    assert run_js("""
        const a = io(URL + "/x1"); await once(a, "connect");
        const b = io(URL + "/x2/deeper"); await once(b, "connect");
        done("ok");
    """, url) == "ok"
    assert sorted(seen) == ["/x1", "/x2/deeper"]


def test_handlers_registered_after_serving_open_their_namespace(serve, run_js):
    sio = socketio.Server()
    url = serve(sio)

    @sio.on("ping", namespace="/late")
    def late_ping(sid):
        return "pong"

    assert run_js("""
        const socket = io(URL + "/late");
        done(await socket.emitWithAck("ping"));
    """, url) == "pong"


def test_handlers_added_to_a_live_wildcard_namespace(serve, run_js):
    sio = socketio.Server(namespaces="*")
    connects = []
    url = serve(sio)
    assert run_js("""
        const s = io(URL + "/dyn"); await once(s, "connect"); done("ok");
    """, url) == "ok"

    @sio.on("connect", namespace="/dyn")
    def dyn_connect(sid, environ, auth):
        connects.append(sid)

    @sio.on("hello", namespace="/dyn")
    def dyn_hello(sid):
        return "hello"

    assert run_js("""
        const s = io(URL + "/dyn");
        done(await s.emitWithAck("hello"));
    """, url) == "hello"
    assert len(connects) == 1      # the handler ran once, not once per hook


def test_disconnect_reasons(serve, run_js, wait_for):
    sio = socketio.Server(ping_interval=0.2, ping_timeout=0.3)
    reasons = {}

    @sio.event
    def connect(sid, environ, auth):
        sio.save_session(sid, {"name": auth["name"]})

    @sio.event
    def disconnect(sid, reason):
        reasons[sio.get_session(sid)["name"]] = reason

    @sio.event
    def kick(sid):
        sio.disconnect(sid)

    url = serve(sio)
    run_js("""
        const open = async (name, opts = {}) => {
            const s = io(URL, {auth: {name}, forceNew: true, reconnection: false, ...opts});
            await once(s, "connect");
            return s;
        };
        const client = await open("client");
        client.disconnect();                            // SIO DISCONNECT

        const engine = await open("engine", {transports: ["polling"]});
        engine.io.engine.close();                       // polling: an Engine.IO close packet

        const server = await open("server");
        server.emit("kick");
        await once(server, "disconnect");

        const dropped = await open("dropped", {transports: ["websocket"]});
        dropped.io.engine.transport.ws.terminate();     // TCP gone, no goodbye

        const silent = await open("silent", {transports: ["websocket"]});
        silent.io.engine._sendPacket = () => {};        // stops answering pings
        silent.io.engine.sendPacket = () => {};
        await once(silent, "disconnect");
        done();
    """, url)
    wait_for(lambda: len(reasons) == 5, "five disconnect reasons")
    assert reasons == {
        "client": "client disconnect",
        "engine": "client disconnect",
        "server": "server disconnect",
        "dropped": "transport close",
        "silent": "ping timeout",
    }
    assert socketio.Server.reason.PING_TIMEOUT == "ping timeout"


def test_disconnect_handler_still_sees_the_rooms(serve, run_js):
    sio = socketio.Server()

    @sio.event
    def join(sid, room):
        sio.enter_room(sid, room)
        sio.save_session(sid, {"name": "user" + str(len(sio.rooms(sid)))})

    @sio.event
    def disconnect(sid, reason):
        name = sio.get_session(sid)["name"]
        for room in sio.rooms(sid):
            if room != sid:
                sio.emit("left", (room, name, reason), room=room, skip_sid=sid)

    url = serve(sio)
    assert run_js("""
        const stay = io(URL), leave = io(URL, {forceNew: true});
        await Promise.all([once(stay, "connect"), once(leave, "connect")]);
        for (const s of [stay, leave]) await s.emitWithAck("join", "lobby");
        const left = once(stay, "left");
        leave.disconnect();
        done(await left);
    """, url) == ["lobby", "user2", "client disconnect"]


def test_server_disconnect_seen_by_the_python_client(serve, run_psio):
    sio = socketio.Server()
    reasons = []

    @sio.event
    def disconnect(sid, reason):
        reasons.append(reason)

    @sio.event
    def kick(sid):
        sio.disconnect(sid)

    url = serve(sio)
    result = run_psio("""
        sio = socketio.Client()
        inbox = Inbox()
        sio.on("disconnect", lambda reason: inbox.put(reason))
        sio.connect(URL)
        sio.emit("kick")
        done(inbox.wait(1)[0])
    """, url)
    assert result == "server disconnect"
    assert reasons == ["server disconnect"]


def test_shutdown_disconnects_everyone(serve, run_js, start_js):
    sio = socketio.Server()
    reasons = []
    ready = gevent.event.Event()

    @sio.event
    def disconnect(sid, reason):
        reasons.append(reason)

    @sio.on("ready")
    def on_ready(sid):
        ready.set()

    url = serve(sio)
    run = start_js("""
        const socket = io(URL, {reconnection: false});
        await once(socket, "connect");
        const gone = once(socket, "disconnect");
        socket.emit("ready");
        const [reason] = await gone;
        done(reason);
    """, url)
    assert ready.wait(timeout=10)
    sio.shutdown()
    assert run.result() in ("transport close", "io server disconnect")
    assert reasons == ["server disconnect"]


@pytest.mark.parametrize("transports", [["polling"], ["websocket"]])
def test_transport_and_environ(serve, run_js, transports):
    sio = socketio.Server()

    @sio.event
    def where(sid):
        environ = sio.get_environ(sid)
        return sio.transport(sid), environ["HTTP_X_APP"], environ["QUERY_STRING"].count("k=v")

    url = serve(sio)
    result = run_js(f"""
        const socket = io(URL, {{transports: {transports!r}, query: {{k: "v"}},
                                extraHeaders: {{"x-app": "demo"}}}});
        done(await new Promise((resolve) => socket.emit("where", (...a) => resolve(a))));
    """.replace("'", '"'), url)
    assert result == [transports[0], "demo", 1]
    assert sio.get_environ("no such sid") is None

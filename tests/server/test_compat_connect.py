"""roomcast.compat: connecting and disconnecting the python-socketio way
(connect handler forms and refusals, always_connect, namespaces, disconnect reasons).
Each scenario runs against roomcast.compat and against python-socketio itself
(``both_sides``, tests/compat_sides.py); where roomcast knowingly differs (the
roomcast.compat docstring), the test says so and checks both sides' answers."""
from __future__ import annotations

import builtins

import gevent
import gevent.event
import pytest

import roomcast.compat


REFUSALS = """
    const out = {};
    for (const how of HOWS) {
        const socket = io(URL, {auth: {how}, forceNew: true, reconnection: false});
        out[how] = await new Promise((resolve) => {
            socket.on("connect", () => resolve("connected"));
            socket.on("connect_error", (err) => resolve([err.message, err.data ?? null]));
        });
        socket.disconnect();
    }
    done(out);
"""


def refusing_server(socketio):
    sio = socketio.Server()
    sio.seen = []

    @sio.event
    def connect(sid, environ, auth):
        sio.seen.append(auth)
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

    return sio


def test_connect_refusals_reach_the_js_client(both_sides, run_js):
    hows = ["false", "no args", "message", "message and data", "more args", "builtin", "ok"]

    def scenario(socketio, serve):
        sio = refusing_server(socketio)
        result = run_js(f"const HOWS = {hows!r};\n" + REFUSALS, serve(sio))
        return result, len(sio.seen)

    assert both_sides(scenario) == ({
        "false": ["Connection rejected by server", None],
        "no args": ["Connection rejected by server", None],
        "message": ["nope", None],
        "message and data": ["nope", {"code": 7}],
        "more args": ["a", ["b", 3]],
        "builtin": ["Connection refused by server", None],
        "ok": "connected",
    }, len(hows))


def test_a_connect_handler_bug_refuses_the_connection(serve, run_js):
    # roomcast.compat only: python-socketio leaves such a client waiting (documented)
    sio = refusing_server(roomcast.compat)
    assert run_js('const HOWS = ["bug"];\n' + REFUSALS, serve(sio)) == {
        "bug": ["Connection rejected by server", None]}


def test_refusal_reaches_the_python_client(both_sides, run_psio):
    def scenario(socketio, serve):
        sio = socketio.Server()

        @sio.event
        def connect(sid, environ, auth):
            if not auth or auth.get("token") != "secret":
                raise socketio.exceptions.ConnectionRefusedError("authentication failed",
                                                                 {"hint": "token"})

        return run_psio("""
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
        """, serve(sio))

    assert both_sides(scenario) == {
        "refused": {"message": "authentication failed", "data": {"hint": "token"}}, "ok": True}


def test_legacy_handler_signatures(both_sides, run_js, wait_for):
    def scenario(socketio, serve):
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
        """, serve(sio))
        wait_for(lambda: ("disconnect", sid) in log, "the disconnect handler")
        return sorted((("disconnect", "<sid>") if entry == ("disconnect", sid) else entry
                       for entry in log if entry[0] != "disconnect" or entry[1] == sid), key=repr)

    assert both_sides(scenario) == sorted([("connect", "GET"), ("auth", {"k": 1}),
                                           ("auth", None), ("disconnect", "<sid>")], key=repr)


def test_a_connect_handler_can_use_its_sid_before_the_connection_is_accepted(both_sides, run_js):
    def scenario(socketio, serve):
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

        return run_js("""
            const socket = io(URL, {auth: {user: "ann"}});
            const [welcome] = await once(socket, "welcome");
            socket.emit("whoami", (user, rooms) => done({
                welcome, user, rooms: rooms.map((r) => r === socket.id ? "<sid>" : r).sort()}));
        """, serve(sio))

    assert both_sides(scenario) == {"welcome": "hello ann", "user": "ann",
                                    "rooms": ["<sid>", "early"]}


def test_broadcasts_from_a_connect_handler_include_the_new_client(both_sides, run_js):
    def scenario(socketio, serve):
        sio = socketio.Server()
        count = []

        @sio.event
        def connect(sid, environ, auth):
            count.append(sid)
            sio.enter_room(sid, "lobby")
            sio.emit("count", len(count))                              # everyone, new one too
            sio.emit("lobby", auth["name"], room="lobby")              # the room it just entered
            sio.emit("others", auth["name"], skip_sid=sid)             # everyone else

        return run_js("""
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
        """, serve(sio))

    assert both_sides(scenario) == {
        "first": [["count", 1], ["lobby", "first"], ["count", 2], ["lobby", "second"],
                  ["others", "second"]],
        "second": [["count", 2], ["lobby", "second"]],
    }


def test_always_connect(both_sides, run_js):
    def scenario(socketio, serve):
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

        result = run_js("""
            const events = [];
            const socket = io(URL, {auth: {refuse: true}, reconnection: false});
            socket.on("connect", () => events.push("connect"));
            socket.on("hello", (m) => events.push(m));
            const [reason] = await once(socket, "disconnect");
            events.push(reason);
            done(events);
        """, serve(sio))
        gevent.sleep(0.1)   # proving a negative: no disconnect handler runs, even a bit later
        return result, disconnects   # a refused connection never "connected" for the app

    results = both_sides(scenario, same=False)
    assert results["roomcast.compat"] == (["connect", "early bird", "io server disconnect"], [])
    # python-socketio's refusal is a DISCONNECT packet with a payload, which the JS
    # client's parser refuses ("parse error"; "early bird" may or may not come first);
    # roomcast sends a plain DISCONNECT, as Node
    events, disconnects = results["python-socketio"]
    assert events in (["connect", "parse error"], ["connect", "early bird", "parse error"])
    assert disconnects == []


def test_namespaces_option(both_sides, run_js):
    def scenario(socketio, serve):
        sio = socketio.Server(namespaces=["/a"])   # '/' is not in the list and has no handler
        return run_js("""
            const attempt = (nsp) => new Promise((resolve) => {
                const socket = io(URL + nsp, {forceNew: true, reconnection: false});
                socket.on("connect", () => resolve("connected"));
                socket.on("connect_error", (err) => resolve(err.message));
            });
            done([await attempt("/a"), await attempt("/b"), await attempt("/")]);
        """, serve(sio))

    # a namespace nobody handles: Node's "Invalid namespace" (documented difference);
    # python-socketio's CONNECT_ERROR carries a bare string, which the JS client reads
    # as an error without message
    assert both_sides(scenario, same=False) == {
        "roomcast.compat": ["connected", "Invalid namespace", "Unable to connect"],
        "python-socketio": ["connected", "", ""],
    }


def test_a_wildcard_namespaces_option(both_sides, run_js):
    def scenario(socketio, serve):
        any_sio = socketio.Server(namespaces="*")
        seen = []

        @any_sio.on("connect", namespace="*")
        def any_connect(namespace, sid, environ, auth):
            seen.append(namespace)

        result = run_js("""
            const a = io(URL + "/x1"); await once(a, "connect");
            const b = io(URL + "/x2/deeper"); await once(b, "connect");
            done("ok");
        """, serve(any_sio))
        return result, sorted(seen)

    assert both_sides(scenario) == ("ok", ["/x1", "/x2/deeper"])


def test_handlers_registered_after_serving_open_their_namespace(both_sides, run_js):
    def scenario(socketio, serve):
        sio = socketio.Server()
        url = serve(sio)

        @sio.on("ping", namespace="/late")
        def late_ping(sid):
            return "pong"

        return run_js("""
            const socket = io(URL + "/late");
            done(await socket.emitWithAck("ping"));
        """, url)

    assert both_sides(scenario) == "pong"


def test_handlers_added_to_a_live_wildcard_namespace(both_sides, run_js):
    def scenario(socketio, serve):
        sio = socketio.Server(namespaces="*")
        connects = []
        url = serve(sio)
        first = run_js("""
            const s = io(URL + "/dyn"); await once(s, "connect"); done("ok");
        """, url)

        @sio.on("connect", namespace="/dyn")
        def dyn_connect(sid, environ, auth):
            connects.append(sid)

        @sio.on("hello", namespace="/dyn")
        def dyn_hello(sid):
            return "hello"

        second = run_js("""
            const s = io(URL + "/dyn");
            done(await s.emitWithAck("hello"));
        """, url)
        return first, second, len(connects)   # the handler ran once, not once per hook

    assert both_sides(scenario) == ("ok", "hello", 1)


def test_disconnect_reasons(both_sides, run_js, wait_for):
    def scenario(socketio, serve):
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
        """, serve(sio))
        wait_for(lambda: len(reasons) == 5, "five disconnect reasons")
        return reasons, socketio.Server.reason.PING_TIMEOUT

    results = both_sides(scenario, same=False)
    expected = {
        "client": "client disconnect",
        "engine": "client disconnect",
        "server": "server disconnect",
        "dropped": "transport close",
        "silent": "ping timeout",
    }
    assert results["roomcast.compat"] == (expected, "ping timeout")
    # python-engineio closes a silent WebSocket client for its ping timeout but reports
    # the closed transport ("transport close"); roomcast reports "ping timeout", as Node
    theirs, constant = results["python-socketio"]
    assert constant == "ping timeout"
    assert theirs == {**expected, "silent": theirs["silent"]}
    assert theirs["silent"] in ("ping timeout", "transport close")


def test_disconnect_handler_still_sees_the_rooms(both_sides, run_js):
    def scenario(socketio, serve):
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

        return run_js("""
            const stay = io(URL), leave = io(URL, {forceNew: true});
            await Promise.all([once(stay, "connect"), once(leave, "connect")]);
            for (const s of [stay, leave]) await s.emitWithAck("join", "lobby");
            const left = once(stay, "left");
            leave.disconnect();
            done(await left);
        """, serve(sio))

    assert both_sides(scenario) == ["lobby", "user2", "client disconnect"]


def test_server_disconnect_seen_by_the_python_client(both_sides, run_psio, wait_for):
    def scenario(socketio, serve):
        sio = socketio.Server()
        reasons = []

        @sio.event
        def disconnect(sid, reason):
            reasons.append(reason)

        @sio.event
        def kick(sid):
            sio.disconnect(sid)

        result = run_psio("""
            sio = socketio.Client()
            inbox = Inbox()
            sio.on("disconnect", lambda reason: inbox.put(reason))
            sio.connect(URL)
            sio.emit("kick")
            done(inbox.wait(1)[0])
        """, serve(sio))
        wait_for(lambda: reasons, "the disconnect handler")
        return result, reasons

    assert both_sides(scenario) == ("server disconnect", ["server disconnect"])


def test_shutdown_disconnects_everyone(serve, run_js, start_js):
    # roomcast.compat only: python-engineio's shutdown() stops its background task and
    # leaves the clients connected (a documented difference)
    sio = roomcast.compat.Server()
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
def test_transport_and_environ(both_sides, run_js, transports):
    def scenario(socketio, serve):
        sio = socketio.Server()

        @sio.event
        def where(sid):
            environ = sio.get_environ(sid)
            return sio.transport(sid), environ["HTTP_X_APP"], environ["QUERY_STRING"].count("k=v")

        result = run_js(f"""
            const socket = io(URL, {{transports: {transports!r}, query: {{k: "v"}},
                                    extraHeaders: {{"x-app": "demo"}}}});
            done(await new Promise((resolve) => socket.emit("where", (...a) => resolve(a))));
        """.replace("'", '"'), serve(sio))
        return result, sio.get_environ("no such sid")

    assert both_sides(scenario) == ([transports[0], "demo", 1], None)

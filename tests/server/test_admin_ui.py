"""The Admin UI's protocol (@socket.io/admin-ui 0.5): io.instrument() / sio.instrument().

A socket.io-client on the admin namespace plays the UI here (the same events the UI
listens to); test_admin_ui_browser.py opens the real UI in Chromium.
"""
from __future__ import annotations

import roomcast
import roomcast.compat as socketio

BASIC = {"type": "basic", "username": "admin", "password": "s3cret"}

# Three clients in rooms, an admin that records every admin event, then a script of
# actions; returns what the admin saw and what the clients got.
SCRIPT = """
    const clients = {};
    const got = {a: [], b: [], c: []};
    for (const [name, room] of [["a", "red"], ["b", "red"], ["c", "blue"]]) {
        clients[name] = io(URL, {forceNew: true, auth: {room}});
        clients[name].onAny((ev, ...args) => got[name].push([ev, ...args]));
        clients[name].on("disconnect", (reason) => got[name].push(["disconnect", reason]));
        await once(clients[name], "connect");
    }
    const ids = Object.fromEntries(Object.entries(clients).map(([n, s]) => [n, s.id]));
    const bad = io(URL + "/admin", {forceNew: true, auth: {username: "admin", password: "no"}});
    const [err] = await once(bad, "connect_error");
    const seen = [];
    const admin = io(URL + "/admin", {forceNew: true, auth: {username: "admin", password: "s3cret"}});
    admin.onAny((ev, ...args) => seen.push([ev, ...args]));
    await once(admin, "connect");
    const has = (pred) => until(() => seen.some(pred), "an admin event");
    await has(([ev]) => ev === "all_sockets");
    await has(([ev]) => ev === "server_stats");
    const [sessionId] = seen.find(([ev]) => ev === "session").slice(1);
    const again = io(URL + "/admin", {forceNew: true, auth: {sessionId}});
    await once(again, "connect");
    again.disconnect();

    // a newcomer: connected, joins a room, sends an event, is answered, leaves
    const d = io(URL, {forceNew: true, auth: {room: "blue"}});
    await once(d, "connect");
    const dId = d.id;
    await d.emitWithAck("hello", "there");
    await has(([ev, nsp, id, args]) => ev === "event_sent" && id === dId);
    await fetch(URL + "/shout");    // the server broadcasts to "red" (2 recipients)
    await until(() => got.a.length && got.b.length, "the broadcast");
    d.disconnect();
    await has(([ev, nsp, id]) => ev === "socket_disconnected" && id === dId);

    // the UI's actions
    admin.emit("join", "/", "green", "red");
    await has(([ev, nsp, room, id]) => ev === "room_joined" && room === "green" && id === clients.b.id);
    admin.emit("emit", "/", "green", "from-admin", 1, "x");
    await until(() => got.a.some(([ev]) => ev === "from-admin"), "the admin's emit");
    admin.emit("leave", "/", "green", "red");
    await has(([ev, nsp, room]) => ev === "room_left" && room === "green");
    admin.emit("_disconnect", "/", false, "blue");
    await until(() => got.c.some(([ev]) => ev === "disconnect"), "c's disconnect");
    await has(([ev, stats]) => ev === "server_stats" &&
              stats.aggregatedEvents.some((e) => e.type === "packetsOut"));
    done({err: err.message, seen, got, ids: {...ids, d: dId, admin: admin.id}});
"""


def app_server(**instrument) -> roomcast.Server:
    io = roomcast.Server()

    @io.on("connection")
    def connection(socket):
        socket.join(socket.handshake["auth"]["room"])

        @socket.on("hello")
        def hello(text, ack):
            socket.emit("welcome", text)
            ack("ok")

    io.instrument(server_stats_interval=0.2, **instrument)
    return io


def shout_app(io):
    def app(environ, start_response):
        io.to("red").emit("shout", "everyone in red")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"sent"]
    return app


def test_admin_protocol_on_the_native_server(serve, run_js):
    io = app_server(auth=BASIC, mode="development")
    url = serve(roomcast.WSGIApp(io, shout_app(io)))
    out = run_js(SCRIPT, url, timeout=30)
    seen, ids = out["seen"], out["ids"]
    assert out["err"] == "invalid credentials"
    # (the admin socket's own room_joined / socket_connected reports come in between)
    first = [e for e in seen if e[0] in ("session", "config", "all_sockets")]
    assert [e[0] for e in first[:3]] == ["session", "config", "all_sockets"]
    config = first[1][1]
    assert config["supportedFeatures"] == ["EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN",
                                           "MLEAVE", "MDISCONNECT", "AGGREGATED_EVENTS",
                                           "ALL_EVENTS"]
    listed = {s["id"]: s for s in first[2][1]}
    assert {ids["a"], ids["b"], ids["c"], ids["admin"]} <= set(listed)
    a = listed[ids["a"]]
    assert a["nsp"] == "/" and sorted(a["rooms"]) == sorted([ids["a"], "red"])
    assert a["transport"] == "polling" or a["transport"] == "websocket"
    assert a["handshake"]["address"] == "127.0.0.1" and a["handshake"]["query"]["EIO"] == "4"
    assert len(a["clientId"]) == 12 and a["data"] == {}

    stats = next(e[1] for e in seen if e[0] == "server_stats")
    assert {"serverId", "hostname", "pid", "uptime", "clientsCount", "pollingClientsCount",
            "aggregatedEvents", "namespaces"} <= set(stats)
    assert {"name": "/", "socketsCount": 3} in stats["namespaces"]
    counted = {e["type"] for s in seen if s[0] == "server_stats" for e in s[1]["aggregatedEvents"]}
    assert {"rawConnection", "packetsIn", "bytesIn", "packetsOut"} <= counted

    d = ids["d"]
    def about(e):
        if e[0] == "socket_connected":
            return e[1]["id"] == d
        if e[0] in ("room_joined", "room_left"):
            return e[3] == d
        return e[0] in ("event_received", "event_sent", "socket_disconnected") and e[2] == d
    about_d = [e for e in seen if about(e)]
    # the rooms are joined before the connection listeners run (the app's join
    # included); socket_connected lists them, which is what the UI keeps
    assert [e[0] for e in about_d] == ["room_joined", "room_joined", "socket_connected",
                                      "event_received", "event_sent", "room_left",
                                      "room_left", "socket_disconnected"]
    assert [e[2] for e in about_d[:2]] == [d, "blue"]
    assert sorted(about_d[2][1]["rooms"]) == sorted([d, "blue"])
    assert about_d[3][1:4] == ["/", d, ["hello", "there"]]
    assert about_d[4][1:4] == ["/", d, ["welcome", "there"]]
    assert about_d[7][1:4] == ["/", d, "client namespace disconnect"]
    assert about_d[2][2].endswith("Z")   # a timestamp as Node's Date.toJSON()

    # a broadcast to two clients is ONE event_sent, addressed to its room
    shouts = [e for e in seen if e[0] == "event_sent" and e[3][0] == "shout"]
    assert shouts == [["event_sent", "/", "to red", ["shout", "everyone in red"], shouts[0][4]]]

    # the UI's actions
    assert ["from-admin", 1, "x"] in out["got"]["a"] and ["from-admin", 1, "x"] in out["got"]["b"]
    assert not any(ev == "from-admin" for ev, *_ in out["got"]["c"])
    assert out["got"]["c"][-1] == ["disconnect", "io server disconnect"]
    assert not any(ev == "disconnect" for ev, *_ in out["got"]["a"])


def test_read_only_production_mode(serve, run_js):
    io = app_server(auth=None, mode="production", read_only=True)
    url = serve(io)
    out = run_js("""
        const a = io(URL, {forceNew: true, auth: {room: "red"}});
        await once(a, "connect");
        const seen = [];
        const admin = io(URL + "/admin", {forceNew: true});
        admin.onAny((ev, ...args) => seen.push([ev, ...args]));
        await once(admin, "connect");
        await until(() => seen.filter(([ev]) => ev === "server_stats").length >= 2, "stats");
        let leaked = false;
        a.on("from-admin", () => { leaked = true; });
        admin.emit("emit", "/", null, "from-admin");
        admin.emit("_disconnect", "/", true, null);
        await a.emitWithAck("hello", "still here");   // a round trip after the actions
        done({kinds: [...new Set(seen.map(([ev]) => ev))], config: seen[0][1], leaked,
              connected: a.connected});
    """, url)
    assert out["kinds"] == ["config", "server_stats"]
    assert out["config"] == {"supportedFeatures": ["AGGREGATED_EVENTS"]}
    assert out["leaked"] is False and out["connected"] is True


def test_compat_server_instrument(serve, run_js):
    sio = socketio.Server()

    @sio.event
    def connect(sid, environ, auth):
        sio.enter_room(sid, "lobby")

    @sio.event
    def chat(sid, text):
        sio.emit("chat", text, to="lobby")
        return "ok"

    sio.instrument(auth={"username": "u", "password": "p"}, server_stats_interval=0.2)
    url = serve(sio)
    out = run_js("""
        const seen = [];
        const a = io(URL, {forceNew: true}), b = io(URL, {forceNew: true});
        await Promise.all([once(a, "connect"), once(b, "connect")]);
        const refused = io(URL + "/admin", {forceNew: true, auth: {username: "u", password: "x"}});
        const [err] = await once(refused, "connect_error");
        const admin = io(URL + "/admin", {forceNew: true, auth: {username: "u", password: "p"}});
        admin.onAny((ev, ...args) => seen.push([ev, ...args]));
        await once(admin, "connect");
        await until(() => seen.some(([ev]) => ev === "all_sockets"), "all_sockets");
        await a.emitWithAck("chat", "hi");
        await until(() => seen.some(([ev]) => ev === "event_sent"), "event_sent");
        await until(() => seen.some(([ev]) => ev === "event_received"), "event_received");
        done({err: err.message, seen, a: a.id, b: b.id});
    """, url)
    assert out["err"] == "authentication failed"
    all_sockets = next(e[1] for e in out["seen"] if e[0] == "all_sockets")
    rooms = {s["id"]: sorted(s["rooms"]) for s in all_sockets if s["nsp"] == "/"}
    assert rooms == {out["a"]: sorted([out["a"], "lobby"]), out["b"]: sorted([out["b"], "lobby"])}
    received = [e for e in out["seen"] if e[0] == "event_received"]
    assert [e[1:4] for e in received] == [["/", out["a"], ["chat", "hi"]]]
    sent = [e for e in out["seen"] if e[0] == "event_sent"]
    assert [e[1:4] for e in sent] == [["/", "to lobby", ["chat", "hi"]]]


def test_nothing_is_hooked_unless_instrumented():
    io = roomcast.Server()
    chat = io.of("/chat")
    # the broadcast path is the plain class method: no wrapper, no listener
    for nsp in (io.sockets, chat):
        assert "broadcast" not in vars(nsp.adapter)
        assert not nsp.adapter.listeners("join-room")
    io.instrument(mode="development")
    assert "broadcast" in vars(chat.adapter) and chat.adapter.listeners("join-room")
    assert "broadcast" not in vars(io.of("/admin").adapter)   # its own reports are not reported

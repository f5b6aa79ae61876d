"""Rooms and broadcasts through the adapter: join, leave, to, except, dedup, own-id room."""
from __future__ import annotations

import json

import pytest

import roomcast

TRANSPORTS = {
    "websocket": "transports: ['websocket']",
    "polling": "transports: ['polling']",
    "upgrade": "upgrade: true",
}


@pytest.fixture(params=list(TRANSPORTS))
def transport(request) -> str:
    return TRANSPORTS[request.param]


def room_server(scenario):
    """A server whose clients join the rooms named in their auth; the client called
    "ctl" emits "go", which runs scenario(io, sockets_by_name) then broadcasts "end"."""
    io = roomcast.Server()
    by_name = {}

    @io.on("connection")
    def connection(socket):
        name = socket.handshake["auth"]["name"]
        by_name[name] = socket
        socket.join(socket.handshake["auth"].get("rooms", []))

        @socket.on("go")
        def go(ack):
            scenario(io, by_name)
            io.emit("end")
            ack()

        socket.emit("ready")

    return io


def run_clients(run_js, url, clients: dict, transport: str = "upgrade: true") -> dict:
    """Connect one client per name (auth rooms), let "ctl" emit "go", and return
    every client's received events (in order) until "end"."""
    return run_js(f"""
        const clients = {json.dumps(clients)};
        const names = Object.keys(clients).concat(["ctl"]);
        const logs = {{}};
        const ended = [];
        const socks = {{}};
        await Promise.all(names.map((name) => new Promise((ready) => {{
            const s = io(URL, {{forceNew: true, {transport}, auth: {{name, rooms: clients[name] || []}}}});
            socks[name] = s;
            logs[name] = [];
            ended.push(new Promise((end) => s.onAny((ev, ...args) => {{
                if (ev === "ready") ready();
                else if (ev === "end") end();
                else logs[name].push([ev, ...args]);
            }})));
        }})));
        await socks.ctl.emitWithAck("go");
        await Promise.all(ended);
        delete logs.ctl;
        done(logs);
    """, url)


def test_to_room_and_except(serve, run_js, transport):
    def scenario(io, s):
        io.to("red").emit("to-red", 1)
        io.to("red").except_("blue").emit("red-not-blue", 2)
        io.except_("red").emit("not-red", 3)

    logs = run_clients(run_js, serve(room_server(scenario)),
                       {"a": ["red"], "b": ["red", "blue"], "c": ["blue"]}, transport)
    assert logs == {
        "a": [["to-red", 1], ["red-not-blue", 2]],
        "b": [["to-red", 1]],
        "c": [["not-red", 3]],
    }


def test_several_rooms_deduplicated(serve, run_js):
    def scenario(io, s):
        io.to("red").to("blue").emit("once", "x")
        io.to(["red", "blue", "green"]).emit("list", "y")
        io.in_("red").in_("blue").except_(s["d"].id).emit("except-id", "z")

    logs = run_clients(run_js, serve(room_server(scenario)),
                       {"a": ["red"], "b": ["red", "blue"], "c": ["blue"], "d": ["red", "blue"],
                        "e": []})
    for name in "abc":
        assert logs[name] == [["once", "x"], ["list", "y"], ["except-id", "z"]], name
    assert logs["d"] == [["once", "x"], ["list", "y"]]
    assert logs["e"] == []


def test_socket_broadcast_excludes_sender(serve, run_js, transport):
    def scenario(io, s):
        s["a"].to("red").emit("from-a", 1)
        s["a"].broadcast.emit("all-but-a", 2)
        s["a"].except_("blue").emit("not-blue-not-a", 3)

    logs = run_clients(run_js, serve(room_server(scenario)),
                       {"a": ["red"], "b": ["red"], "c": ["blue"]}, transport)
    assert logs["a"] == []
    assert logs["b"] == [["from-a", 1], ["all-but-a", 2], ["not-blue-not-a", 3]]
    assert logs["c"] == [["all-but-a", 2]]


def test_own_id_room_and_join_leave(serve, run_js):
    rooms_seen = {}

    def scenario(io, s):
        io.to(s["b"].id).emit("direct", "to-b")
        s["a"].join(["x", "y"])
        s["c"].join("x")
        rooms_seen["a"] = s["a"].rooms
        io.to("x").emit("x1")
        s["a"].leave("x")
        rooms_seen["a-after"] = s["a"].rooms
        io.to("x").emit("x2")
        io.to("y").emit("y")

    logs = run_clients(run_js, serve(room_server(scenario)), {"a": [], "b": [], "c": []})
    assert logs == {"a": [["x1"], ["y"]], "b": [["direct", "to-b"]], "c": [["x1"], ["x2"]]}
    assert len(rooms_seen["a"]) == 3 and {"x", "y"} < rooms_seen["a"]
    assert rooms_seen["a-after"] == rooms_seen["a"] - {"x"}


def test_rooms_are_left_on_disconnect(serve, run_js, wait_for):
    io = roomcast.Server()
    state = {}

    @io.on("connection")
    def connection(socket):
        socket.join(["room-1", "room-2"])

        @socket.on("disconnecting")
        def disconnecting(reason):
            state["disconnecting"] = (reason, set(socket.rooms))

        @socket.on("disconnect")
        def disconnect(reason):
            state["disconnect"] = (reason, set(socket.rooms))
            state["adapter_rooms"] = io.sockets.adapter.all_rooms()

    run_js("""
        const s = io(URL);
        await once(s, "connect");
        const sent = once(s.io.engine, "drain");   // the DISCONNECT packet is written
        s.disconnect();
        await sent;
        done(null);
    """, serve(io))
    wait_for(lambda: "adapter_rooms" in state, "the disconnect handler")
    reason, rooms = state["disconnecting"]
    assert reason == "client namespace disconnect"
    assert {"room-1", "room-2"} < rooms and len(rooms) == 3
    assert state["disconnect"] == ("client namespace disconnect", set())
    assert state["adapter_rooms"] == set()


def test_namespace_isolation(serve, run_js):
    io = roomcast.Server()
    chat = io.of("/chat")
    for nsp in (io.sockets, chat):
        nsp.on("connection", lambda socket: socket.join("shared"))

    @io.on("connection")
    def go(socket):
        @socket.on("go")
        def on_go(ack):
            io.to("shared").emit("main-only")
            chat.to("shared").emit("chat-only")
            io.emit("end")
            chat.emit("end")
            ack()

    result = run_js("""
        const main = io(URL, {forceNew: true});
        const chat = io(URL + "/chat", {forceNew: true});
        const logs = {main: [], chat: []};
        const ends = [main, chat].map((s, i) => new Promise((end) => s.onAny((ev) => {
            if (ev === "end") end(); else logs[i ? "chat" : "main"].push(ev);
        })));
        await Promise.all([once(main, "connect"), once(chat, "connect")]);
        await main.emitWithAck("go");
        await Promise.all(ends);
        done(logs);
    """, serve(io))
    assert result == {"main": ["main-only"], "chat": ["chat-only"]}


def test_multiplexed_namespaces_on_one_connection(serve, run_js):
    io = roomcast.Server()
    chat = io.of("/chat")
    conns = []
    io.on("connection", lambda s: conns.append(s.conn))
    chat.on("connection", lambda s: (conns.append(s.conn), s.emit("hi", s.nsp.name)))
    result = run_js("""
        const main = io(URL);
        const chat = io(URL + "/chat");
        await once(main, "connect");
        const [name] = await once(chat, "hi");
        done(name);
    """, serve(io))
    assert result == "/chat"
    assert len(conns) == 2 and conns[0] is conns[1]


def test_volatile_local_and_compress_flags_deliver(serve, run_js):
    def scenario(io, s):
        io.volatile.emit("volatile", 1)
        io.local.emit("local", 2)
        io.compress(False).to("red").emit("uncompressed", 3)
        s["a"].volatile.emit("socket-volatile", 4)
        s["a"].compress(False).emit("socket-uncompressed", 5)

    # WebSocket only: over long-polling a volatile packet is dropped while no GET is
    # pending (as in Node), which an upgrading client may well be at that moment
    logs = run_clients(run_js, serve(room_server(scenario)), {"a": ["red"]},
                       transport=TRANSPORTS["websocket"])
    assert logs["a"] == [["volatile", 1], ["local", 2], ["uncompressed", 3],
                         ["socket-volatile", 4], ["socket-uncompressed", 5]]


def test_outgoing_listeners_fire_per_recipient_of_a_broadcast(serve, run_js):
    seen = []

    def scenario(io, s):
        for name in ("a", "b"):
            s[name].on_any_outgoing(lambda ev, *args, name=name: seen.append((name, ev, args)))
        io.to("red").emit("news", 1)           # a and b are in red, c is not
        io.emit("all", 2)
        io.except_("red").emit("others", 3)
        for name in ("a", "b"):
            s[name].off_any_outgoing()

    logs = run_clients(run_js, serve(room_server(scenario)),
                       {"a": ["red"], "b": ["red"], "c": []})
    assert sorted(seen) == [("a", "all", (2,)), ("a", "news", (1,)),
                            ("b", "all", (2,)), ("b", "news", (1,))]
    assert logs["c"] == [["all", 2], ["others", 3]]

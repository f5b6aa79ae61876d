"""Operators on many sockets: acks from every recipient, fetch_sockets, sockets_join/leave,
adapter events, RemoteSocket, server-side emits."""
from __future__ import annotations

import gevent

import roomcast
from roomcast.operators import RemoteSocket


def clients_script(count: int, body: str, answer: str = "") -> str:
    """`count` clients named c0.., each joined to the rooms in auth; then `body` runs.
    `answer` is JS handling events on each client `s` (index `i`)."""
    return f"""
        const socks = [];
        for (let i = 0; i < {count}; i++) {{
            const s = io(URL, {{forceNew: true, auth: {{name: "c" + i}}}});
            {answer}
            socks.push(s);
        }}
        await Promise.all(socks.map((s) => once(s, "connect")));
        const ctl = io(URL, {{forceNew: true, auth: {{name: "ctl"}}}});
        await once(ctl, "connect");
        {body}
    """


def named_server():
    io = roomcast.Server()
    by_name = {}

    @io.on("connection")
    def connection(socket):
        name = socket.handshake["auth"]["name"]
        by_name[name] = socket
        if name != "ctl":
            socket.join(["clients", "odd" if int(name[1:]) % 2 else "even"])

    return io, by_name


def test_broadcast_acks_with_timeout_and_partial_responses(serve, run_js):
    io, by_name = named_server()
    outcomes = {}

    @io.on("connection")
    def connection(socket):
        @socket.on("go")
        def go(ack):
            io.to("even").timeout(2).emit("q", callback=lambda err, res: outcomes.update(
                all=(err, sorted(res))))
            io.to("clients").timeout(0.1).emit("q", callback=lambda err, res: outcomes.update(
                partial=(err, sorted(res))))
            outcomes["with_ack"] = sorted(io.to("even").timeout(2).emit_with_ack("q"))
            try:
                io.to("clients").timeout(0.2).emit_with_ack("q")
            except TimeoutError as exc:
                outcomes["blocking_error"] = str(exc)
            outcomes["nobody"] = io.to("no-such-room").timeout(1).emit_with_ack("q")
            ack()

    # even clients answer with their index; odd ones never answer
    run_js(clients_script(4, 'await ctl.emitWithAck("go"); done(null);',
                          answer='s.on("q", (cb) => { if (i % 2 === 0) cb(i); });'),
           serve(io))
    err, responses = outcomes["all"]
    assert err is None and responses == [0, 2]
    err, responses = outcomes["partial"]
    assert isinstance(err, TimeoutError) and str(err) == "operation has timed out"
    assert responses == [0, 2]
    assert outcomes["with_ack"] == [0, 2]
    assert outcomes["blocking_error"] == "operation has timed out"
    assert outcomes["nobody"] == []


def test_fetch_sockets_and_their_operations(serve, run_js):
    io, by_name = named_server()
    report = {}

    @io.on("connection")
    def connection(socket):
        @socket.on("go")
        def go(ack):
            odd = io.in_("odd").fetch_sockets()
            report["odd"] = sorted(s.handshake["auth"]["name"] for s in odd)
            report["all"] = len(io.fetch_sockets())
            report["except"] = len(io.except_("odd").fetch_sockets())
            for s in odd:
                s.data["seen"] = True
                s.emit("direct", s.handshake["auth"]["name"])
                s.join("picked")
            report["picked_rooms"] = sorted(r for r in odd[0].rooms if r != odd[0].id)
            io.to("picked").emit("picked")
            io.to("clients").emit("end")   # each client's last event: all before it arrived
            ack()

    result = run_js(clients_script(4, """
        const got = socks.map((s) => { const evs = []; s.onAny((ev, ...a) => evs.push([ev, ...a])); return evs; });
        const ends = Promise.all(socks.map((s) => once(s, "end")));
        await ctl.emitWithAck("go");
        await ends;
        done(got.map((evs) => evs.filter(([ev]) => ev !== "end")));
    """), serve(io))
    assert report["odd"] == ["c1", "c3"]
    assert report["all"] == 5 and report["except"] == 3
    assert report["picked_rooms"] == ["clients", "odd", "picked"]
    assert result == [[], [["direct", "c1"], ["picked"]], [], [["direct", "c3"], ["picked"]]]
    assert by_name["c1"].data == {"seen": True}


def test_sockets_join_and_sockets_leave(serve, run_js):
    io, by_name = named_server()
    rooms = {}

    @io.on("connection")
    def connection(socket):
        @socket.on("go")
        def go(ack):
            io.in_("even").sockets_join(["team", "extra"])
            io.in_("c1").sockets_join("team")          # a socket id is a room: here the name
            io.in_(by_name["c3"].id).sockets_join("team")
            rooms["team"] = sorted(s.handshake["auth"]["name"]
                                   for s in io.in_("team").fetch_sockets())
            io.in_("team").except_("odd").sockets_leave("team")
            rooms["after"] = sorted(s.handshake["auth"]["name"]
                                    for s in io.in_("team").fetch_sockets())
            rooms["extra"] = sorted(s.handshake["auth"]["name"]
                                    for s in io.in_("extra").fetch_sockets())
            io.sockets_leave("extra")
            rooms["extra-gone"] = io.sockets.adapter.has_room("extra")
            ack()

    run_js(clients_script(4, 'await ctl.emitWithAck("go"); done(null);'), serve(io))
    assert rooms == {"team": ["c0", "c2", "c3"], "after": ["c3"], "extra": ["c0", "c2"],
                     "extra-gone": False}


def test_adapter_events(serve, run_js, wait_for):
    io = roomcast.Server()
    events = []
    adapter = io.sockets.adapter
    for name in ("create-room", "delete-room", "join-room", "leave-room"):
        adapter.on(name, lambda *args, name=name: events.append((name, *args)))
    ids = []

    @io.on("connection")
    def connection(socket):
        ids.append(socket.id)
        socket.join("lobby")
        socket.leave("lobby")
        socket.join("game")

    run_js("""
        const s = io(URL);
        await once(s, "connect");
        const sent = once(s.io.engine, "drain");   // the DISCONNECT packet is written
        s.disconnect();
        await sent;
        done(null);
    """, serve(io))
    wait_for(lambda: ("delete-room", "game") in events, "the disconnect's room events")
    sid = ids[0]
    assert events == [
        ("create-room", sid), ("join-room", sid, sid),
        ("create-room", "lobby"), ("join-room", "lobby", sid),
        ("leave-room", "lobby", sid), ("delete-room", "lobby"),
        ("create-room", "game"), ("join-room", "game", sid),
        ("leave-room", sid, sid), ("delete-room", sid),
        ("leave-room", "game", sid), ("delete-room", "game"),
    ]


def test_remote_socket_operations_go_through_the_adapter(serve, run_js):
    io = roomcast.Server()
    results = {}

    @io.on("connection")
    def connection(socket):
        @socket.on("go")
        def go(ack):
            remote = RemoteSocket(io.sockets.adapter, {"id": socket.id, "handshake": {},
                                                       "rooms": [socket.id], "data": {"x": 1}})
            remote.emit("via-remote", 1)
            results["single"] = remote.timeout(2).emit_with_ack("question")
            remote.timeout(2).emit("question", callback=lambda err, res: (
                results.update(callback=(err, res)), socket.emit("callback ran")))
            remote.join("r")
            results["joined"] = "r" in socket.rooms
            remote.leave("r")
            results["left"] = "r" not in socket.rooms
            ack()

    result = run_js("""
        const s = io(URL);
        s.on("question", (cb) => cb("answer"));
        const via = once(s, "via-remote"), callbackRan = once(s, "callback ran");
        await s.emitWithAck("go");
        await callbackRan;
        done(await via);
    """, serve(io))
    assert result == [1]
    assert results == {"single": "answer", "callback": (None, "answer"), "joined": True,
                       "left": True}


def test_server_side_emit_on_a_single_server(wait_for):
    io = roomcast.Server()
    responses = []
    io.server_side_emit("hello", 1, callback=lambda err, res: responses.append((err, res)))
    assert responses == [(None, [])]
    assert io.server_side_emit_with_ack("hello") == []
    # what a cluster adapter delivers from another node reaches io.on(event)
    got = []
    io.on("from-peer", lambda *args: got.append(args))
    io.sockets._on_server_side_emit(["from-peer", "a", 2])
    wait_for(lambda: got, "the handler")
    assert got == [("a", 2)]
    io.close()


def test_parent_namespace_fetch_sockets_is_refused():
    import re

    import pytest

    io = roomcast.Server()
    parent = io.of(re.compile(r"^/p-\d+$"))
    with pytest.raises(NotImplementedError):
        parent.fetch_sockets()
    io.close()

"""Disconnections: reasons on both sides, server-side disconnect, reconnection, timeouts."""
from __future__ import annotations

import pytest

import roomcast
from roomcast.errors import DisconnectedError
from tests.rawclient import RawWebSocket


@pytest.mark.parametrize("transports", ["['websocket']", "['polling']"])
def test_server_namespace_disconnect(serve, run_js, transports, wait_for):
    io = roomcast.Server()
    chat = io.of("/chat")
    reasons = []

    @io.on("connection")
    def connection(socket):
        socket.on("disconnect", lambda reason: reasons.append(("main", reason)))
        socket.on("kick", lambda: socket.disconnect())

    chat.on("connection", lambda s: s.on("ping", lambda ack: ack("pong")))
    result = run_js(f"""
        const main = io(URL, {{transports: {transports}}});
        const chat = io(URL + "/chat", {{transports: {transports}}});
        await Promise.all([once(main, "connect"), once(chat, "connect")]);
        main.emit("kick");
        const [reason] = await once(main, "disconnect");
        const chatAnswer = await chat.emitWithAck("ping");
        done({{reason, reconnecting: main.active, connected: main.connected, chat: chatAnswer}});
    """, serve(io))
    # the other namespace keeps the connection; the kicked one does not come back
    assert result == {"reason": "io server disconnect", "reconnecting": False,
                      "connected": False, "chat": "pong"}
    wait_for(lambda: reasons, "the server's disconnect handler")
    assert reasons == [("main", "server namespace disconnect")]


def test_disconnect_close_closes_the_whole_connection(serve, run_js, wait_for):
    io = roomcast.Server()
    chat = io.of("/chat")
    reasons = []
    for nsp in (io.sockets, chat):
        nsp.on("connection", lambda s: s.on("disconnect", lambda r, s=s: reasons.append(
            (s.nsp.name, r))))
    chat.on("connection", lambda s: s.on("close-all", lambda: s.disconnect(close=True)))
    result = run_js("""
        const main = io(URL), chat = io(URL + "/chat");
        await Promise.all([once(main, "connect"), once(chat, "connect")]);
        const gone = Promise.all([once(main, "disconnect"), once(chat, "disconnect")]);
        chat.emit("close-all");
        const reasons = (await gone).map(([r]) => r);
        await until(() => main.io.engine.readyState === "closed", "the Engine.IO connection to close");
        done({reasons, engine: main.io.engine.readyState});
    """, serve(io))
    assert result == {"reasons": ["io server disconnect"] * 2, "engine": "closed"}
    wait_for(lambda: len(reasons) == 2, "both namespaces' disconnect handlers")
    assert sorted(reasons) == [("/", "server namespace disconnect"),
                               ("/chat", "server namespace disconnect")]


def test_closed_connection_reconnects_with_a_new_socket(serve, run_js):
    io = roomcast.Server()
    connections, reasons = [], []

    @io.on("connection")
    def connection(socket):
        connections.append(socket.id)
        socket.on("disconnect", reasons.append)
        if len(connections) == 1:
            socket.on("drop", lambda: socket.conn.close())
        else:
            socket.emit("second")

    result = run_js("""
        const s = io(URL, {reconnectionDelay: 50, reconnectionDelayMax: 50});
        await once(s, "connect");
        const first = s.id;
        const second = once(s, "second");
        s.emit("drop");
        const [reason] = await once(s, "disconnect");
        await second;
        done({reason, changed: first !== s.id});
    """, serve(io))
    assert result == {"reason": "transport close", "changed": True}
    assert reasons[0] == "forced close" and len(connections) == 2


def test_client_side_reasons(serve, run_js, wait_for):
    io = roomcast.Server()
    reasons = []
    io.on("connection", lambda s: s.on("disconnect", reasons.append))
    url = serve(io)
    run_js("""
        const a = io(URL, {forceNew: true}), b = io(URL, {forceNew: true});
        await Promise.all([once(a, "connect"), once(b, "connect")]);
        const sent = Promise.all([once(a.io.engine, "drain"), once(b.io.engine, "close")]);
        a.disconnect();                 // DISCONNECT packet: client namespace disconnect
        b.io.engine.close();            // Engine.IO close packet: transport close
        await sent;                     // both are written
        done(null);
    """, url)
    wait_for(lambda: len(reasons) == 2, "both disconnect reasons")
    assert sorted(reasons) == ["client namespace disconnect", "transport close"]


def test_disconnect_sockets_of_a_room(serve, run_js):
    io = roomcast.Server()
    reasons = []

    @io.on("connection")
    def connection(socket):
        socket.join(socket.handshake["auth"]["room"])
        socket.on("disconnect", lambda reason: reasons.append((socket.handshake["auth"]["room"],
                                                               reason)))
        socket.on("go", lambda ack: (io.in_("kick").disconnect_sockets(), ack()))

    url = serve(io)
    result = run_js("""
        const kicked = io(URL, {forceNew: true, auth: {room: "kick"}});
        const kept = io(URL, {forceNew: true, auth: {room: "keep"}});
        await Promise.all([once(kicked, "connect"), once(kept, "connect")]);
        const gone = once(kicked, "disconnect");
        await kept.emitWithAck("go");
        const [reason] = await gone;
        done({reason, kept: kept.connected});
    """, url)
    assert result == {"reason": "io server disconnect", "kept": True}
    assert reasons[0] == ("kick", "server namespace disconnect")


@pytest.mark.parametrize("transports", ["['websocket']", "['polling']", "['polling', 'websocket']"])
def test_server_close_disconnects_everyone(serve, start_js, transports, wait_for):
    io = roomcast.Server()
    reasons, ready = [], []

    @io.on("connection")
    def connection(socket):
        socket.on("disconnect", reasons.append)
        socket.on("ready", lambda: ready.append(socket.conn.transport))

    url = serve(io)
    handle = start_js(f"""
        const s = io(URL, {{reconnection: false, transports: {transports}}});
        await once(s, "connect");
        if (s.io.engine.transport.name !== {transports}.at(-1)) await once(s.io.engine, "upgrade");
        const gone = once(s, "disconnect");
        s.emit("ready");
        const [reason] = await gone;
        done(reason);
    """, url)
    wait_for(lambda: ready, "the client to be ready")
    io.close()
    assert handle.result() == "transport close"
    assert reasons == ["server shutting down"]


def test_connection_without_namespace_is_closed_after_connect_timeout(serve):
    io = roomcast.Server(connect_timeout=0.2)
    url = serve(io)
    idle, joined = RawWebSocket(url), RawWebSocket(url)
    idle.recv(), joined.recv()
    joined.send("40")
    assert joined.recv().startswith("40{")
    assert idle.wait_closed(timeout=3)
    joined.send('42["still"]')     # the joined one stays open
    assert not joined.wait_closed(timeout=0.4)
    idle.close(), joined.close()


def test_blocking_emit_with_ack_fails_when_socket_disconnects(serve, run_js, wait_for):
    io = roomcast.Server()
    outcome = []

    @io.on("connection")
    def connection(socket):
        try:
            socket.emit_with_ack("never-acked")
        except DisconnectedError as exc:
            outcome.append(str(exc))

    run_js("""
        const s = io(URL);
        await once(s, "never-acked");
        const sent = once(s.io.engine, "drain");   // the DISCONNECT packet is written
        s.disconnect();
        await sent;
        done(null);
    """, serve(io))
    wait_for(lambda: outcome, "the DisconnectedError")
    assert outcome == ["client namespace disconnect"]


def test_namespace_can_be_joined_again_on_the_same_connection(serve, run_js):
    io = roomcast.Server()
    io.of("/keep")   # a second namespace keeps the client's Manager (and connection) open
    ids, conns = [], []

    @io.on("connection")
    def connection(socket):
        ids.append(socket.id)
        conns.append(socket.conn)
        socket.on("kick", lambda: socket.disconnect())
        socket.emit("hello", len(ids))

    result = run_js("""
        const keep = io(URL + "/keep");
        const s = io(URL);
        await once(keep, "connect");
        const [first] = await once(s, "hello");
        s.emit("kick");
        await once(s, "disconnect");
        s.connect();                      // same Manager, same Engine.IO connection
        const [second] = await once(s, "hello");
        done([first, second]);
    """, serve(io))
    assert result == [1, 2]
    assert ids[0] != ids[1] and conns[0] is conns[1]

"""Many concurrent clients: one broadcast reaches each of them exactly once."""
from __future__ import annotations

import gevent

import roomcast

CLIENTS = 200


def test_200_clients_each_receive_one_broadcast_exactly_once(serve, run_js):
    io = roomcast.Server()
    connected = []

    @io.on("connection")
    def connection(socket):
        index = socket.handshake["auth"]["i"]
        # overlapping rooms: every client is in two or three of them
        socket.join([f"mod{index % 3}", f"half{index % 2}", "everyone"])
        connected.append(socket)
        socket.on("go", lambda ack: (
            io.to(["mod0", "mod1", "mod2", "half0", "half1", "everyone"]).emit(
                "news", {"n": 1}, b"\x01\x02"),
            io.emit("end"), ack()))

    result = run_js(f"""
        const modes = [["websocket"], ["polling"], ["polling", "websocket"]];
        const socks = [];
        const counts = new Array({CLIENTS}).fill(0);
        const ends = [];
        for (let i = 0; i < {CLIENTS}; i++) {{
            const s = io(URL, {{forceNew: true, transports: modes[i % 3], auth: {{i}}}});
            s.on("news", (data, bin) => {{
                if (data.n === 1 && bin.length === 2) counts[i]++;
            }});
            ends.push(once(s, "end"));
            socks.push(s);
        }}
        await Promise.all(socks.map((s) => s.connected ? null : once(s, "connect")));
        await socks[0].emitWithAck("go");
        await Promise.all(ends);   // "end" follows the news on each connection: a duplicate came before it
        done(counts);
    """, serve(io), timeout=30)
    assert result == [1] * CLIENTS
    assert len(connected) == CLIENTS


def test_broadcast_with_ack_from_200_clients(serve, run_js, start_js, wait_for):
    io = roomcast.Server()
    url = serve(io)
    handle = start_js(f"""
        const socks = [];
        for (let i = 0; i < {CLIENTS}; i++) {{
            const s = io(URL, {{forceNew: true, transports: ["websocket"]}});
            s.on("q", (cb) => cb(i));
            socks.push(s);
        }}
        await Promise.all(socks.map((s) => once(s, "connect")));
        await once(socks[0], "finish");
        done(null);
    """, url, timeout=30)
    wait_for(lambda: len(io.sockets.sockets) == CLIENTS, f"{CLIENTS} clients", timeout=20)
    responses = io.timeout(10).emit_with_ack("q")
    io.emit("finish")
    handle.result()
    assert sorted(responses) == list(range(CLIENTS))

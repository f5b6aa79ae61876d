"""Intersection targeting: io.to(a).intersect(b, c) reaches the sockets in every room."""
from __future__ import annotations

import pytest

import roomcast

# client i is in "all", and in "b0"/"b1"/"b2" when bit 0/1/2 of i is set
CLIENTS = 8


def bit_rooms(i: int) -> list[str]:
    return ["all"] + [f"b{bit}" for bit in range(3) if i >> bit & 1]


def script(nsp: str) -> str:
    """CLIENTS clients on nsp, each recording what it gets until "end"; client c<i> sends
    "go" with its index when the body says so."""
    return f"""
        const socks = [], got = [], ended = [];
        for (let i = 0; i < {CLIENTS}; i++) {{
            const s = io(URL + "{nsp}", {{forceNew: true, auth: {{i}}}});
            got.push([]);
            s.onAny((ev, ...args) => {{ if (ev !== "end") got[i].push([ev, ...args]); }});
            s.on("q", (cb) => cb(i));
            ended.push(once(s, "end"));
            socks.push(s);
        }}
        await Promise.all(socks.map((s) => once(s, "connect")));
        await socks[0].emitWithAck("go");
        await Promise.all(ended);
        done(got);
    """


def receivers(got: list, event: str) -> list[int]:
    return [i for i, events in enumerate(got) if any(e[0] == event for e in events)]


@pytest.mark.parametrize("nsp", ["/", "/chat"])
def test_intersections_from_server_and_namespace(serve, run_js, nsp):
    io = roomcast.Server()
    target = io if nsp == "/" else io.of(nsp)
    report = {}

    @target.on("connection")
    def connection(socket):
        socket.join(bit_rooms(socket.handshake["auth"]["i"]))

        @socket.on("go")
        def go(ack):
            target.to("all").intersect("b0", "b1").emit("ab", 1)
            target.intersect("b0", "b2").emit("only-intersect")
            target.intersect(["b0", "b2"]).emit("as-list")
            target.to("b0").intersect("b1").except_("b2").emit("with-except")
            target.to(["b1", "b2"]).intersect("b0").emit("union-then-and")
            target.to("all").intersect("b0", "nowhere").emit("unknown-room")
            report["fetch"] = sorted(s.handshake["auth"]["i"]
                                     for s in target.to("b1").intersect("b2").fetch_sockets())
            report["acks"] = sorted(target.to("all").intersect("b1").timeout(5).emit_with_ack("q"))
            target.emit("end")
            ack()

    got = run_js(script(nsp if nsp != "/" else ""), serve(io))
    assert receivers(got, "ab") == [3, 7]
    assert got[3][0] == ["ab", 1]
    assert receivers(got, "only-intersect") == [5, 7]
    assert receivers(got, "as-list") == [5, 7]
    assert receivers(got, "with-except") == [3]
    assert receivers(got, "union-then-and") == [3, 5, 7]
    assert receivers(got, "unknown-room") == []
    assert report["fetch"] == [6, 7]
    assert report["acks"] == [2, 3, 6, 7]


def test_intersections_from_a_socket_exclude_the_sender(serve, run_js):
    io = roomcast.Server()
    sockets = {}

    @io.on("connection")
    def connection(socket):
        i = socket.handshake["auth"]["i"]
        sockets[i] = socket
        socket.join(bit_rooms(i))

        @socket.on("go")
        def go(ack):
            sockets[3].to("b0").intersect("b1").emit("from-3")
            sockets[4].broadcast.intersect("b2").emit("from-4")
            sockets[7].intersect("b0", "b1").except_("b2").emit("from-7")
            sockets[5].to("all").intersect("b2").compress(False).emit("flagged-from-5")
            io.emit("end")
            ack()

    got = run_js(script(""), serve(io))
    assert receivers(got, "from-3") == [7]
    assert receivers(got, "from-4") == [5, 6, 7]
    assert receivers(got, "from-7") == [3]
    assert receivers(got, "flagged-from-5") == [4, 6, 7]

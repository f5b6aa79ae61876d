"""roomcast.Emitter publishing into a cluster of real Node Socket.IO servers
(@socket.io/redis-adapter 8.3) and of roomcast servers, received by the real JS client;
and Node's @socket.io/redis-emitter 5.1 reaching roomcast clients."""
from __future__ import annotations

import datetime as dt

import pytest
import redis

from roomcast import Emitter

CLIENTS = """
const opts = (rooms) => ({ transports: ["websocket"], query: rooms ? { rooms } : {} });
const got = { a: [], b: [], c: [] };
const a = io(URL, opts("r1"));
const b = io(URL, opts("r2"));
const c = io(URL + "/custom", opts("r1"));
let ended = 0;
for (const [name, s] of Object.entries({ a, b, c })) {
  s.onAny((ev, ...args) => {
    if (ev === "end") { if (++ended === 3) done(got); return; }
    got[name].push([ev, ...args]);
  });
  s.on("disconnect", (reason) => got[name].push(["disconnected", reason]));
}
"""


@pytest.mark.parametrize("kind", ["node", "roomcast"])
def test_emitter_reaches_clients(kind, cluster, start_js, redis_url, redis_key):
    node = cluster(kind)
    clients = start_js(CLIENTS, node.url)
    node.wait_clients(2)
    node.wait_clients(1, nsp="/custom")

    emitter = Emitter(redis_url, key=redis_key)
    emitter.emit("all", 1, "two", {"three": [3.5, None, True]})
    emitter.to("r1").emit("room", "r1 only")
    emitter.except_("r1").emit("except", "not r1")
    emitter.to(["r1", "r2"]).except_("r2").emit("union", "r1 minus r2")
    emitter.to("r2").emit("binary", b"\x00\x01\xff", {"nested": bytearray(b"\x02")})
    emitter.emit("date", dt.datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=dt.timezone.utc))
    emitter.of("/custom").emit("custom", "only /custom")
    emitter.emit("end")
    emitter.of("/custom").emit("end")

    got = clients.result()
    assert got["a"] == [
        ["all", 1, "two", {"three": [3.5, None, True]}],
        ["room", "r1 only"],
        ["union", "r1 minus r2"],
        ["date", "2024-01-02T03:04:05.678Z"],
    ]
    assert got["b"] == [
        ["all", 1, "two", {"three": [3.5, None, True]}],
        ["except", "not r1"],
        ["binary", b"\x00\x01\xff", {"nested": b"\x02"}],
        ["date", "2024-01-02T03:04:05.678Z"],
    ]
    assert got["c"] == [["custom", "only /custom"]]


@pytest.mark.parametrize("kind", ["node", "roomcast"])
def test_emitter_requests_reach_servers(kind, cluster, start_js, redis_url, redis_key):
    node = cluster(kind)
    clients = start_js("""
        const a = io(URL, { transports: ["websocket"], query: { rooms: "r1" } });
        const b = io(URL, { transports: ["websocket"] });
        const got = [];
        a.on("vip", (x) => got.push(["a", x]));
        b.on("vip", (x) => got.push(["b", x]));
        a.on("disconnect", (reason) => got.push(["a", reason]));
        b.on("after", () => done(got));
    """, node.url)
    node.wait_clients(2)
    emitter = Emitter(redis_url, key=redis_key)

    emitter.to("r1").sockets_join("vip")
    emitter.to("vip").emit("vip", 1)
    emitter.sockets_leave("vip")
    emitter.to("vip").emit("vip", 2)
    emitter.in_("r1").disconnect_sockets(close=True)
    emitter.server_side_emit("server_side", "hello", [1, 2])
    assert node.wait_event()[0]["args"] == ["hello", [1, 2]]
    emitter.emit("after")
    # join/leave are requests and broadcasts are messages on other channels, both from one
    # connection: Redis delivers them in publication order, so this ordering is reliable
    assert clients.result() == [["a", 1], ["a", "io server disconnect"]]


def test_emitter_publishes_nodes_bytes(redis_url, redis_key, in_thread):
    # node-socketio.md section 4: the bytes @socket.io/redis-emitter publishes for
    # emitter.volatile.emit("bin", Buffer.from([1, 2, 3]))
    expected = bytes.fromhex(
        "93a7656d697474657283a47479706502a46461746192a362696ec403010203a36e7370a12f83"
        "a5726f6f6d7390a5666c61677381a8766f6c6174696c65c3a665786365707490")
    sub = redis.Redis.from_url(redis_url).pubsub()
    sub.psubscribe(f"{redis_key}*")
    in_thread(sub.get_message, timeout=1.0)  # the subscribe confirmation
    emitter = Emitter(redis_url, key=redis_key)
    emitter.volatile.emit("bin", b"\x01\x02\x03")
    emitter.to("room1").compress(False).emit("x")
    emitter.of("/chat").to("a").sockets_join(["b", "c"])
    got = [in_thread(sub.get_message, timeout=2.0) for _ in range(3)]
    sub.close()
    assert [(m["channel"], m["data"]) for m in got] == [
        (f"{redis_key}#/#".encode(), expected),
        (f"{redis_key}#/#room1#".encode(), bytes.fromhex(
            "93a7656d697474657283a47479706502a46461746191a178a36e7370a12f83a5726f6f6d7391a5726f6f6d31"
            "a5666c61677381a8636f6d7072657373c2a665786365707490")),
        (f"{redis_key}-request#/chat#".encode(),
         b'{"type":2,"opts":{"rooms":["a"],"except":[]},"rooms":["b","c"]}'),
    ]


def test_emitter_refuses_reserved_events_and_acks(redis_url, redis_key):
    emitter = Emitter(redis_url, key=redis_key)
    for name in ("connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"):
        with pytest.raises(ValueError, match="reserved"):
            emitter.emit(name)
        with pytest.raises(ValueError, match="reserved"):
            emitter.server_side_emit(name)
    with pytest.raises(ValueError, match="acknowledgements"):
        emitter.emit("ev", lambda: None)
    with pytest.raises(ValueError, match="acknowledgements"):
        emitter.server_side_emit("ev", lambda: None)


def test_node_emitter_reaches_roomcast_clients(cluster, start_js, redis_url, redis_key):
    node = cluster("roomcast")
    result = start_js(f"""
        const {{ Emitter }} = require("@socket.io/redis-emitter");
        const {{ createClient }} = require("redis");
        const opts = (rooms) => ({{ transports: ["websocket"], query: rooms ? {{ rooms }} : {{}} }});
        const a = io(URL, opts("r1")), b = io(URL, opts("r2")), c = io(URL + "/custom", opts("r1"));
        const got = {{ a: [], b: [], c: [] }};
        let ended = 0;
        for (const [name, s] of Object.entries({{ a, b, c }})) {{
          s.onAny((ev, ...args) => {{
            if (ev === "end") {{ if (++ended === 3) done(got); return; }}
            got[name].push([ev, ...args]);
          }});
        }}
        await Promise.all([a, b, c].map((s) => once(s, "connect")));
        const client = createClient({{ url: {redis_url!r} }});
        await client.connect();
        const emitter = new Emitter(client, {{ key: {redis_key!r} }});
        emitter.emit("all", 1, {{ two: [2] }});
        emitter.to("r1").emit("room", Buffer.from([1, 2, 3]));
        emitter.except("r1").emit("except", new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 678)));
        emitter.of("/custom").to("r1").emit("custom", "c");
        emitter.in("r2").socketsJoin("joined");
        emitter.to("joined").emit("joined", true);
        emitter.serverSideEmit("server_side", "from node emitter");
        emitter.emit("end");
        emitter.of("/custom").emit("end");
        await client.quit();   // QUIT goes after the PUBLISHes on the same connection
    """, node.url)
    got = result.result()
    assert got["a"] == [["all", 1, {"two": [2]}], ["room", b"\x01\x02\x03"]]
    assert got["b"] == [["all", 1, {"two": [2]}], ["except", "2024-01-02T03:04:05.678Z"], ["joined", True]]
    assert got["c"] == [["custom", "c"]]
    assert node.wait_event()[0]["args"] == ["from node emitter"]


def test_emitter_in_a_process_without_gevent(cluster, start_js, redis_url, redis_key):
    import json
    import os
    import sys
    from pathlib import Path

    import gevent.subprocess

    node = cluster("roomcast")
    client = start_js("""
        const s = io(URL, { transports: ["websocket"] });
        const [msg] = await once(s, "plain");
        done(msg);
    """, node.url)
    node.wait_clients(1)
    code = (
        "import sys\n"
        "from roomcast import Emitter\n"
        f"Emitter({redis_url!r}, key={redis_key!r}).emit('plain', 'no gevent here')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'gevent'))\n"
    )
    import roomcast

    src = Path(roomcast.__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")])))
    out = gevent.subprocess.check_output([sys.executable, "-c", code], env=env)
    assert json.loads(out.decode().replace("'", '"')) == []
    assert client.result() == "no gevent here"

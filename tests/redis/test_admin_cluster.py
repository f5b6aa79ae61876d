"""The Admin UI across a Redis cluster: a UI connected to one server sees both."""
from __future__ import annotations

import redis

import roomcast
from roomcast.adapters.redis import RedisAdapter

# a on server A (red), b on server B (blue); the admin on A only; then c joins B and the
# admin makes the blue sockets join "green" and emit there
SCRIPT = """
    const [urlA, urlB] = URLS;
    const a = io(urlA, {forceNew: true, auth: {room: "red"}});
    const b = io(urlB, {forceNew: true, auth: {room: "blue"}});
    await Promise.all([once(a, "connect"), once(b, "connect")]);
    const seen = [];
    const admin = io(urlA + "/admin", {forceNew: true});
    admin.onAny((ev, ...args) => seen.push([ev, ...args]));
    await once(admin, "connect");
    const has = (pred, what) => until(() => seen.some(pred), what);
    await has(([ev]) => ev === "all_sockets", "all_sockets");
    await has(([ev, s]) => ev === "server_stats" && s.serverId === "srv-b", "B's stats");
    await has(([ev, s]) => ev === "server_stats" && s.serverId === "srv-a", "A's stats");
    const c = io(urlB, {forceNew: true, auth: {room: "blue"}});
    await once(c, "connect");
    await has(([ev, s]) => ev === "socket_connected" && s.id === c.id, "c's socket_connected");
    const greeted = once(b, "hi");
    admin.emit("join", "/", "green", "blue");
    await has(([ev, nsp, room, id]) => ev === "room_joined" && room === "green" && id === b.id,
              "b joining green");
    admin.emit("emit", "/", "green", "hi", "from A's admin");
    const [hi] = await greeted;
    done({seen, hi, a: a.id, b: b.id, c: c.id});
"""


def make_server(redis_url: str, key: str, server_id: str) -> roomcast.Server:
    io = roomcast.Server(adapter=RedisAdapter.factory(redis_url, key=key, requests_timeout=3.0))

    @io.on("connection")
    def connection(socket):
        socket.join(socket.handshake["auth"]["room"])

    io.instrument(server_id=server_id, server_stats_interval=0.2)
    return io


def test_admin_ui_sees_the_whole_cluster(serve, run_js, redis_url, redis_key, wait_for,
                                         in_thread):
    servers = [make_server(redis_url, redis_key, sid) for sid in ("srv-a", "srv-b")]
    urls = [serve(io) for io in servers]

    def request_subscribers() -> int:
        client = redis.Redis.from_url(redis_url)
        try:
            return dict(client.pubsub_numsub(f"{redis_key}-request#/#"))[
                f"{redis_key}-request#/#".encode()]
        finally:
            client.close()
    wait_for(lambda: in_thread(request_subscribers) == 2, "both servers' subscriptions")

    out = run_js(f"const URLS = {urls!r};\n{SCRIPT}", urls[0], timeout=30)
    seen = out["seen"]
    listed = {s["id"]: s for s in next(e[1] for e in seen if e[0] == "all_sockets")}
    # B's socket, fetched through Redis, with its rooms and the admin details B keeps
    assert sorted(listed[out["b"]]["rooms"]) == sorted([out["b"], "blue"])
    assert len(listed[out["b"]]["clientId"]) == 12 and listed[out["b"]]["nsp"] == "/"
    assert sorted(listed[out["a"]]["rooms"]) == sorted([out["a"], "red"])
    assert out["hi"] == "from A's admin"
    # the emit went to green only: a (red) got nothing from the admin
    sent = [e for e in seen if e[0] == "event_sent" and e[3][0] == "hi"]
    assert [e[2] for e in sent] == ["to green"]

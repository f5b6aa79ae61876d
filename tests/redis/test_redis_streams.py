"""The Redis Streams adapter beyond what test_redis_cluster.py covers for every adapter:
connection state recovery across servers (roomcast and Node's
@socket.io/redis-streams-adapter 0.3, either way), the StreamsEmitter reaching both, the
exact stream entries, and a Redis restart during traffic."""
from __future__ import annotations

import json

import pytest
import redis

from tcp_proxy import TcpProxy
from test_redis_cluster import CLIENTS, srt
from test_redis_faults import counted, own_redis  # noqa: F401  (own_redis: a fixture)

from roomcast import StreamsEmitter
from roomcast.adapters._streams_format import decode_entry, encode_entry, stream_name_for

RECOVERING_CLIENT = """
const socket = io(URL, {transports: ["websocket"], query: {rooms: "r1"}, reconnectionDelay: 1500,
                        reconnectionDelayMax: 1500, randomizationFactor: 0});
const got = [], seen = [];
socket.on("news", (n) => { got.push(n); if (got.length <= 2) socket.emit("join", "got" + got.length); });
socket.on("connect", () => seen.push({id: socket.id, recovered: socket.recovered}));
while (seen.length < 2 || got.length < 5) await sleep(20);
return {seen, got};
"""


@pytest.mark.parametrize("kinds", [("roomcast", "roomcast"), ("roomcast", "node"), ("node", "roomcast"),
                                   ("roomcast", "node", "rediscluster")],
                         ids=["roomcast+roomcast", "roomcast+node", "node+roomcast", "rediscluster-roomcast+node"])
def test_a_client_cut_from_one_server_recovers_on_the_other(kinds, cluster, start_js, wait_for,
                                                             request, redis_url):
    options: dict = {"streams": True, "recovery": 30}
    if "rediscluster" in kinds:   # the stream, the sessions and the channels on a Redis Cluster
        redis_url = request.getfixturevalue("redis_cluster_url")
        options.update(redis=redis_url, cluster=True)
    a, b = (cluster(kind, **options) for kind in kinds[:2])
    counted([a, b], 2)
    proxy = TcpProxy("127.0.0.1", a.port)
    stream = (redis.RedisCluster.from_url(redis_url) if "rediscluster" in kinds
              else redis.Redis.from_url(redis_url))
    try:
        run = start_js(RECOVERING_CLIENT, proxy.url, timeout=30)
        a.wait_clients(1)
        a.call("emit", rooms=["r1"], ev="news", args=[0])
        wait_for(lambda: a.call("fetchSockets", rooms=["got1"]), "the client to get it")
        b.call("emit", rooms=["r1"], ev="news", args=[1])     # through the stream
        wait_for(lambda: a.call("fetchSockets", rooms=["got2"]), "the client to get both")
        proxy.target = ("127.0.0.1", b.port)                  # the load balancer moves it
        assert proxy.cut() == 1
        wait_for(lambda: a.call("localCount") == 0, "server a to notice the cut")
        a.call("emit", rooms=["r1"], ev="news", args=[2])     # missed
        wait_for(lambda: stream.xrevrange(a.config["key"], count=1)[0][1][b"data"].find(b'"news",2') > 0,
                 "news 2 in the stream")                  # so that 3 comes after it
        b.call("emit", rooms=["r1"], ev="news", args=[3])     # missed
        b.call("emit", rooms=["r2"], ev="news", args=["not for it"])
        wait_for(lambda: len(b.connections) == 1, "the reconnection to server b")
        b.call("emit", rooms=["r1"], ev="news", args=[4])
        result = run.result()
    finally:
        proxy.close()
        stream.close()
    sid = result["seen"][0]["id"]
    assert result["seen"] == [{"id": sid, "recovered": False}, {"id": sid, "recovered": True}]
    assert result["got"] == [0, 1, 2, 3, 4]
    assert b.connections == [{"nsp": "/", "id": sid, "recovered": True,
                              "rooms": sorted([sid, "r1", "got1", "got2"]),
                              "data": {"origin": a.kind, "port": a.port}}]


def test_streams_emitter_reaches_roomcast_and_node(cluster, start_js, redis_url, wait_for):
    nodes = [cluster("roomcast", streams=True), cluster("node", streams=True)]
    counted(nodes, 2)
    clients = start_js(f"const URLS = {[n.url for n in nodes]!r}; const NSP = '';\n" + CLIENTS, nodes[0].url)
    for node in nodes:
        node.wait_clients(2)
    emitter = StreamsEmitter(redis_url, stream_name=nodes[0].config["key"])
    emitter.to("r1").emit("news", {"n": 1}, b"\x01\x02")
    emitter.except_("r1").emit("news", "not r1")
    emitter.in_("r2").sockets_join("vip")
    wait_for(lambda: len(nodes[1].call("fetchSockets", rooms=["vip"])) == 2, "both r2 sockets in vip")
    emitter.to("vip").emit("vip-news")
    emitter.server_side_emit("server_side", "from the emitter")
    for node in nodes:
        assert node.wait_event()[0]["args"] == ["from the emitter"]
    emitter.emit("end")
    emitter.emit("end")
    got = clients.result()["got"]
    for i in ("0", "1"):
        assert srt(got["a" + i]) == srt([["news", {"n": 1}, b"\x01\x02"]])
        assert srt(got["b" + i]) == srt([["news", "not r1"], ["vip-news"]])
    with pytest.raises(ValueError):
        emitter.emit("connect")


def test_stream_entries_are_nodes(cluster, redis_url, wait_for):
    """What a roomcast server writes is what Node's adapter writes: the same fields, the
    same JSON; and a namespace's stream with several streams is Node's choice."""
    node = cluster("roomcast", streams=True)
    key = node.config["key"]
    client = redis.Redis.from_url(redis_url)
    try:
        node.call("emit", rooms=["r1"], ev="news", args=["héllo", 1.5, None])
        entries = wait_for(lambda: client.xrange(key), "the entry in the stream")
        fields = entries[-1][1]
        assert list(fields) == [b"uid", b"nsp", b"type", b"data"]
        assert fields[b"type"] == b"3" and fields[b"nsp"] == b"/"
        assert fields[b"data"].decode() == json.dumps(
            {"packet": {"type": 2, "data": ["news", "héllo", 1.5, None]},
             "opts": {"rooms": ["r1"], "except": [], "flags": {}}}, separators=(",", ":"), ensure_ascii=False)
        assert client.xinfo_stream(key)["length"] >= 1
    finally:
        client.close()
    binary = encode_entry({"uid": "u", "nsp": "/", "type": 3, "data": {"packet": {"data": [b"\x00"]}}})
    assert decode_entry(binary)["data"] == {"packet": {"data": [b"\x00"]}}
    # only_plaintext: bytes as JSON.stringify writes a Buffer
    plain = encode_entry({"uid": "u", "nsp": "/", "type": 3, "data": {"packet": {"data": [b"\x00\x07"]}}},
                         only_plaintext=True)
    assert plain["data"] == '{"packet":{"data":[{"type":"Buffer","data":[0,7]}]}}'
    # JavaScript: (hashCode("/custom") | 0) % 3 === 2, hashCode("/") % 2 === 1
    assert stream_name_for("/custom", "s", 3) == "s-2" and stream_name_for("/", "s", 2) == "s-1"


def test_redis_restarted_during_traffic_loses_nothing_published_after(cluster, own_redis, start_js,  # noqa: F811
                                                                      wait_for):
    nodes = [cluster("roomcast", redis=own_redis.url, streams=True),
             cluster("node", redis=own_redis.url, streams=True)]
    n0, n1 = nodes
    counted(nodes, 2)
    clients = start_js(f"const URLS = {[n.url for n in nodes]!r}; const NSP = '';\n" + CLIENTS, n0.url)
    for node in nodes:
        node.wait_clients(2)
    for i, node in enumerate(nodes):   # through the stream: once both read it, both have an offset
        node.call("socketsJoin", join=f"j{i}")
        wait_for(lambda: len(nodes[1 - i].call("fetchSockets", rooms=[f"j{i}"])) == 4, "the join everywhere")
    own_redis.stop()
    n0.call("emit", ev="during", args=[2])      # Redis away: may be lost to the other node
    own_redis.start()
    # at once, while the readers are still reconnecting: they must go on from where they were
    for seq in range(10):
        nodes[seq % 2].call("emit", ev="after", args=[seq])
    for node in nodes:
        node.call("emit", ev="end")
    got = clients.result()["got"]
    for name, messages in got.items():
        after = [m for m in messages if m[0] == "after"]
        assert srt(after) == srt([["after", seq] for seq in range(10)]), name
    assert "Traceback" not in n0.stderr
    assert "reading" in n0.stderr   # the reader said it lost Redis, and that it reads again

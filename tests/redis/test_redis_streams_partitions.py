"""The Redis Streams adapter's partitions and encodings against Node's
@socket.io/redis-streams-adapter 0.3.1, end to end: ``streamCount`` (each namespace on
``<streamName>-<hashCode(nsp) % streamCount>``), the two encodings of an entry's data
(base64 msgpack when it holds binary, or JSON only with ``onlyPlaintext``) and
``useShardedPubSub`` (SPUBLISH/SSUBSCRIBE for the requests and their answers)."""
from __future__ import annotations

import pytest
import redis

from tcp_proxy import TcpProxy
from test_redis_cluster import CLIENTS, srt
from test_redis_faults import counted
from test_redis_streams import RECOVERING_CLIENT

from roomcast.adapters._streams_format import decode_entry, stream_name_for

# 4 streams: "/" on <key>-3 and "/custom" on <key>-0 (3 would put both on -2)
STREAMS = 4
OPTIONS = {"plaintext": {"streams": True, "streamCount": STREAMS, "onlyPlaintext": True},
           "msgpack+sharded": {"streams": True, "streamCount": STREAMS, "useShardedPubSub": True}}
BINARY = b"\x01\x02"
# what JSON.stringify makes of a Buffer: onlyPlaintext's remote receivers get this object
AS_JSON = {"type": "Buffer", "data": [1, 2]}


def _stream_join(nodes, nsp, wait_for):
    """Joins through each node's stream, seen everywhere: both read the partition now."""
    for i, node in enumerate(nodes):
        node.call("socketsJoin", nsp=nsp, join=f"j{i}")
        wait_for(lambda: len(nodes[1 - i].call("fetchSockets", nsp=nsp, rooms=[f"j{i}"])) == 4,
                 f"the join of {nsp} everywhere")


@pytest.mark.parametrize("encoding", list(OPTIONS))
def test_partitioned_streams_between_roomcast_and_node(encoding, cluster, start_js, redis_url, wait_for):
    options = OPTIONS[encoding]
    nodes = [cluster("roomcast", **options), cluster("node", **options)]
    key = nodes[0].config["key"]
    counted(nodes, 2)
    runs = {nsp: start_js(f"const URLS = {[n.url for n in nodes]!r}; const NSP = {nsp!r};\n" + CLIENTS,
                          nodes[0].url) for nsp in ("", "/custom")}
    for nsp in ("/", "/custom"):
        for node in nodes:
            node.wait_clients(2, nsp=nsp)
        _stream_join(nodes, nsp, wait_for)
    for nsp in ("/", "/custom"):
        for node in nodes:
            node.call("emit", nsp=nsp, rooms=["r1"], ev="news", args=[node.kind, BINARY])
            node.call("emit", nsp=nsp, rooms=["r2"], ev="text", args=[node.kind, nsp])
            node.call("emit", nsp=nsp, ev="end")
    # requests over (sharded) pub/sub, both ways, answered by the other node
    for i, node in enumerate(nodes):
        other = nodes[1 - i]
        answers = node.call("serverSideEmitWithAck", ev="server_side", args=["from", node.kind])
        assert answers == [{"from": other.kind, "port": other.port, "args": ["from", node.kind]}]
        assert other.wait_event(1)[-1]["args"] == ["from", node.kind]

    for nsp, run in runs.items():
        got = run.result()["got"]
        for i, node in enumerate(nodes):
            remote = AS_JSON if encoding == "plaintext" else BINARY   # as seen from the other node
            assert srt(got[f"a{i}"]) == srt([["news", node.kind, BINARY],
                                             ["news", nodes[1 - i].kind, remote]]), (nsp, i)
            assert srt(got[f"b{i}"]) == srt([["text", kind, nsp or "/"] for kind in ("roomcast", "node")])

    # the entries of both servers, on the same stream of the namespace, encoded alike
    client = redis.Redis.from_url(redis_url)
    try:
        if encoding != "plaintext":   # the requests went over sharded pub/sub
            assert client.execute_command("PUBSUB", "SHARDNUMSUB", f"{key}#/#")[1] == 2
        streams = {i: [fields for _, fields in client.xrange(f"{key}-{i}")] for i in range(STREAMS)}
        for nsp, partition in (("/", 3), ("/custom", 0)):   # JavaScript: hashCode(nsp) % 4
            assert stream_name_for(nsp, key, STREAMS) == f"{key}-{partition}"
            for i, entries in streams.items():
                mine = [fields for fields in entries if fields[b"nsp"] == nsp.encode()]
                assert bool(mine) == (i == partition), (nsp, i)
            news = [fields for fields in streams[partition] if fields[b"nsp"] == nsp.encode()
                    and decode_entry(fields)["data"].get("packet", {}).get("data", [None])[0] == "news"]
            assert len(news) == 2 and len({fields[b"uid"] for fields in news}) == 2   # one per server
            for fields in news:
                assert fields[b"data"].startswith(b"{") == (encoding == "plaintext")
                assert decode_entry(fields)["data"]["packet"]["data"][2] == (
                    AS_JSON if encoding == "plaintext" else BINARY)
        assert not client.exists(key)   # nothing on the unpartitioned name
    finally:
        client.close()


@pytest.mark.parametrize("kinds,encoding", [(("node", "roomcast"), "plaintext"),
                                            (("roomcast", "node"), "msgpack+sharded")],
                         ids=["node+roomcast-plaintext", "roomcast+node-msgpack+sharded"])
def test_partitioned_recovery_across_roomcast_and_node(kinds, encoding, cluster, start_js, wait_for,
                                                       redis_url):
    a, b = (cluster(kind, recovery=30, **OPTIONS[encoding]) for kind in kinds)
    counted([a, b], 2)
    stream_key = stream_name_for("/", a.config["key"], STREAMS)
    proxy = TcpProxy("127.0.0.1", a.port)
    stream = redis.Redis.from_url(redis_url)
    try:
        run = start_js(RECOVERING_CLIENT, proxy.url, timeout=30)
        a.wait_clients(1)
        a.call("emit", rooms=["r1"], ev="news", args=[0])
        wait_for(lambda: a.call("fetchSockets", rooms=["got1"]), "the client to get it")
        b.call("emit", rooms=["r1"], ev="news", args=[1])     # through the partition
        wait_for(lambda: a.call("fetchSockets", rooms=["got2"]), "the client to get both")
        proxy.target = ("127.0.0.1", b.port)
        assert proxy.cut() == 1
        wait_for(lambda: a.call("localCount") == 0, "server a to notice the cut")
        a.call("emit", rooms=["r1"], ev="news", args=[2])     # missed
        wait_for(lambda: b'"news",2' in stream.xrevrange(stream_key, count=1)[0][1][b"data"],
                 "news 2 in the namespace's stream")
        b.call("emit", rooms=["r1"], ev="news", args=[3])     # missed
        b.call("emit", rooms=["r2"], ev="news", args=["not for it"])
        wait_for(lambda: len(b.connections) == 1, "the reconnection to server b")
        b.call("emit", rooms=["r1"], ev="news", args=[4])
        result = run.result()
        assert not stream.exists(a.config["key"])
    finally:
        proxy.close()
        stream.close()
    sid = result["seen"][0]["id"]
    assert result["seen"] == [{"id": sid, "recovered": False}, {"id": sid, "recovered": True}]
    assert result["got"] == [0, 1, 2, 3, 4]
    assert b.connections[0]["recovered"] is True and b.connections[0]["id"] == sid

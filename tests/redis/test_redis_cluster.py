"""Clusters sharing one Redis through the classic pub/sub adapter, with the real JS
client on every node: two roomcast processes, and mixed clusters of a roomcast process
and a Node process (socket.io 4.8 + @socket.io/redis-adapter 8.3, or
@socket.io/redis-streams-adapter 0.3). Every operation is
issued from both nodes, so each side is exercised as the sender and the receiver."""
from __future__ import annotations

import time

import pytest

from redis_nodes import ClusterNode, delete_keys, new_key

CLUSTERS = {
    "roomcast+roomcast": (("roomcast", "roomcast"), {}),
    "roomcast+node": (("roomcast", "node"), {}),
    "node+roomcast": (("node", "roomcast"), {}),
    # Redis 7 sharded pub/sub (SSUBSCRIBE / SPUBLISH), Node's createShardedAdapter
    "sharded-roomcast+roomcast": (("roomcast", "roomcast"), {"sharded": True}),
    "sharded-roomcast+node": (("roomcast", "node"), {"sharded": True}),
    "sharded-static-node+roomcast": (("node", "roomcast"), {"sharded": True, "subscriptionMode": "static"}),
    "sharded-private-roomcast+node": (("roomcast", "node"),
                                      {"sharded": True, "subscriptionMode": "dynamic-private"}),
    # a 3-primary Redis Cluster: the classic adapter, and the sharded one
    "rediscluster-roomcast+node": (("roomcast", "node"), {"cluster": True}),
    "rediscluster-sharded-roomcast+node": (("roomcast", "node"), {"cluster": True, "sharded": True}),
    "rediscluster-sharded-static-roomcast+node": (("roomcast", "node"),
                                                  {"cluster": True, "sharded": True,
                                                   "subscriptionMode": "static"}),
    "rediscluster-sharded-roomcast+roomcast": (("roomcast", "roomcast"), {"cluster": True, "sharded": True}),
    # Redis Streams (roomcast's RedisStreamsAdapter, Node's @socket.io/redis-streams-adapter 0.3)
    "streams-roomcast+roomcast": (("roomcast", "roomcast"), {"streams": True}),
    "streams-node+roomcast": (("node", "roomcast"), {"streams": True}),
    "rediscluster-streams-roomcast+node": (("roomcast", "node"), {"cluster": True, "streams": True}),
}

# Per node, client "a<i>" in room r1 and "b<i>" in room r2. They record what they get,
# answer acks with their own name, and finish when "end" came from every node (one
# node's messages keep their order; messages of different nodes may interleave).
# ENDS (default 1) is the number of "end"s each node sends every client.
CLIENTS = """
const ENDS_PER_NODE = typeof ENDS === "undefined" ? 1 : ENDS;
const got = {}, ids = {};
let ended = 0, total = 0;
for (const [i, url] of URLS.entries()) {
  for (const [name, rooms] of [["a", "r1"], ["b", "r2"]]) {
    const key = name + i;
    got[key] = [];
    total++;
    const s = io(url + NSP, { transports: ["websocket"], query: { rooms } });
    s.on("connect", () => { ids[key] = s.id; });
    s.onAny((ev, ...args) => {
      if (ev === "end") { if (++ended === total * URLS.length * ENDS_PER_NODE) done({ got, ids }); return; }
      const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
      got[key].push([ev, ...args]);
      if (ack) ack(key);
    });
    s.on("disconnect", (reason) => {
      got[key].push(["disconnected", reason]);
      // a disconnected client gets no "end": count it as having had them all
      if (reason === "io server disconnect") {
        ended += URLS.length * ENDS_PER_NODE;
        if (ended === total * URLS.length * ENDS_PER_NODE) done({ got, ids });
      }
    });
  }
}
"""


def srt(items):
    return sorted(items, key=repr)


@pytest.fixture(scope="module", params=list(CLUSTERS))
def _cluster_of_two(request, impl, redis_url, wait_for):
    """The two nodes of one cluster kind, shared by the tests of this module (starting
    processes is most of a test's time); each test gets them without clients."""
    kinds, config = CLUSTERS[request.param]
    if config.get("cluster"):
        redis_url = request.getfixturevalue("redis_cluster_url")
    key = new_key()
    nodes = []
    try:
        for kind in kinds:
            # requests time out late (5 s): the tests check they complete well before
            nodes.append(ClusterNode(kind, {"redis": redis_url, "key": key, "requestsTimeout": 5.0,
                                            **config}, impl, wait_for))
        for node in nodes:
            wait_for(lambda: node.call("serverCount") >= 2, f"{node.kind} to count 2 servers")
        yield nodes
    finally:
        for node in nodes:
            node.stop()
        if not config.get("cluster"):
            delete_keys(redis_url, key)


@pytest.fixture
def two_nodes(_cluster_of_two, wait_for):
    for node in _cluster_of_two:
        for nsp in ("/", "/custom"):   # the previous test's clients are gone
            wait_for(lambda: node.call("localCount", nsp=nsp) == 0, "an empty server")
        node.events.clear()
    return _cluster_of_two


def unordered_shards(nodes) -> bool:
    """On a Redis Cluster, shard channels live on different nodes and keep no order
    between them: a room's own channel (sharded, dynamic mode) may overtake or lag
    behind the namespace channel."""
    return bool(nodes[0].config.get("cluster") and nodes[0].config.get("sharded"))


def connect(nodes, start_js, nsp=""):
    ends = 2 if unordered_shards(nodes) else 1   # see finish()
    handle = start_js(f"const URLS = {[n.url for n in nodes]!r}; const NSP = {nsp!r}; "
                      f"const ENDS = {ends};\n" + CLIENTS, nodes[0].url)
    for node in nodes:
        node.wait_clients(2, nsp=nsp or "/")
    wait_room_channels(nodes, nsp or "/")
    return handle


def wait_room_channels(nodes, nsp):
    """Sharded, dynamic modes: a node subscribes to a room's channel when the room
    appears there (SSUBSCRIBE, answered asynchronously, Node's adapter alike). Wait
    until every node is subscribed to r1's and r2's before the test publishes to them."""
    config = nodes[0].config
    if not config.get("sharded") or config.get("subscriptionMode") == "static":
        return
    import redis

    url = config["redis"]
    client = (redis.RedisCluster.from_url(url) if config.get("cluster")
              else redis.Redis.from_url(url))
    try:
        for room in ("r1", "r2"):
            channel = f"{config['key']}#{nsp}#{room}#"

            def subscribers() -> int:
                kwargs = ({"target_nodes": client.get_node_from_key(channel)}
                          if config.get("cluster") else {})
                reply = client.execute_command("PUBSUB SHARDNUMSUB", channel, **kwargs)
                # redis-py gives [(channel, count)] (or the flat [channel, count])
                return int(reply[0][1] if isinstance(reply[0], (list, tuple)) else reply[1])

            try:
                nodes[0].wait_for(lambda: subscribers() >= len(nodes),
                                  f"{len(nodes)} subscribers of {channel}")
            except AssertionError as exc:
                # which node is missing is not visible in Redis: the nodes' logs may say
                logs = "".join(f"\n--- {n.kind} node on port {n.port}:\n{n.stderr}" for n in nodes)
                raise AssertionError(f"{exc}{logs}") from None
    finally:
        client.close()


def finish(nodes, handle, nsp="/"):
    """Every node sends each client "end" after what it sent before, on every channel
    that carried it: the namespace channel and, when shards keep no order between
    them, the own channel of the client's room too (r1 or r2: one more "end" each)."""
    for node in nodes:
        node.call("emit", ev="end", nsp=nsp)
        if unordered_shards(nodes):
            for room in ("r1", "r2"):
                node.call("emit", ev="end", nsp=nsp, rooms=[room])
    result = handle.result()
    result["got"] = {k: srt(v) for k, v in result["got"].items()}
    return result


def test_broadcasts_with_rooms_except_and_binary(two_nodes, start_js):
    n0, n1 = two_nodes
    clients = connect(two_nodes, start_js)
    n0.call("emit", ev="all", args=[1, {"x": "y"}, None, 2.5])
    n1.call("emit", ev="room", rooms=["r1"], args=["to r1"])
    n0.call("emit", ev="except", args=["not r1"], **{"except": ["r1"]})
    n1.call("emit", ev="bin", rooms=["r2"], args=[b"\x00\xffbin", {"n": [b"\x01"]}])
    n0.call("emit", ev="two-rooms", rooms=["r1", "r2"], args=["r1 r2 minus r2"], **{"except": ["r2"]})
    got = finish(two_nodes, clients)["got"]
    assert got["a0"] == got["a1"] == srt([["all", 1, {"x": "y"}, None, 2.5], ["room", "to r1"],
                                          ["two-rooms", "r1 r2 minus r2"]])
    assert got["b0"] == got["b1"] == srt([["all", 1, {"x": "y"}, None, 2.5], ["except", "not r1"],
                                          ["bin", b"\x00\xffbin", {"n": [b"\x01"]}]])


def test_to_a_socket_id_on_another_node_and_remote_socket_emit(two_nodes, start_js):
    n0, n1 = two_nodes
    clients = connect(two_nodes, start_js)
    sockets = n0.call("fetchSockets")
    on_n1 = {s["query"]["rooms"]: s["id"] for s in sockets if s["data"]["port"] == n1.port}
    on_n0 = {s["query"]["rooms"]: s["id"] for s in sockets if s["data"]["port"] == n0.port}
    n0.call("emit", ev="direct", rooms=[on_n1["r1"]], args=["for a1"])
    n1.call("remoteEmit", sid=on_n0["r2"], ev="remote", args=["for b0", b"\x02"])
    n0.call("remoteEmit", sid=on_n1["r2"], ev="remote", args=["for b1"])
    result = finish(two_nodes, clients)
    assert result["ids"]["a1"] == on_n1["r1"]
    assert result["got"] == {"a0": [], "a1": [["direct", "for a1"]],
                             "b0": [["remote", "for b0", b"\x02"]], "b1": [["remote", "for b1"]]}


def test_acks_from_every_node(two_nodes, start_js):
    n0, n1 = two_nodes
    clients = connect(two_nodes, start_js)
    started = time.monotonic()
    assert sorted(n0.call("emitWithAck", ev="ask", timeout=6.0)) == ["a0", "a1", "b0", "b1"]
    assert sorted(n1.call("emitWithAck", ev="ask", rooms=["r1"], timeout=6.0)) == ["a0", "a1"]
    assert sorted(n0.call("emitWithAck", ev="ask", rooms=["r2"], timeout=6.0, **{"except": ["r2"]})) == []
    assert time.monotonic() - started < 4.0   # complete on the counts, not on the 6 s timeout
    finish(two_nodes, clients)


def test_fetch_sockets_across_the_cluster(two_nodes, start_js):
    n0, n1 = two_nodes
    clients = connect(two_nodes, start_js)
    for node in two_nodes:
        started = time.monotonic()
        sockets = node.call("fetchSockets")
        assert time.monotonic() - started < 3.0   # every server answered: no 5 s timeout
        assert sorted((s["data"]["origin"], s["data"]["port"], s["query"]["rooms"]) for s in sockets) == sorted(
            (n.kind, n.port, room) for n in two_nodes for room in ("r1", "r2"))
        for s in sockets:
            assert s["rooms"] == sorted([s["id"], s["query"]["rooms"]])
        in_r2 = node.call("fetchSockets", rooms=["r2"])
        assert sorted(s["data"]["port"] for s in in_r2) == sorted(n.port for n in two_nodes)
        assert node.call("fetchSockets", rooms=["r1"], **{"except": ["r1"]}) == []
        if "sharded" not in node.config and "streams" not in node.config:
            # the classic adapter's ALL_ROOMS request (Node's adapter.allRooms())
            assert node.call("allRooms") == sorted({"r1", "r2"} | {s["id"] for s in sockets})
    finish(two_nodes, clients)


def test_sockets_join_leave_and_disconnect_across_the_cluster(two_nodes, start_js, wait_for):
    n0, n1 = two_nodes
    clients = connect(two_nodes, start_js)
    n0.call("socketsJoin", rooms=["r1"], join="vip")
    wait_for(lambda: len(n1.call("fetchSockets", rooms=["vip"])) == 2, "both r1 sockets in vip")
    # delivered to both before the leave (on a Redis Cluster, messages on different
    # shard channels keep no order between them)
    assert sorted(n1.call("emitWithAck", ev="vip", rooms=["vip"], args=[1], timeout=3.0)) == ["a0", "a1"]
    n1.call("socketsLeave", leave="vip")
    wait_for(lambda: n0.call("fetchSockets", rooms=["vip"]) == [], "vip emptied")
    n0.call("emit", ev="vip", rooms=["vip"], args=[2])
    n1.call("disconnectSockets", rooms=["r2"])
    wait_for(lambda: n0.call("localCount") == 1 and n1.call("localCount") == 1, "r2 sockets gone")
    got = finish(two_nodes, clients)["got"]
    assert got["a0"] == got["a1"] == [["vip", 1]]
    assert got["b0"] == got["b1"] == [["disconnected", "io server disconnect"]]


def test_server_side_emit_with_and_without_acks(two_nodes):
    n0, n1 = two_nodes
    n0.call("serverSideEmit", ev="server_side", args=["hello", {"n": 1}])
    assert n1.wait_event()[0]["args"] == ["hello", {"n": 1}]
    assert n0.events == []   # not to itself
    for sender, receiver in ((n0, n1), (n1, n0)):
        started = time.monotonic()
        responses = sender.call("serverSideEmitWithAck", ev="server_side", args=["ask"])
        assert time.monotonic() - started < 3.0   # every server answered: no 5 s timeout
        assert responses == [{"from": receiver.kind, "port": receiver.port, "args": ["ask"]}]


def test_custom_namespace_is_isolated(two_nodes, start_js):
    n0, n1 = two_nodes
    main = connect(two_nodes, start_js)
    custom = connect(two_nodes, start_js, nsp="/custom")
    n0.call("emit", ev="hi", nsp="/custom", args=["custom"])
    n1.call("emit", ev="hi", args=["main"])
    n1.call("emit", ev="room", nsp="/custom", rooms=["r1"], args=["custom r1"])
    assert sorted(s["data"]["port"] for s in n1.call("fetchSockets", nsp="/custom")) == sorted(
        [n0.port, n0.port, n1.port, n1.port])
    got_custom = finish(two_nodes, custom, nsp="/custom")["got"]
    got_main = finish(two_nodes, main)["got"]
    assert got_custom["a0"] == got_custom["a1"] == [["hi", "custom"], ["room", "custom r1"]]
    assert got_custom["b0"] == got_custom["b1"] == [["hi", "custom"]]
    assert all(v == [["hi", "main"]] for v in got_main.values())

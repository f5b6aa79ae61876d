"""Intersection broadcasts across a cluster: every roomcast node applies the
intersection that travels in the broadcast options; an adapter not created with
allow_intersections=True refuses them, and a Node server would deliver to the union."""
from __future__ import annotations

import pytest


# Per node, clients in r1, r2 and both; they record events until "end" came from every node.
CLIENTS = """
const got = {};
let ended = 0, total = 0;
for (const [i, url] of URLS.entries()) {
  for (const rooms of ["r1", "r2", "r1,r2"]) {
    const key = rooms + "@" + i;
    got[key] = [];
    total++;
    const s = io(url, { transports: ["websocket"], query: { rooms } });
    s.onAny((ev, ...args) => {
      if (ev === "end") { if (++ended === total * URLS.length) done(got); return; }
      const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
      got[key].push(ev);
      if (ack) ack(key);
    });
  }
}
"""


def start_clients(nodes, start_js):
    handle = start_js(f"const URLS = {[n.url for n in nodes]!r};\n" + CLIENTS, nodes[0].url)
    for node in nodes:
        node.wait_clients(3)
    return handle


def finish(nodes, handle) -> dict:
    for node in nodes:
        node.call("emit", ev="end")
    return {key: sorted(events) for key, events in handle.result().items()}


def counted(nodes, wait_for):
    for node in nodes:
        wait_for(lambda: node.call("serverCount") >= 2, "both servers to be counted")
    return nodes


@pytest.mark.parametrize("sharded", [False, True], ids=["classic", "sharded"])
def test_every_roomcast_node_applies_the_intersection(cluster, start_js, wait_for, sharded):
    nodes = counted([cluster("roomcast", allowIntersections=True, sharded=sharded,
                             subscriptionMode="static") for _ in range(2)], wait_for)
    handle = start_clients(nodes, start_js)
    nodes[0].call("emit", ev="both", rooms=["r1"], intersect=["r2"])
    nodes[1].call("emit", ev="both-everyone", intersect=["r1", "r2"])
    nodes[1].call("emit", ev="both-except", rooms=["r1"], intersect=["r2"], **{"except": ["r1"]})
    acks = nodes[1].call("emitWithAck", ev="ask", rooms=["r2"], intersect=["r1"], timeout=5)
    fetched = nodes[0].call("fetchSockets", rooms=["r1"], intersect=["r2"])
    got = finish(nodes, handle)
    for i in (0, 1):
        assert got[f"r1,r2@{i}"] == ["ask", "both", "both-everyone"]
        assert got[f"r1@{i}"] == got[f"r2@{i}"] == []
    assert sorted(acks) == ["r1,r2@0", "r1,r2@1"]
    assert sorted(s["query"]["rooms"] for s in fetched) == ["r1,r2", "r1,r2"]


def test_a_cluster_adapter_refuses_intersections_unless_allowed(cluster, start_js, wait_for):
    nodes = counted([cluster("roomcast") for _ in range(2)], wait_for)
    handle = start_clients(nodes, start_js)
    for op in ("emit", "emitWithAck", "fetchSockets", "disconnectSockets"):
        with pytest.raises(RuntimeError, match="allow_intersections=True"):
            nodes[0].call(op, ev="x", rooms=["r1"], intersect=["r2"])
    got = finish(nodes, handle)
    assert all(events == [] for events in got.values())


def test_a_node_server_ignores_the_intersection_and_delivers_to_the_union(cluster, start_js,
                                                                          wait_for):
    """Why allow_intersections exists: Node's adapter reads rooms/except/flags only."""
    nodes = counted([cluster("roomcast", allowIntersections=True), cluster("node")], wait_for)
    handle = start_clients(nodes, start_js)
    nodes[0].call("emit", ev="both", rooms=["r1"], intersect=["r2"])
    got = finish(nodes, handle)
    assert got["r1,r2@0"] == ["both"] and got["r1@0"] == [] and got["r2@0"] == []
    assert got["r1,r2@1"] == ["both"] and got["r1@1"] == ["both"] and got["r2@1"] == []

"""Several roomcast server processes sharing one Redis (classic pub/sub adapter),
with the real JS client on each."""
from __future__ import annotations

import pytest

# Two clients per node: "a" in room r1, "b" in r2; they record everything they receive
# and finish when each got "end".
CLIENTS = """
const urls = JSON.parse(process.env.NODE_URLS || "null") || URLS;
const got = {};
let ended = 0, total = 0;
const ids = {};
for (const [i, url] of urls.entries()) {
  for (const [name, rooms] of [["a", "r1"], ["b", "r2"]]) {
    const key = name + i;
    got[key] = [];
    total++;
    const s = io(url, { transports: ["websocket"], query: { rooms } });
    s.on("connect", () => { ids[key] = s.id; });
    s.onAny((ev, ...args) => {
      // every node sends "end" after its other emits: one per node means all arrived
      if (ev === "end") { if (++ended === total * urls.length) done({ got, ids }); return; }
      const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
      got[key].push([ev, ...args]);
      if (ack) ack(key);
    });
    s.on("disconnect", (reason) => got[key].push(["disconnected", reason]));
  }
}
"""


def clients_script(nodes) -> str:
    urls = [n.url for n in nodes]
    return f"const URLS = {urls!r};\n" + CLIENTS


def start_cluster(cluster, kinds=("roomcast", "roomcast"), clients_per_node=2, **config):
    nodes = [cluster(kind, **config) for kind in kinds]
    for node in nodes:
        with_count(node, len(nodes))
    return nodes


def with_count(node, count):
    import gevent
    with gevent.Timeout(10, AssertionError(f"{node.kind} node does not see {count} servers")):
        while node.call("serverCount") < count:
            gevent.sleep(0.05)


def connect_clients(nodes, start_js):
    handle = start_js(clients_script(nodes), nodes[0].url)
    for node in nodes:
        node.wait_clients(2)
    return handle


def end(nodes, handle):
    """Every node's messages reach a client in that node's order, not across nodes:
    each node sends "end" last, and received lists are compared sorted."""
    for node in nodes:
        node.call("emit", ev="end")
    result = handle.result()
    result["got"] = {k: sorted(v, key=repr) for k, v in result["got"].items()}
    return result


def srt(items):
    return sorted(items, key=repr)


def test_broadcast_rooms_except_and_binary_across_nodes(cluster, start_js):
    n0, n1 = start_cluster(cluster)
    clients = connect_clients([n0, n1], start_js)
    n0.call("emit", ev="all", args=[1, {"x": "y"}])
    n1.call("emit", ev="room", rooms=["r1"], args=["to r1"])
    n0.call("emit", ev="except", args=["not r1"], **{"except": ["r1"]})
    n1.call("emit", ev="bin", rooms=["r2"], args=[b"\x00\xffbin", {"n": [b"\x01"]}])
    n0.call("emit", ev="local-only", rooms=["r1", "r2"], **{"except": ["r2"]}, args=[])
    got = end([n0, n1], clients)["got"]
    assert got["a0"] == got["a1"] == srt([["all", 1, {"x": "y"}], ["room", "to r1"], ["local-only"]])
    assert got["b0"] == got["b1"] == srt([["all", 1, {"x": "y"}], ["except", "not r1"],
                                          ["bin", b"\x00\xffbin", {"n": [b"\x01"]}]])

"""Values no cluster message can break, in mixed clusters of a roomcast process and a
Node process (socket.io 4.8 + @socket.io/redis-adapter 8.3, classic and sharded), with
the real JS client on each: integers beyond msgpack's range, dates beyond Python's
years, and messages whose event no client could decode."""
from __future__ import annotations

import pytest

from redis_nodes import ClusterNode, delete_keys, new_key
from roomcast import Emitter

ADAPTERS = {"classic": {}, "sharded": {"sharded": True}}

# One client per node ("rc" on the roomcast node, "node" on the Node one). Each records
# its events and how it was disconnected; the snippet ends once every client got ENDS
# "end" events (one from each sending node: a node's messages keep their order).
CLIENTS = """
const got = {}, gone = {}, ends = {};
for (const [name, url] of Object.entries(URLS)) {
  got[name] = [];
  ends[name] = 0;
  const s = io(url, { transports: ["websocket"], reconnection: false });
  s.on("q", (...args) => args.pop()(name));   // acks with the client's name
  s.onAny((ev, ...args) => {
    if (ev === "end") {
      ends[name]++;
      if (Object.values(ends).every((n) => n === ENDS)) done({ got, gone });
    } else if (typeof args[args.length - 1] !== "function") {
      got[name].push([ev, ...args]);
    }
  });
  s.on("disconnect", (reason) => { gone[name] = reason; });
}
"""


@pytest.fixture(scope="module", params=list(ADAPTERS))
def _mixed_pair(request, impl, redis_url, wait_for):
    """A roomcast node and a Node node on one Redis, counting each other; shared by the
    tests of this module (starting them is most of a test's time)."""
    key = new_key()
    nodes = []
    try:
        for kind in ("roomcast", "node"):
            nodes.append(ClusterNode(kind, {"redis": redis_url, "key": key,
                                            **ADAPTERS[request.param]}, impl, wait_for))
        for node in nodes:
            wait_for(lambda: node.call("serverCount") == 2, f"the {node.kind} node to count 2")
        yield nodes
    finally:
        for node in nodes:
            node.stop()
        delete_keys(redis_url, key)


@pytest.fixture
def mixed(_mixed_pair, wait_for):
    """The pair without clients (the previous test's are gone); ``node.log_start`` is
    where this test's part of each node's stderr begins."""
    for node in _mixed_pair:
        wait_for(lambda: node.call("localCount") == 0, "the previous test's clients to leave")
        node.log_start = len(node.stderr)
    return _mixed_pair


def log_of(node) -> str:
    return node.stderr[node.log_start:]


def connect(nodes, start_js, names=("rc", "node"), ends=2):
    """The CLIENTS snippet, with a client named names[i] on nodes[i] (None: none),
    each ending after `ends` "end" events."""
    on = [(name, node) for name, node in zip(names, nodes) if name]
    urls = {name: n.url for name, n in on}
    handle = start_js(f"const URLS = {urls!r}; const ENDS = {ends};\n" + CLIENTS, nodes[0].url)
    for _, node in on:
        node.wait_clients(1)
    return handle


def emitter_reaches(node) -> bool:
    """The emitters publish on the classic adapter's channels (not sharded ones)."""
    return not node.config.get("sharded")


def by_repr(events):
    return sorted(events, key=repr)   # messages of different publishers may interleave


def test_integers_beyond_msgpack_reach_every_client_as_their_javascript_value(
        mixed, start_js, redis_url):
    rc, node = mixed
    clients = connect(mixed, start_js)
    big = [10**20, -(2**70), 2**64 - 1, 2**64]   # JSON gives Python these as ints
    rc.call("emit", ev="server", args=big)                         # RedisAdapter.broadcast
    acks = rc.call("emitWithAck", ev="q", args=big, timeout=5)     # broadcast with acks
    if emitter_reaches(rc):
        Emitter(redis_url, key=rc.config["key"]).emit("emitter", *big)    # roomcast's Emitter
    js = start_js("""
        // a client sends 1e20 (JSON: 100000000000000000000, an int for Python)
        const s = io(URL, { transports: ["websocket"] });
        await once(s, "connect");
        s.emit("relay", "client", 1e20, -1e21);
        done(await once(s, "client"));
    """, rc.url)
    assert js.result() == [10**20, -10**21]
    for n in (rc, node):
        n.call("emit", ev="end")
    result = clients.result()
    # what JavaScript makes of each number: the nearest float64
    as_js = [10**20, float(-(2**70)), 18446744073709552000, 18446744073709552000]
    expected = [["server", *as_js], ["client", 10**20, -10**21]]
    if emitter_reaches(rc):
        expected.append(["emitter", *as_js])
    for name in ("rc", "node"):
        assert by_repr(result["got"][name]) == by_repr(expected), name
    assert sorted(acks) == ["node", "rc"]
    assert result["gone"] == {}
    assert "Traceback" not in log_of(rc) and "not sent" not in log_of(rc)


def test_an_encoding_failure_never_costs_the_local_delivery(mixed, start_js, wait_for):
    rc, node = mixed
    clients = connect(mixed, start_js)
    # a lone surrogate: JSON (the clients) carries it, UTF-8 (msgpack, used for
    # binary data) cannot
    rc.call("emit", ev="lone", args=["a\ud800b", b"\x01"])
    assert sorted(rc.call("emitWithAck", ev="q", args=["\udfff", b"\x02"], timeout=5)) == ["rc"]
    wait_for(lambda: log_of(rc).count("not sent to the other servers") == 2, "two log lines")
    for n in (rc, node):
        n.call("emit", ev="end")
    result = clients.result()
    assert result["got"] == {"rc": [["lone", "a\ud800b", b"\x01"]], "node": []}
    assert result["gone"] == {}


# JavaScript dates (ms since the epoch) and what Node's clients receive for them
DATES = {
    8.64e15: "+275760-09-13T00:00:00.000Z",      # the latest Date: a common "never"
    -8.64e15: "-271821-04-20T00:00:00.000Z",     # the earliest
    -62198755200000: "-000001-01-01T00:00:00.000Z",
    -62167219200000: "0000-01-01T00:00:00.000Z",
    253402300800000: "+010000-01-01T00:00:00.000Z",
    1700000000123: "2023-11-14T22:13:20.123Z",
}


def test_dates_from_node_beyond_python_years_arrive_as_nodes_clients_get_them(
        mixed, start_js, redis_url):
    rc, node = mixed
    clients = connect(mixed, start_js)
    node.call("emit", ev="server", args=[{"$date": ms} for ms in DATES]
              + [{"at": [{"$date": 8.64e15}]}])
    expected = [["server", *DATES.values(), {"at": [DATES[8.64e15]]}]]
    if emitter_reaches(rc):
        expected.append(["emitter", *DATES.values()])
        start_js(f"""
            // Node's @socket.io/redis-emitter
            const {{ Emitter }} = require("@socket.io/redis-emitter");
            const {{ createClient }} = require("redis");
            const client = createClient({{ url: {redis_url!r} }});
            await client.connect();
            const emitter = new Emitter(client, {{ key: {rc.config["key"]!r} }});
            emitter.emit("emitter", ...{list(DATES)!r}.map((ms) => new Date(ms)));
            await client.quit();   // QUIT goes after the PUBLISH on the same connection
            done(null);
        """, rc.url).result()
    for n in (node, rc):
        n.call("emit", ev="end")
    got = clients.result()["got"]
    assert got["node"] == expected   # Node's own client, for reference
    assert got["rc"] == expected
    assert "malformed" not in log_of(rc)


INVALID = {
    "empty data": {"type": 2, "data": []},
    "no data": {"type": 2},
    "null name": {"type": 2, "data": [None, 1]},
    "object name": {"type": 2, "data": [{"a": 1}]},
    "boolean name": {"type": 2, "data": [True]},
    "reserved name": {"type": 2, "data": ["disconnect", "x"]},
    "too many attachments": {"type": 2, "data": ["many", *[bytes([i]) for i in range(11)]]},
    "not an event": {"type": 1},
}


def test_invalid_events_from_the_cluster_are_refused_before_delivery(mixed, start_js, wait_for):
    rc, node = mixed
    clients = connect(mixed, start_js, names=("rc", None), ends=1)   # Node's would drop
    for packet in INVALID.values():
        node.call("rawBroadcast", packet=packet)
    node.call("rawBroadcastWithAck", packet=INVALID["reserved name"])
    # still valid: a number as the event name, and as many attachments as clients take
    node.call("rawBroadcast", packet={"type": 2, "data": [7, "numbered"]})
    node.call("rawBroadcast", packet={"type": 2, "data": ["ten", *[bytes([i]) for i in range(10)]]})
    refused = len(INVALID) + 1
    wait_for(lambda: log_of(rc).count("refused") == refused, f"{refused} log lines")
    node.call("emit", ev="end")
    result = clients.result()
    assert result["gone"] == {}                  # the client kept its connection
    assert result["got"]["rc"] == [[7, "numbered"], ["ten", *[bytes([i]) for i in range(10)]]]
    log = [line for line in log_of(rc).splitlines() if "refused" in line]
    assert len(log) == refused
    for reason in ("empty or missing event data", "event name None", "event name {'a': 1}",
                   "event name True", "reserved event name 'disconnect'",
                   "more than 10 binary attachments", "packet type 1 is not an event"):
        assert any(reason in line for line in log), reason

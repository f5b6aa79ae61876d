"""Bounded fuzzing of the Redis adapter's cluster messages end to end: malformed or
ill-shaped broadcasts, requests and responses published on a node's channels are
ignored (with a warning) and never raise out of a handler; the node keeps working."""
from __future__ import annotations

import json
import logging

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import roomcast
from roomcast import _notepack
from roomcast.adapters import _protocol as proto
from roomcast.adapters.redis import RedisAdapter
from tests.rawclient import RawWebSocket

values = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 63, 2 ** 63 - 1) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8)
wire_opts = st.fixed_dictionaries({}, optional={
    "rooms": values | st.lists(st.sampled_from(["r", "x"]), max_size=2), "except": values,
    "flags": values | st.fixed_dictionaries({}, optional={
        "volatile": values, "timeout": values, "compress": values})})
wire_packet = st.fixed_dictionaries({}, optional={
    "type": st.integers(-1, 7) | values, "nsp": st.sampled_from(["/", "/x"]) | values,
    "data": values | st.lists(values, min_size=1, max_size=3), "id": values})
# every request type but REMOTE_DISCONNECT, which would (rightly) close the test's client
requests = st.fixed_dictionaries({"type": st.integers(-1, 10).filter(
    lambda t: t != proto.REMOTE_DISCONNECT) | values.filter(lambda v: v != proto.REMOTE_DISCONNECT)},
    optional={
    "uid": values, "requestId": values | st.text(max_size=4), "opts": wire_opts | values,
    "packet": wire_packet | values, "rooms": values, "sid": values, "room": values,
    "close": values, "data": values, "sockets": values, "clientCount": values,
    "responses": values})


def encodings(message) -> st.SearchStrategy[bytes]:
    return st.sampled_from([json.dumps(message).encode(), _notepack.encode(message)])


@st.composite
def cluster_messages(draw):
    kind = draw(st.sampled_from(["broadcast", "request", "response", "bytes"]))
    if kind == "bytes":
        return kind, draw(st.binary(max_size=40))
    if kind == "broadcast":
        message = [draw(values), draw(wire_packet | values), draw(wire_opts | values)]
        return kind, _notepack.encode(message)
    return kind, draw(encodings(draw(requests)))


def test_ill_formed_cluster_messages_are_ignored(serve, redis_url, redis_key, caplog):
    io = roomcast.Server(adapter=RedisAdapter.factory(redis_url, key=redis_key))
    io.on("connection", lambda socket: socket.join("r"))
    other = roomcast.Server(adapter=RedisAdapter.factory(redis_url, key=redis_key))
    url = serve(io)
    ws = RawWebSocket(url, query="EIO=4&transport=websocket")
    assert ws.recv().startswith("0{")
    ws.send("40")
    assert ws.recv().startswith("40{")
    adapter = io.sockets.adapter
    channels = {"broadcast": proto.broadcast_channel(redis_key, "/"),
                "request": proto.request_channel(redis_key, "/"),
                "response": proto.response_channel(redis_key, "/")}
    publisher = redis.Redis.from_url(redis_url)
    published = []

    @settings(max_examples=150, database=None, suppress_health_check=list(HealthCheck))
    @given(cluster_messages())
    def publish(message):
        kind, data = message
        channel = channels.get(kind, channels["request"])
        if kind == "broadcast" and published and len(published) % 2:
            channel += "r#"   # the room channel form too
        publisher.publish(channel, data)
        published.append(kind)

    caplog.set_level(logging.WARNING, logger="roomcast.redis")
    try:
        publish()
        # a real broadcast from the other node, published after every fuzzed one
        other.emit("after", "fuzz")
        while True:
            message = ws.recv(timeout=20)
            if message == '42["after","fuzz"]':
                break
        assert adapter.server_count() == 2
    finally:
        publisher.close()
        ws.close()
        other.close(timeout=0.2)
    crashes = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not crashes, crashes[0].getMessage()
    assert len(published) >= 100

"""The Redis adapter inside this (gevent, not monkey-patched) process: the subscriber
greenlet, the room-channel check, clean-up, and the specific response channels."""
from __future__ import annotations

import logging

import pytest
import redis

import roomcast
from roomcast import Emitter, _notepack
from roomcast.adapters._redis_client import GeventConnection
from roomcast.adapters.redis import RedisAdapter, RedisAdapterFactory

from redis_nodes import emit_until_received


def numsub(redis_url, channel):
    client = redis.Redis.from_url(redis_url)
    try:
        return client.pubsub_numsub(channel)[0][1]
    finally:
        client.close()


def test_in_process_server_cooperates_with_gevent(serve, start_js, redis_url, redis_key, in_thread, wait_for):
    # a plain redis-py client: its connections are moved onto gevent sockets
    factory = RedisAdapter.factory(redis.Redis.from_url(redis_url), key=redis_key, requests_timeout=1.0)
    assert isinstance(factory, RedisAdapterFactory)
    assert factory.hub.pub.connection_pool.connection_class is GeventConnection
    io = roomcast.Server(adapter=factory)
    io.on("connection", lambda socket: socket.on("echo", lambda msg, ack: ack(msg)))
    url = serve(io)
    request_channel = f"{redis_key}-request#/#"
    wait_for(lambda: in_thread(numsub, redis_url, request_channel) == 1, "the subscription")
    # the server answers its own client while the subscriber greenlet waits on Redis
    client = start_js("""
        const s = io(URL, { transports: ["websocket"] });
        const news = once(s, "news");
        const echoed = await s.emitWithAck("echo", "hi");
        done([echoed, ...await news]);
    """, url)
    wait_for(lambda: len(io.sockets.sockets) == 1, "the client", timeout=15)
    emit_until_received(wait_for, Emitter(redis_url, key=redis_key), client, "news", "from redis")
    assert client.result() == ["hi", "from redis"]
    assert io.sockets.adapter.server_count() == 1
    io.close()
    wait_for(lambda: in_thread(numsub, redis_url, request_channel) == 0, "the unsubscription")


def test_messages_are_decoded_only_for_local_recipients(serve, run_js, start_js, redis_url, redis_key,
                                                        caplog, in_thread, wait_for):
    io = roomcast.Server(adapter=RedisAdapter.factory(redis_url, key=redis_key))
    io.on("connection", lambda socket: socket.join("r1"))
    url = serve(io)
    wait_for(lambda: in_thread(numsub, redis_url, f"{redis_key}-request#/#") == 1, "the subscription")
    publisher = redis.Redis.from_url(redis_url)
    garbage = b"\xc1 is not msgpack"
    with caplog.at_level(logging.WARNING, logger="roomcast.redis"):
        # nobody connected: not even the namespace channel is decoded
        in_thread(publisher.publish, f"{redis_key}#/#", garbage)
        client = start_js("""
            const s = io(URL, { transports: ["websocket"] });
            const [msg] = await once(s, "hello");
            done(msg);
        """, url)
        wait_for(lambda: len(io.sockets.sockets) == 1, "the client")
        in_thread(publisher.publish, f"{redis_key}#/#unknown-room#", garbage)
        in_thread(publisher.publish, f"{redis_key}#/#r1#", garbage)
        # one subscriber connection keeps the order: the first garbage was seen before
        wait_for(lambda: "malformed broadcast" in caplog.text, "the warning")
        assert caplog.text.count("malformed") == 1
        good = _notepack.encode(["other", {"type": 2, "data": ["hello", "r1"], "nsp": "/"},
                                 {"rooms": ["r1"], "except": [], "flags": {}}])
        in_thread(publisher.publish, f"{redis_key}#/#r1#", good)
        assert client.result() == "r1"
    publisher.close()
    io.close()


@pytest.mark.parametrize("kinds", [("roomcast", "node"), ("node", "roomcast")])
def test_publish_on_specific_response_channel(kinds, cluster, start_js, redis_url, redis_key, in_thread, wait_for):
    nodes = [cluster(kind, specificResponseChannel=True) for kind in kinds]
    for node in nodes:
        wait_for(lambda: node.call("serverCount") == 2, "both servers")
    clients = start_js(f"""
        for (const url of {[n.url for n in nodes]!r}) io(url, {{ transports: ["websocket"] }});
    """, nodes[0].url)
    for node in nodes:
        node.wait_clients(1)
    watcher = redis.Redis.from_url(redis_url).pubsub()
    in_thread(watcher.psubscribe, f"{redis_key}-response#*")
    in_thread(watcher.get_message, timeout=1.0)
    for node in nodes:
        assert len(node.call("fetchSockets")) == 2
        with pytest.raises(RuntimeError, match="timed out"):   # the clients do not ack
            node.call("emitWithAck", ev="ping", timeout=0.5)
    channels = set()
    while (message := in_thread(watcher.get_message, timeout=0.5)) is not None:
        channels.add(message["channel"].decode())
    watcher.close()
    clients.kill()
    # every answer (fetch responses, client counts) went to a requester-specific channel
    assert channels and all(c.count("#") == 3 and not c.endswith("/#") for c in channels), channels


def test_published_bytes_are_nodes(redis_url, redis_key, in_thread):
    """What a roomcast server publishes, byte for byte what Node's adapter publishes
    (the 68-byte example of node-socketio.md §4 and the JSON requests)."""
    io = roomcast.Server(adapter=RedisAdapter.factory(redis_url, key=redis_key))
    adapter = io.sockets.adapter
    adapter.uid = "ABCDEF"
    watcher = redis.Redis.from_url(redis_url).pubsub()
    in_thread(watcher.psubscribe, f"{redis_key}*")
    in_thread(watcher.get_message, timeout=1.0)
    io.to("room1").emit("hello", "world")
    io.volatile.except_("x").emit("v")
    io.to("a").sockets_join(["b"])
    io.in_("a").disconnect_sockets(close=True)
    io.server_side_emit("hi", 1)
    got = [in_thread(watcher.get_message, timeout=2.0) for _ in range(5)]
    watcher.close()
    io.close()
    assert [(m["channel"].decode(), m["data"]) for m in got] == [
        (f"{redis_key}#/#room1#", bytes.fromhex(
            "93a641424344454683a47479706502a46461746192a568656c6c6fa5776f726c64a36e7370a12f83"
            "a5726f6f6d7391a5726f6f6d31a665786365707490a5666c61677380")),
        (f"{redis_key}#/#", _notepack.encode(["ABCDEF", {"type": 2, "data": ["v"], "nsp": "/"},
                                             {"rooms": [], "except": ["x"], "flags": {"volatile": True}}])),
        (f"{redis_key}-request#/#",
         b'{"uid":"ABCDEF","type":2,"opts":{"rooms":["a"],"except":[]},"rooms":["b"]}'),
        (f"{redis_key}-request#/#",
         b'{"uid":"ABCDEF","type":4,"opts":{"rooms":["a"],"except":[]},"close":true}'),
        (f"{redis_key}-request#/#", b'{"uid":"ABCDEF","type":6,"data":["hi",1]}'),
    ]


def test_answers_every_request_type(serve, start_js, redis_url, redis_key, in_thread, wait_for):
    """Requests as Node servers (v8 and older) send them, answered on the response channel."""
    import json

    io = roomcast.Server(adapter=RedisAdapter.factory(redis_url, key=redis_key))
    io.on("connection", lambda socket: socket.join("r1"))
    io.on("server_side", lambda *args: args[-1](["pong", *args[:-1]]))
    url = serve(io)
    client = start_js("""
        const s = io(URL, { transports: ["websocket"] });
        s.on("hello", (x, ack) => ack("acked " + x));
        await once(s, "bye");
        done(s.id);
    """, url)
    wait_for(lambda: len(io.sockets.sockets) == 1 and io.sockets.adapter.hub.connected.is_set(), "the client")
    sid = next(iter(io.sockets.sockets))
    publisher = redis.Redis.from_url(redis_url)
    watcher = publisher.pubsub()
    in_thread(watcher.psubscribe, f"{redis_key}-response#*")
    in_thread(watcher.get_message, timeout=1.0)

    def ask(request, count=1):
        data = request if isinstance(request, bytes) else json.dumps(request).encode()
        in_thread(publisher.publish, f"{redis_key}-request#/#", data)
        answers = []
        for _ in range(count):
            message = in_thread(watcher.get_message, timeout=2.0)
            assert message is not None, request
            raw = message["data"]
            answers.append(json.loads(raw) if raw[:1] == b"{" else _notepack.decode(raw))
        return answers

    assert ask({"type": 0, "requestId": "q0", "rooms": ["r1"]}) == [{"requestId": "q0", "sockets": [sid]}]
    [rooms] = ask({"uid": "n", "type": 1, "requestId": "q1"})
    assert rooms["requestId"] == "q1" and sorted(rooms["rooms"]) == sorted([sid, "r1"])
    assert ask({"type": 2, "requestId": "q2", "sid": sid, "room": "legacy"}) == [{"requestId": "q2"}]
    assert "legacy" in io.sockets.adapter.socket_rooms(sid)
    assert ask({"type": 3, "requestId": "q3", "sid": sid, "room": "legacy"}) == [{"requestId": "q3"}]
    assert "legacy" not in io.sockets.adapter.socket_rooms(sid)
    [fetched] = ask({"uid": "n", "type": 5, "requestId": "q5", "opts": {"rooms": ["r1"], "except": []}})
    assert [s["id"] for s in fetched["sockets"]] == [sid]
    assert fetched["sockets"][0]["handshake"]["query"]["EIO"] == "4"
    assert ask({"uid": "n", "type": 6, "requestId": "q6", "data": ["server_side", 1]}) == [
        {"type": 6, "requestId": "q6", "data": ["pong", 1]}]
    count, acked = ask(_notepack.encode({"uid": "n", "requestId": "q7", "type": 7,
                                         "packet": {"type": 2, "data": ["hello", "x"], "nsp": "/"},
                                         "opts": {"rooms": [], "except": [], "flags": {"timeout": 1000}}}), 2)
    assert count == {"type": 8, "requestId": "q7", "clientCount": 1}
    assert acked == {"type": 9, "requestId": "q7", "packet": "acked x"}
    io.emit("bye")
    assert client.result() == sid
    watcher.close()
    publisher.close()
    io.close()

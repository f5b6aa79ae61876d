"""Sharded pub/sub, dynamic subscription mode: the shard channels this server is
subscribed to on Redis (PUBSUB SHARDCHANNELS on the node that owns each one) are
exactly the ones it asked for, however fast they are asked for and given up: on one
Redis 7 and on a 3-primary Redis Cluster, where each node in use gets its own
subscriber connection when a first channel of that node is subscribed."""
from __future__ import annotations

import itertools

import gevent
import pytest
import redis

import roomcast
from roomcast.adapters._hub import RedisHub
from roomcast.adapters._redis_client import make_client, make_cluster_client
from roomcast.adapters.redis import RedisAdapter


@pytest.fixture(params=["redis", "rediscluster"])
def sharded_redis(request):
    """(URL, is_cluster): the shared Redis 7, or the session's Redis Cluster."""
    if request.param == "rediscluster":
        return request.getfixturevalue("redis_cluster_url"), True
    return request.getfixturevalue("redis_url"), False


def shard_channels(url: str, cluster: bool, prefix: str) -> set[str]:
    """The shard channels under ``prefix`` with a subscriber, over every primary
    (blocking: call it in a thread)."""
    if cluster:
        client = redis.RedisCluster.from_url(url)
        nodes = [node.redis_connection for node in client.get_primaries()]
    else:
        client = redis.Redis.from_url(url)
        nodes = [client]
    try:
        return {name.decode() for node in nodes
                for name in node.execute_command("PUBSUB SHARDCHANNELS", f"{prefix}*")}
    finally:
        client.close()


def test_subscriptions_changed_while_the_subscriber_connects(sharded_redis, redis_key,
                                                             in_thread, wait_for):
    # Channels subscribed and unsubscribed from other greenlets while the subscriber
    # connection(s) are still being set up: before, the connection subscribed what its
    # table held while it iterated over it, and a change during that iteration (the
    # connect waits on the network) either killed the reader ("dictionary changed size
    # during iteration"; that node's channels were then never subscribed) or left an
    # unsubscribed channel subscribed for good.
    url, cluster = sharded_redis
    client = make_cluster_client(url) if cluster else make_client(url)
    hub = RedisHub(client, client)
    hub.acquire()
    wanted: set[str] = set()
    names = itertools.cycle([f"{redis_key}#/#room{i}#" for i in range(12)])

    def toggle() -> None:
        channel = next(names)
        if channel in wanted:
            wanted.discard(channel)
            hub.unsubscribe(shard_channels=[channel])
        else:
            wanted.add(channel)
            hub.ssubscribe([channel], lambda channel, data: None)

    while_connecting = 0   # changes made before every subscriber connection was up

    def churn(rounds: int) -> None:
        nonlocal while_connecting
        for _ in range(rounds):
            if not hub.connected.is_set():
                while_connecting += 1
            toggle()
            gevent.sleep(0)

    try:
        toggle()
        # four greenlets change the channels, one change per pass of the event loop,
        # while the connections are set up (that takes several round trips)
        gevent.joinall([gevent.spawn(churn, 25) for _ in range(4)], raise_error=True)
        assert while_connecting >= 8, "the changes must overlap the connect"
        wait_for(lambda: hub.connected.is_set(), "every subscriber connection to be up")
        wait_for(lambda: in_thread(shard_channels, url, cluster, redis_key) == wanted,
                 f"the subscriptions to be {sorted(wanted)}")
        # and the subscribers still follow changes
        for _ in range(5):
            toggle()
        wait_for(lambda: in_thread(shard_channels, url, cluster, redis_key) == wanted,
                 f"the subscriptions to be {sorted(wanted)}")
    finally:
        hub.close()
    wait_for(lambda: in_thread(shard_channels, url, cluster, redis_key) == set(),
             "no subscription left after close")


def test_room_channels_follow_rooms_created_and_deleted_quickly(sharded_redis, redis_key, serve,
                                                                start_js, in_thread, wait_for):
    # A roomcast server whose sockets join and leave rooms in quick succession: its
    # subscriptions are always its namespace and response channels, and one channel
    # per room it has (a socket's own room has none in "dynamic" mode).
    url, cluster = sharded_redis
    factory = RedisAdapter.factory(make_cluster_client(url) if cluster else url,
                                   key=redis_key, sharded=True, subscription_mode="dynamic")
    io = roomcast.Server(adapter=factory)

    synced: list[list[str]] = []

    def on_connection(socket) -> None:
        socket.on("join", lambda room: socket.join(room))
        socket.on("leave", lambda room: socket.leave(room))
        socket.on("sync", lambda: synced.append(sorted(socket.rooms - {socket.id})))

    io.on("connection", on_connection)
    url_ = serve(io)
    adapter = io.sockets.adapter
    fixed = {adapter.channel, adapter.response_channel}

    clients = start_js("""
        const rooms = [...Array(9).keys()].map((i) => "room" + i);
        const sockets = [0, 1, 2].map(() => io(URL, { transports: ["websocket"] }));
        await Promise.all(sockets.map((s) => once(s, "connect")));
        // each socket joins, leaves and joins again rooms that the others join and leave
        for (let round = 0; round < 30; round++) {
          sockets.forEach((s, i) => {
            const room = rooms[(round + 3 * i) % rooms.length];
            s.emit("join", room);
            if (round % 3 !== 2) s.emit("leave", room);
          });
        }
        sockets.forEach((s) => s.emit("sync"));
        await once(sockets[0], "finish");
        done(true);
    """, url_)
    wait_for(lambda: len(synced) == 3, "the sockets to be done joining and leaving")
    rooms = {room for rooms in synced for room in rooms}
    assert rooms and rooms != {f"room{i}" for i in range(9)}   # some rooms are left, some not
    assert adapter.all_rooms() - set(io.sockets.sockets) == rooms
    wait_for(lambda: in_thread(shard_channels, url, cluster, redis_key) == fixed | {
        f"{adapter.channel}{room}#" for room in rooms}, "the room channels to match the rooms")
    io.emit("finish")
    assert clients.result() is True
    wait_for(lambda: in_thread(shard_channels, url, cluster, redis_key) == fixed,
             "the room channels to go with the sockets")
    io.close()
    factory.close()
    wait_for(lambda: in_thread(shard_channels, url, cluster, redis_key) == set(),
             "no subscription left after close")


def test_an_unexpected_error_in_the_subscriber_is_logged_and_it_reconnects(
        redis_url, redis_key, caplog, monkeypatch, wait_for):
    # Before, only Redis and connection errors were caught: anything else ended the
    # subscriber greenlet silently, and every channel of that node went unheard for good.
    client = make_client(redis_url)
    hub = RedisHub(client, client)
    hub.acquire()
    got: list[bytes] = []
    channel = f"{redis_key}#unexpected"
    try:
        hub.subscribe([channel], lambda name, data: got.append(data))
        wait_for(hub.connected.is_set)
        hub.publish(channel, b"before")
        wait_for(lambda: got == [b"before"])

        failures = []
        real_get_message = redis.client.PubSub.get_message

        def broken_once(self, *args, **kwargs):
            if not failures:
                failures.append(1)
                raise RuntimeError("a bug in the subscriber")
            return real_get_message(self, *args, **kwargs)

        monkeypatch.setattr(redis.client.PubSub, "get_message", broken_once)
        wait_for(lambda: failures)
        # back on its channels: a message published now arrives
        wait_for(lambda: hub.publish(channel, b"after") is None and b"after" in got, timeout=10)
        assert "subscriber of" in caplog.text and "a bug in the subscriber" in caplog.text
    finally:
        hub.release()

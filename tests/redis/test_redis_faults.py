"""Faults: Redis going away and coming back, and a server leaving the cluster.
These tests start their own redis-server on a free port."""
from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time

import gevent
import pytest

from redis_nodes import emit_until_received
from test_redis_cluster import CLIENTS, srt


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
            conn.sendall(b"*1\r\n$4\r\nPING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class OwnRedis:
    """A redis-server of this test only, which the test may stop and start again."""

    def __init__(self, workdir, wait_for) -> None:
        self.wait_for = wait_for
        self.binary = shutil.which("redis-server")
        assert self.binary, "redis-server is not installed"
        self.port = _free_port()
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}"
        self.proc = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no"], cwd=str(self.workdir),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_for(lambda: _answers(self.port), "redis-server to start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@pytest.fixture
def own_redis(tmp_path, wait_for):
    server = OwnRedis(tmp_path, wait_for)
    yield server
    server.stop()


def counted(nodes, count):
    for node in nodes:
        node.wait_for(lambda: node.call("serverCount") == count, f"{node.kind} node to count {count}")


def test_redis_restart_broadcasts_resume(cluster, own_redis, start_js, wait_for):
    nodes = [cluster("roomcast", redis=own_redis.url, requestsTimeout=1.0) for _ in range(2)]
    n0, n1 = nodes
    counted(nodes, 2)
    clients = start_js(f"const URLS = {[n.url for n in nodes]!r}; const NSP = '';\n" + CLIENTS, n0.url)
    for node in nodes:
        node.wait_clients(2)
    # acked by all four: delivered everywhere before Redis goes away
    assert sorted(n0.call("emitWithAck", ev="before", args=[1], timeout=3.0)) == ["a0", "a1", "b0", "b1"]

    own_redis.stop()
    # the servers keep serving their own clients, and say what could not be published
    n0.call("emit", ev="during", args=[2])
    n1.call("emit", ev="during", args=[3])
    assert sorted(s["data"]["port"] for s in n0.call("fetchSockets")) == [n0.port, n0.port]
    wait_for(lambda: "could not be published" in n0.stderr, "the publish error in the log")
    assert "Traceback" not in n0.stderr + n1.stderr

    down = time.monotonic()
    own_redis.start()
    counted(nodes, 2)   # both resubscribed by themselves
    assert time.monotonic() - down < 6.0   # the reconnect backoff is capped at 2 s
    n1.call("emit", ev="after", args=[4])
    n0.call("emit", ev="after", args=[5])
    for node in nodes:
        node.call("emit", ev="end")
    got = clients.result()["got"]
    for name in ("a0", "b0"):
        assert srt(got[name]) == srt([["before", 1], ["during", 2], ["after", 4], ["after", 5]])
    for name in ("a1", "b1"):
        assert srt(got[name]) == srt([["before", 1], ["during", 3], ["after", 4], ["after", 5]])
    assert "subscriber reconnected" in n0.stderr


def test_a_server_that_leaves_does_not_fail_requests(cluster, start_js):
    # requests_timeout 1 s: n2 stops answering (SIGSTOP) and then dies while n0 waits
    nodes = [cluster("roomcast", requestsTimeout=1.0) for _ in range(3)]
    n0, n1, n2 = nodes
    counted(nodes, 3)
    clients = start_js(f"const URLS = {[n.url for n in nodes]!r}; const NSP = '';\n" + CLIENTS, n0.url)
    for node in nodes:
        node.wait_clients(2)

    n2.proc.send_signal(signal.SIGSTOP)
    started = time.monotonic()
    fetch = gevent.spawn(n0.call, "fetchSockets")
    emit = gevent.spawn(n0.call, "serverSideEmitWithAck", ev="server_side", args=["ask"])
    gevent.sleep(0.3)   # pacing the scenario: n2 dies while n0's requests wait for it
    n2.proc.kill()
    sockets, responses = fetch.get(timeout=5), emit.get(timeout=5)
    assert time.monotonic() - started < 1.0 + 1.5   # the 1 s timeout, slack for a loaded machine
    assert sorted(s["data"]["port"] for s in sockets) == sorted([n0.port, n0.port, n1.port, n1.port])
    assert responses == [{"from": "roomcast", "port": n1.port, "args": ["ask"]}]
    assert "servers answered within" in n0.stderr
    for node in (n0, n1):
        node.call("emit", ev="end")
    clients.kill()


def test_a_silent_redis_is_detected_and_left(serve, start_js, own_redis, redis_key, caplog, wait_for):
    """Redis stops answering without closing the connection (SIGSTOP, like a network
    partition): the subscriber notices by its PING, reconnects once Redis is back."""
    import logging

    import roomcast
    from roomcast import Emitter
    from roomcast.adapters.redis import RedisAdapter

    factory = RedisAdapter.factory(own_redis.url, key=redis_key)
    factory.hub.ping_after, factory.hub.pong_within = 0.3, 0.3
    io = roomcast.Server(adapter=factory)
    url = serve(io)
    client = start_js("""
        const s = io(URL, { transports: ["websocket"] });
        const [msg] = await once(s, "back");
        done(msg);
    """, url)
    wait_for(lambda: len(io.sockets.sockets) == 1 and factory.hub.connected.is_set(), "the client")
    with caplog.at_level(logging.WARNING, logger="roomcast.redis"):
        own_redis.proc.send_signal(signal.SIGSTOP)
        try:
            wait_for(lambda: "no answer to PING" in caplog.text, "the silence to be noticed")
            assert not factory.hub.connected.is_set()
        finally:
            own_redis.proc.send_signal(signal.SIGCONT)
        wait_for(lambda: factory.hub.connected.is_set(), "the reconnection")
        emit_until_received(wait_for, Emitter(own_redis.url, key=redis_key), client, "back", "again")
        assert client.result() == "again"
    io.close()


def test_server_starts_and_serves_without_redis(serve, run_js, start_js, own_redis, redis_key, caplog, wait_for):
    """No Redis at start: the server serves its clients, logs, and joins once Redis is up."""
    import logging

    import roomcast
    from roomcast import Emitter
    from roomcast.adapters import RedisAdapter

    own_redis.stop()
    with caplog.at_level(logging.WARNING, logger="roomcast.redis"):
        factory = RedisAdapter.factory(own_redis.url, key=redis_key)
        io = roomcast.Server(adapter=factory)
        io.on("connection", lambda socket: socket.on("echo", lambda x, ack: ack(x)))
        url = serve(io)
        assert run_js("""
            const s = io(URL, { transports: ["websocket"] });
            done(await s.emitWithAck("echo", "served"));
        """, url) == "served"
        assert io.sockets.fetch_sockets() == [] and io.sockets.adapter.server_count() == 1
        io.emit("nobody")   # no client left, and nowhere to publish: logged
        wait_for(lambda: "could not be published" in caplog.text, "the publish error")
        assert f"subscriber connection to 127.0.0.1:{own_redis.port} lost" in caplog.text
        client = start_js("""
            const s = io(URL, { transports: ["websocket"] });
            const [msg] = await once(s, "late");
            done(msg);
        """, url)
        own_redis.start()
        wait_for(lambda: factory.hub.connected.is_set() and len(io.sockets.sockets) == 1, "Redis")
        emit_until_received(wait_for, Emitter(own_redis.url, key=redis_key), client, "late", "arrived")
        assert client.result() == "arrived"
    io.close()

"""A roomcast node that gets SIGTERM under io.run() leaves the Redis cluster cleanly:
its clients get everything queued and a close, and the other nodes count it gone."""
from __future__ import annotations

import json
import sys

import gevent

import roomcast
from roomcast.adapters.redis import RedisAdapter
from tests.processes import free_port, start_process, stop_process
from tests.rawclient import RawWebSocket


def test_sigterm_leaves_the_cluster_cleanly(redis_url, redis_key, wait_for, impl):
    other = roomcast.Server(adapter=RedisAdapter.factory(redis_url, key=redis_key))
    port = free_port()
    proc = start_process([sys.executable, "-m", "tests.apps.sigterm_app", str(port),
                          redis_url, redis_key], port, impl, wait_for)
    try:
        adapter = other.sockets.adapter
        wait_for(lambda: adapter.server_count() == 2, "the node to join the cluster")
        ws = RawWebSocket(f"http://127.0.0.1:{port}", query="EIO=4&transport=websocket")
        assert ws.recv().startswith("0{")
        ws.send("40")
        assert ws.recv().startswith("40{")
        ws.send('42["flood_then_term",200]')
        got = []
        try:
            while True:
                got.append(json.loads(ws.recv(timeout=20)[2:])[1])
        except ConnectionError as exc:
            assert "closed by server" in str(exc)
        assert got == list(range(200))
        assert proc.wait(timeout=15) == 0
        # PUBSUB NUMSUB of the request channel: only the other node is left
        wait_for(lambda: adapter.server_count() == 1, "the node to leave the cluster")
        ws.close()
    finally:
        if proc.poll() is None:
            stop_process(proc)
        other.close(timeout=0.2)
        gevent.sleep(0)


def test_close_unsubscribes_before_the_process_ends(redis_url, redis_key, wait_for):
    """io.close() itself leaves (PUBSUB NUMSUB drops while this process lives on)."""
    leaving = roomcast.Server(adapter=RedisAdapter.factory(redis_url, key=redis_key))
    staying = roomcast.Server(adapter=RedisAdapter.factory(redis_url, key=redis_key))
    try:
        adapter = staying.sockets.adapter
        wait_for(lambda: adapter.server_count() == 2, "both nodes in the cluster")
        leaving.close(timeout=1.0)
        wait_for(lambda: adapter.server_count() == 1, "the closed node to leave")
    finally:
        staying.close(timeout=0.2)

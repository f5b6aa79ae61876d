"""Graceful shutdown: io.close() and SIGTERM under io.run() stop accepting, flush what
is queued, close every client so that it reconnects elsewhere, within a bound."""
from __future__ import annotations

import json
import sys
import time

import gevent
import pytest
from gevent import socket

import roomcast
from roomcast import wsgi
from tests.processes import free_port, start_process, stop_process
from tests.rawclient import KeepAliveConnection, RawWebSocket, handshake, request

N = 2000
PAYLOAD = "x" * 1000


def sio_client(url: str) -> RawWebSocket:
    ws = RawWebSocket(url, query="EIO=4&transport=websocket")
    assert ws.recv().startswith("0{")
    ws.send("40")
    assert ws.recv().startswith("40{")
    return ws


def read_all_then_close(ws: RawWebSocket) -> tuple[list[int], bool]:
    """The broadcast numbers a client reads until the server's close frame."""
    got = []
    try:
        while True:
            got.append(json.loads(ws.recv(timeout=20)[2:])[1])
    except ConnectionError as exc:
        return got, "closed by server" in str(exc)


def test_close_flushes_what_is_queued_and_closes_every_client(wait_for):
    io = roomcast.Server()
    server = wsgi.make_server(io, "127.0.0.1", 0)
    server.start()
    url = f"http://127.0.0.1:{server.server_port}"
    disconnects: list[str] = []
    io.on("connection", lambda s: s.on("disconnect", disconnects.append))
    readers = [sio_client(url) for _ in range(5)]
    # a polling client on a kept-alive connection, as browsers poll
    sid, _ = handshake(url)
    q = f"EIO=4&transport=polling&sid={sid}"
    request(url, "POST", query=q, body="40")
    polling = KeepAliveConnection(url)
    assert polling.request(query=q).text.startswith("40{")

    def poll_until_closed() -> list[str]:
        packets: list[str] = []
        while not packets or packets[-1] != "1":
            packets += polling.request(query=q, timeout=20).text.split("\x1e")
        return packets

    poll = gevent.spawn(poll_until_closed)
    wait_for(lambda: len(io.sockets.sockets) == 6, "every client connected")
    wait_for(lambda: server.connections == 6, "the GET to be in")

    # 2 MB for every client, in one go: most of it is queued when close() starts
    for i in range(N):
        io.emit("m", i, PAYLOAD)
    started = time.monotonic()
    closer = gevent.spawn(io.close, 10.0)
    # no new connection once close() started
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.server_port), timeout=2)

    results = [gevent.spawn(read_all_then_close, ws) for ws in readers]
    gevent.joinall(results, timeout=30)
    for result in results:
        got, closed = result.get()
        assert got == list(range(N)) and closed
    polled = poll.get(timeout=20)   # every broadcast, then the close packet
    assert [json.loads(p[2:])[1] for p in polled[:-1]] == list(range(N))
    closer.get(timeout=15)
    assert time.monotonic() - started < 10
    assert disconnects == ["server shutting down"] * 6
    assert io.engine.clients_count == 0
    for ws in readers:
        ws.close()
    polling.close()


def test_close_returns_at_the_deadline_when_a_client_does_not_read(wait_for):
    io = roomcast.Server(max_send_buffer=None)   # the stuck client is not closed before
    server = wsgi.make_server(io, "127.0.0.1", 0)
    server.start()
    url = f"http://127.0.0.1:{server.server_port}"
    stuck = sio_client(url)        # never reads again
    reader = sio_client(url)
    wait_for(lambda: len(io.sockets.sockets) == 2, "both clients connected")
    for i in range(300):
        io.emit("m", i, "y" * 64_000)   # 19 MB: far beyond the socket buffers
    reading = gevent.spawn(read_all_then_close, reader)
    started = time.monotonic()
    io.close(timeout=1.0)
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 5
    assert io.engine.clients_count == 0
    got, closed = reading.get(timeout=30)
    assert closed   # the reading client got its close (all of it if it kept up)
    stuck.close()
    reader.close()


def test_sigterm_under_io_run_closes_gracefully(impl, wait_for):
    port = free_port()
    proc = start_process([sys.executable, "-m", "tests.apps.sigterm_app", str(port)], port, impl, wait_for)
    try:
        url = f"http://127.0.0.1:{port}"
        clients = [sio_client(url) for _ in range(3)]
        clients[0].send('42["flood_then_term",500]')
        started = time.monotonic()
        results = [gevent.spawn(read_all_then_close, ws) for ws in clients]
        gevent.joinall(results, timeout=30)
        for result in results:
            got, closed = result.get()
            assert got == list(range(500)) and closed
        assert proc.wait(timeout=15) == 0
        assert time.monotonic() - started < 12
        assert proc.stdout.read().decode().split() == ["ready", "stopped"]
        for ws in clients:
            ws.close()
    finally:
        if proc.poll() is None:
            stop_process(proc)

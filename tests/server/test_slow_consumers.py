"""Slow consumers: a client that stops reading (and keeps ponging, so no ping timeout
saves the server) is closed at max_send_buffer or after a write stall; volatile
packets are dropped first; everyone else gets everything."""
from __future__ import annotations

import json
import time

import gevent

import roomcast
from tests.rawclient import RawWebSocket

KB = "x" * 1000


def sio_client(url: str, rcvbuf: int | None = None) -> RawWebSocket:
    ws = RawWebSocket(url, query="EIO=4&transport=websocket", rcvbuf=rcvbuf)
    assert ws.recv().startswith("0{")
    ws.send("40")
    assert ws.recv().startswith("40{")
    return ws


def stuck_client(url: str, pong_every: float = 0.1) -> tuple[RawWebSocket, gevent.Greenlet]:
    """A client that never reads again but sends a pong every pong_every seconds."""
    ws = sio_client(url, rcvbuf=4096)

    def pong() -> None:
        try:
            while True:
                ws.send("3")
                gevent.sleep(pong_every)
        except OSError:
            pass

    return ws, gevent.spawn(pong)


def reading(ws: RawWebSocket, got: list) -> gevent.Greenlet:
    def read() -> None:
        try:
            while True:
                got.append(json.loads(ws.recv(timeout=30)[2:])[1])
        except (ConnectionError, gevent.Timeout):
            pass
    return gevent.spawn(read)


def server(**kwargs) -> tuple[roomcast.Server, dict]:
    io = roomcast.Server(**kwargs)
    reasons: dict = {}
    io.on("connection", lambda s: s.on("disconnect", lambda r: reasons.__setitem__(s.id, r)))
    return io, reasons


def flood(io: roomcast.Server, n: int, volatile: bool = False, until=None) -> int:
    """n broadcasts of 1 KB (fewer when until() turns true); returns how many."""
    op = io.volatile if volatile else io
    for i in range(n):
        op.emit("m", i, KB)
        if i % 50 == 0:
            gevent.sleep(0)   # the reading clients read meanwhile
            if until is not None and until():
                return i + 1
    return n


def test_a_non_reading_ponging_client_is_closed_at_max_send_buffer(serve, wait_for):
    io, reasons = server(max_send_buffer=256 * 1024)
    url = serve(io)
    normal = sio_client(url)
    got: list = []
    reader = reading(normal, got)
    stuck, ponger = stuck_client(url)
    wait_for(lambda: len(io.sockets.sockets) == 2, "both clients connected")
    # 1 KB broadcasts until the stuck client is closed: the kernel takes a few MB first
    sent = flood(io, 20000, until=lambda: reasons)
    wait_for(lambda: list(reasons.values()) == ["send buffer full"], "the stuck client closed")
    wait_for(lambda: len(got) == sent, "the normal client to get every broadcast")
    assert got == list(range(sent))
    assert len(io.sockets.sockets) == 1 and io.engine.clients_count == 1
    assert stuck.wait_closed(timeout=10)
    ponger.kill()
    reader.kill()
    normal.close()
    stuck.close()


def test_volatile_packets_are_dropped_before_a_close(serve, wait_for):
    io, reasons = server(max_send_buffer=256 * 1024)
    url = serve(io)
    stuck, ponger = stuck_client(url)
    wait_for(lambda: len(io.sockets.sockets) == 1, "the client connected")
    flood(io, 20000, volatile=True)   # 20 MB of volatile packets: dropped, not queued
    gevent.sleep(0)
    assert reasons == {} and io.engine.clients_count == 1
    flood(io, 20000, until=lambda: reasons)   # ordinary packets: closed
    wait_for(lambda: list(reasons.values()) == ["send buffer full"], "the stuck client closed")
    ponger.kill()
    stuck.close()


def test_a_write_stall_closes_a_ponging_client(serve, wait_for):
    """Under max_send_buffer, a socket that takes no byte for ping_interval +
    ping_timeout while something is queued is closed, although it pongs."""
    io, reasons = server(ping_interval=0.4, ping_timeout=0.4, max_send_buffer=None)
    url = serve(io)
    normal = sio_client(url)
    got: list = []
    reader = reading(normal, got)
    stuck, ponger = stuck_client(url, pong_every=0.1)
    wait_for(lambda: len(io.sockets.sockets) == 2, "both clients connected")
    # broadcasts until the kernel takes no more from the stuck client's socket
    started = time.monotonic()   # the stall clock starts later, at the first queued byte
    sent = 0
    while not any(c.queued_bytes for c in list(io.engine.clients.values())):
        sent += flood(io, 200)
    wait_for(lambda: list(reasons.values()) == ["write timeout"], "the stalled client closed")
    assert time.monotonic() - started >= 0.7   # not before ping_interval + ping_timeout
    wait_for(lambda: len(got) == sent, "the normal client to get every broadcast")
    assert io.engine.clients_count == 1
    ponger.kill()
    reader.kill()
    normal.close()
    stuck.close()


def test_engine_server_option_and_close_reason(serve, wait_for):
    engine = roomcast.EngineServer(max_send_buffer=64 * 1024)
    closed: list = []
    engine.on("connection", lambda conn: conn.on("close", lambda r, d: closed.append(r)))
    url = serve(engine)
    ws = RawWebSocket(url, "/engine.io/", rcvbuf=4096)
    assert ws.recv().startswith("0{")
    wait_for(lambda: engine.clients_count == 1, "the session")
    conn = next(iter(engine.clients.values()))
    for _ in range(20000):
        conn.send(KB)
        if closed:
            break
    wait_for(lambda: closed == ["send buffer full"], "the session closed")
    assert engine.clients_count == 0
    ws.close()


def test_default_is_a_few_mib():
    assert roomcast.Server().engine.max_send_buffer == 4 * 1024 * 1024
    assert roomcast.EngineServer().max_send_buffer == 4 * 1024 * 1024


def test_a_deflate_client_is_counted_at_its_compressed_size(serve, run_js):
    """A permessage-deflate client gets the shared compressed frames: they count at the
    size written, so a healthy client never drifts towards max_send_buffer."""
    io, reasons = server(per_message_deflate=True, max_send_buffer=64 * 1024)
    big = "roomcast " * 500   # 4.5 KB, compressible

    @io.on("connection")
    def on_connection(socket):
        def go(n, ack):
            for i in range(n):
                io.emit("big", i, big)   # 9 MB uncompressed in all, 30 at a time
                if i % 30 == 29:
                    gevent.sleep(0.01)
            ack()
        socket.on("go", go)

    url = serve(io)
    got = run_js("""
        const s = io(URL, {transports: ["websocket"]});
        await once(s, "connect");
        let n = 0;
        s.on("big", () => { n += 1; });
        await s.emitWithAck("go", 2000);
        while (n < 2000 && s.connected) await sleep(20);
        done([n, s.connected, s.io.engine.transport.ws._extensions["permessage-deflate"] !== undefined]);
    """, url, timeout=60)
    assert got == [2000, True, True]
    assert list(reasons.values()) in ([], ["client namespace disconnect"])   # done() closes it

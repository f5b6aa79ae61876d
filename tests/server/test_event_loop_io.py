"""The read and dispatch path: WebSockets read by the event loop (no greenlet per
connection), events dispatched in order by shared workers, blocked handlers that
stall neither other sockets nor heartbeats, handler errors logged by name."""
import gc
import logging
import os
import time

import gevent
import gevent.event
import gevent.socket
import greenlet
import pytest

import roomcast
from roomcast.compat import Server as CompatServer


def test_events_start_in_order_and_share_workers(serve, run_js):
    io = roomcast.Server()
    seen = []

    @io.on("connection")
    def connection(socket):
        @socket.on("n")
        def n(i, ack):
            seen.append((i, gevent.getcurrent()))   # kept alive: no address reuse
            if i == 0:
                time.sleep(0.3)   # holds the whole process: the other 59 pile up unread
            ack(i)

    acks = run_js("""
        const s = io(URL, {transports: ["websocket"]});
        await once(s, "connect");
        done(await Promise.all(Array.from({length: 60}, (_, i) => s.emitWithAck("n", i))));
    """, serve(io))
    assert acks == list(range(60))
    assert [i for i, _ in seen] == list(range(60))
    # events read together run one after the other in the same worker, not one greenlet each
    assert len({id(g) for _, g in seen}) <= 5


def test_blocked_handler_stalls_neither_other_sockets_nor_heartbeats(serve, run_js):
    # the blocked handler outlives several ping intervals + timeouts
    io = roomcast.Server(ping_interval=0.2, ping_timeout=0.3)
    order = []

    @io.on("connection")
    def connection(socket):
        @socket.on("slow")
        def slow(ack):
            order.append("slow starts")
            gevent.sleep(1.5)
            order.append("slow ends")
            ack("slow")

        @socket.on("fast")
        def fast(ack):
            order.append("fast")
            ack("fast")

    result = run_js("""
        const a = io(URL, {transports: ["websocket"], forceNew: true});
        const b = io(URL, {transports: ["websocket"], forceNew: true});
        await Promise.all([once(a, "connect"), once(b, "connect")]);
        const reasons = [];
        a.on("disconnect", (r) => reasons.push(r));
        const slow = a.emitWithAck("slow");
        await sleep(100);
        const fastB = await b.emitWithAck("fast");
        const fastA = await a.emitWithAck("fast");   // the same socket's next event runs too
        done({fastB, fastA, slow: await slow, connected: a.connected, reasons});
    """, serve(io))
    assert result == {"fastB": "fast", "fastA": "fast", "slow": "slow", "connected": True,
                      "reasons": []}
    assert order == ["slow starts", "fast", "fast", "slow ends"]


def test_sync_handlers_run_one_at_a_time_per_socket_over_websocket(serve, run_js):
    io = roomcast.Server(async_handlers=False)
    order = []

    @io.on("connection")
    def connection(socket):
        @socket.on("step")
        def step(name, pause, ack):
            order.append(name + " starts")
            gevent.sleep(pause)
            order.append(name + " ends")
            ack(name)

    result = run_js("""
        const a = io(URL, {transports: ["websocket"], forceNew: true});
        const b = io(URL, {transports: ["websocket"], forceNew: true});
        await Promise.all([once(a, "connect"), once(b, "connect")]);
        const first = a.emitWithAck("step", "a1", 0.4);
        const second = a.emitWithAck("step", "a2", 0);
        await sleep(100);
        const other = await b.emitWithAck("step", "b", 0);
        done([other, await first, await second]);
    """, serve(io))
    assert result == ["b", "a1", "a2"]
    # a's second event waited for its first; b's ran meanwhile
    assert order == ["a1 starts", "b starts", "b ends", "a1 ends", "a2 starts", "a2 ends"]


def test_a_raising_handler_is_logged_with_its_name(serve, run_js, caplog):
    io = roomcast.Server()

    def report_totals(ack):
        raise RuntimeError("handler bug")

    io.on("connection", lambda socket: socket.on("totals", report_totals))
    sio = CompatServer()

    @sio.on("totals")
    def compat_totals(sid):
        raise RuntimeError("compat handler bug")

    with caplog.at_level(logging.ERROR):
        for server in (io, sio):
            assert run_js("""
                const s = io(URL, {transports: ["websocket"]});
                await once(s, "connect");
                s.emit("totals", () => {});
                await sleep(200);
                done(s.connected);
            """, serve(server)) is True
    text = caplog.text
    assert "report_totals" in text and "handler bug" in text
    assert "compat_totals" in text and "compat handler bug" in text
    assert "<lambda>" not in text


def _greenlets() -> int:
    return sum(1 for obj in gc.get_objects() if isinstance(obj, greenlet.greenlet))


def test_idle_websocket_sessions_hold_no_greenlet(serve, start_js, wait_for):
    io = roomcast.Server()
    url = serve(io)
    gc.collect()
    before = _greenlets()
    clients = start_js("""
        const all = Array.from({length: 40}, () => io(URL, {transports: ["websocket"], forceNew: true}));
        await Promise.all(all.map((s) => once(s, "connect")));
        await Promise.all(all.map((s) => once(s, "bye")));
        done(all.every((s) => s.connected));
    """, url)
    wait_for(lambda: len(io.sockets.sockets) == 40, "40 connected sockets")
    gc.collect()
    held = _greenlets() - before
    io.emit("bye")
    assert clients.result() is True
    assert held < 10, f"{held} greenlets for 40 idle WebSocket sessions"


def _masked(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body


def test_frames_sent_with_the_upgrade_request_are_read(serve):
    """The HTTP server may have read past the upgrade request: those bytes are not lost."""
    io = roomcast.Server()
    connected = gevent.event.AsyncResult()
    io.on("connection", connected.set)
    host, port = serve(io).rsplit(":", 1)
    sock = gevent.socket.create_connection(("127.0.0.1", int(port)))
    try:
        request = ("GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: cm9vbWNhc3QtYmVuY2htYQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        # the Socket.IO CONNECT in the same write as the upgrade request
        sock.sendall(request.encode() + _masked(1, b"40"))
        socket = connected.get(timeout=10)
        received = b""
        with gevent.Timeout(10):
            while socket.id.encode() not in received:
                received += sock.recv(4096)
        assert b"101 Switching Protocols" in received and b'40{"sid":"' in received
    finally:
        sock.close()


@pytest.mark.parametrize("count", [200])
def test_many_writes_in_one_pass_arrive_whole_and_in_order(serve, run_js, count):
    """A handler that emits in a tight loop: the writes are coalesced, none is lost."""
    io = roomcast.Server()

    @io.on("connection")
    def connection(socket):
        @socket.on("burst")
        def burst(n):
            for i in range(n):
                socket.emit("m", i)
                io.to(socket.id).emit("r", i)

    got = run_js(f"""
        const s = io(URL, {{transports: ["websocket"]}});
        await once(s, "connect");
        const m = [], r = [];
        s.on("m", (i) => m.push(i));
        s.on("r", (i) => r.push(i));
        s.emit("burst", {count});
        while (m.length < {count} || r.length < {count}) await sleep(10);
        done({{m, r}});
    """, serve(io))
    assert got == {"m": list(range(count)), "r": list(range(count))}

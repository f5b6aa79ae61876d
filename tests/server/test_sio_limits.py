"""Heartbeats and max_http_buffer_size, driven by the real JS client in both transports."""
from __future__ import annotations

import gevent
import pytest

import roomcast

TRANSPORTS = pytest.mark.parametrize("transport", ["websocket", "polling"])


@TRANSPORTS
def test_heartbeats_keep_an_idle_client_alive_over_several_intervals(serve, run_js, transport):
    io = roomcast.Server(ping_interval=0.2, ping_timeout=0.3)
    reasons = []

    @io.on("connection")
    def connection(socket):
        socket.on("disconnect", reasons.append)
        socket.on("still", lambda ack: ack(socket.id))

    url = serve(io)
    result = run_js(f"""
        const s = io(URL, {{transports: ["{transport}"], reconnection: false}});
        await once(s, "connect");
        const id = s.id;
        let pings = 0, closed = false;
        s.io.engine.on("ping", () => pings++);
        s.on("disconnect", () => closed = true);
        await sleep(1600);   // deliberately idle for eight ping intervals: only heartbeats flow
        const echoed = await s.emitWithAck("still");
        done({{pings, closed, same: echoed === id && s.id === id}});
    """, url)
    assert result["pings"] >= 5 and not result["closed"] and result["same"]
    assert set(reasons) <= {"client namespace disconnect"}   # only done() closing it


@TRANSPORTS
def test_payloads_just_under_and_over_max_http_buffer_size(serve, run_js, transport, wait_for):
    limit = 2000
    io = roomcast.Server(max_http_buffer_size=limit)
    reasons = []

    @io.on("connection")
    def connection(socket):
        socket.on("big", lambda text, ack: ack(len(text)))
        socket.on("disconnect", reasons.append)

    url = serve(io)
    overhead = len('42["big","",0]')           # Engine.IO + Socket.IO framing, ack id 0
    under, over = limit - overhead - 10, limit + 100
    result = run_js(f"""
        const s = io(URL, {{transports: ["{transport}"], reconnection: false}});
        await once(s, "connect");
        const got = await s.emitWithAck("big", "u".repeat({under}));
        const gone = once(s, "disconnect");
        s.emit("big", "o".repeat({over}), () => {{}});
        const [reason] = await gone;
        done({{got, reason}});
    """, url)
    assert result["got"] == under
    assert result["reason"] in ("transport close", "transport error")
    wait_for(lambda: reasons, "the server's disconnect reason")
    # WebSocket: the message over maxPayload closes that connection; polling: the POST
    # gets 413 and the client gives the connection up.
    assert reasons[0] in ("transport error", "transport close", "ping timeout")

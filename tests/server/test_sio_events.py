"""Events and acks in both directions, with the real JS client."""
from __future__ import annotations

import gevent
import pytest

import roomcast


def test_event_with_ack_from_server(serve, run_js, transport):
    io = roomcast.Server()

    @io.on("connection")
    def connection(socket):
        @socket.on("add")
        def add(a, b, ack):
            ack(a + b, "sum")

    result = run_js(f"""
        const s = io(URL, {transport});
        done(await s.emitWithAck("add", 2, 3));
    """, serve(io))
    assert result == 5  # the JS client's emitWithAck resolves with the first argument


def test_ack_with_several_values_and_event_args(serve, run_js):
    io = roomcast.Server()
    got = []

    @io.on("connection")
    def connection(socket):
        socket.on("ev", lambda *args: (got.append(args[:-1]), args[-1](*args[:-1])))

    result = run_js("""
        const s = io(URL);
        s.emit("ev", 1, "two", {three: [3]}, null, (...values) => done(values));
    """, serve(io))
    assert result == [1, "two", {"three": [3]}, None]
    assert got == [(1, "two", {"three": [3]}, None)]


def test_server_emit_with_callback_and_emit_with_ack(serve, run_js, transport):
    io = roomcast.Server()
    results = []

    @io.on("connection")
    def connection(socket):
        socket.emit("ask", 10, callback=lambda *values: results.append(("callback", values)))
        results.append(("blocking", socket.emit_with_ack("ask", 20)))
        results.append(("tuple", socket.emit_with_ack("pair", timeout=5)))
        socket.emit("finish")

    run_js(f"""
        const s = io(URL, {transport});
        s.on("ask", (n, cb) => cb(n * 2));
        s.on("pair", (cb) => cb("a", "b"));
        await once(s, "finish");
        done(null);
    """, serve(io))
    assert ("callback", (20,)) in results
    assert ("blocking", 40) in results
    assert ("tuple", ("a", "b")) in results


def test_socket_timeout_emit_reports_timeout_and_late_ack(serve, run_js):
    io = roomcast.Server()
    outcomes = []

    @io.on("connection")
    def connection(socket):
        socket.timeout(0.2).emit("never", callback=lambda err, *args: outcomes.append(
            ("never", type(err).__name__, str(err), args)))
        socket.timeout(2).emit("soon", callback=lambda err, *args: outcomes.append(
            ("soon", err, args)))
        try:
            socket.emit_with_ack("never", timeout=0.2)
        except TimeoutError as exc:
            outcomes.append(("blocking", str(exc)))
        socket.emit("finish")

    run_js("""
        const s = io(URL);
        s.on("soon", (cb) => cb("ok"));
        s.on("never", () => {});
        await once(s, "finish");
        done(null);
    """, serve(io))
    assert ("never", "TimeoutError", "operation has timed out", ()) in outcomes
    assert ("soon", None, ("ok",)) in outcomes
    assert ("blocking", "operation has timed out") in outcomes


def test_handlers_may_block_and_errors_are_logged(serve, run_js, caplog):
    io = roomcast.Server()

    @io.on("connection")
    def connection(socket):
        @socket.on("slow")
        def slow(ack):
            gevent.sleep(0.3)    # a handler that blocks a while: the others go on meanwhile
            ack("slow")

        @socket.on("fast")
        def fast(ack):
            ack("fast")

        @socket.on("boom")
        def boom():
            raise RuntimeError("handler bug")

    result = run_js("""
        const s = io(URL);
        const order = [];
        s.emit("boom");
        const a = s.emitWithAck("slow").then((v) => order.push(v));
        const b = s.emitWithAck("fast").then((v) => order.push(v));
        await Promise.all([a, b]);
        done({order, connected: s.connected});
    """, serve(io))
    assert result == {"order": ["fast", "slow"], "connected": True}
    assert "handler bug" in caplog.text


def test_sync_handlers_option(serve, run_js):
    io = roomcast.Server(async_handlers=False)
    io.on("connection", lambda s: s.on("echo", lambda v, ack: ack(v)))
    assert run_js('const s = io(URL); done(await s.emitWithAck("echo", "x"));', serve(io)) == "x"


def test_reserved_event_names_cannot_be_emitted():
    io = roomcast.Server()
    for name in ("connect", "disconnect", "disconnecting", "connect_error", "newListener"):
        with pytest.raises(ValueError, match="reserved event name"):
            io.emit(name)
        with pytest.raises(ValueError, match="reserved event name"):
            io.to("room").emit(name)
    with pytest.raises(ValueError):
        io.server_side_emit("connection")
    io.close()


def test_on_any_and_socket_middleware(serve, run_js):
    io = roomcast.Server()
    seen, errors, handled = [], [], []

    @io.on("connection")
    def connection(socket):
        socket.on_any(lambda event, *args: seen.append((event, args)))

        def guard(packet, next):
            if packet[0] == "forbidden":
                next(ValueError("not allowed"))
            else:
                if packet[0] == "allowed":
                    packet.append("checked")   # a middleware may alter the arguments
                next()

        socket.use(guard)
        socket.on("error", lambda err: errors.append(str(err)))
        socket.on("forbidden", lambda *a: handled.append("forbidden"))
        socket.on("allowed", lambda value, tag: handled.append((value, tag)))
        socket.on("done", lambda ack: ack())

    run_js("""
        const s = io(URL);
        s.emit("forbidden", 1);
        s.emit("allowed", 2);
        await s.emitWithAck("done");
        done(null);
    """, serve(io))
    assert ("forbidden", (1,)) in seen and ("allowed", (2,)) in seen
    assert errors == ["not allowed"]
    assert handled == [(2, "checked")]


def test_on_any_outgoing_and_off(serve, run_js):
    io = roomcast.Server()
    out = []

    @io.on("connection")
    def connection(socket):
        listener = socket.on_any_outgoing(lambda event, *args: out.append((event, args)))
        socket.emit("one", 1)
        io.emit("broadcast", 2)          # per recipient, for broadcasts as well
        socket.off_any_outgoing(listener)
        socket.emit("two", 2)
        socket.emit("finish")

    run_js('const s = io(URL); await once(s, "finish"); done(null);', serve(io))
    assert out == [("one", (1,)), ("broadcast", (2,))]
    assert io.sockets._outgoing_listeners == 0


def test_socket_data_and_send(serve, run_js):
    io = roomcast.Server()

    @io.on("connection")
    def connection(socket):
        socket.data["user"] = {"name": "ada"}
        socket.send("hello", socket.data["user"])

    result = run_js('const s = io(URL); done(await once(s, "message"));', serve(io))
    assert result == ["hello", {"name": "ada"}]


def test_events_sent_while_connection_handler_blocks_are_not_lost(serve, run_js):
    io = roomcast.Server()

    @io.on("connection")
    def connection(socket):
        socket.emit("ready")
        gevent.sleep(0.2)            # the client's event arrives meanwhile
        socket.on("early", lambda ack: ack("handled"))

    result = run_js("""
        const s = io(URL);
        await once(s, "ready");
        done(await s.emitWithAck("early"));
    """, serve(io))
    assert result == "handled"


def test_unserialisable_emit_raises_type_error(serve, run_js):
    io = roomcast.Server()
    errors = []

    @io.on("connection")
    def connection(socket):
        try:
            socket.emit("bad", object())
        except TypeError as exc:
            errors.append(exc)
        socket.emit("finish")

    run_js('const s = io(URL); await once(s, "finish"); done(null);', serve(io))
    assert len(errors) == 1


def test_once_and_off(serve, run_js):
    io = roomcast.Server()
    calls = []

    @io.on("connection")
    def connection(socket):
        socket.once("tick", lambda n: calls.append(("once", n)))
        removed = socket.on("tick", lambda n: calls.append(("removed", n)))
        socket.off("tick", removed)
        socket.on("tick", lambda n: calls.append(("on", n)))
        socket.on("sync", lambda ack: ack())

    run_js("""
        const s = io(URL);
        s.emit("tick", 1);
        s.emit("tick", 2);
        await s.emitWithAck("sync");
        done(null);
    """, serve(io))
    assert calls == [("once", 1), ("on", 1), ("on", 2)]


def test_many_events_keep_their_order(serve, run_js, transport):
    io = roomcast.Server()
    got = []

    @io.on("connection")
    def connection(socket):
        socket.on("n", got.append)
        socket.on("sync", lambda ack: ack(len(got)))

    count = run_js(f"""
        const s = io(URL, {transport});
        for (let i = 0; i < 500; i++) s.emit("n", i);
        done(await s.emitWithAck("sync"));
    """, serve(io))
    assert count == 500 and got == list(range(500))

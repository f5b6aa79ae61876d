"""parser="msgpack": the real JS client with socket.io-msgpack-parser and the real
python-socketio client with serializer="msgpack", on both transports."""
from __future__ import annotations

import datetime as dt

import gevent.event
import pytest

import roomcast
import roomcast.compat as compat_socketio

PARSER = 'const parser = require("socket.io-msgpack-parser");'


def msgpack_server() -> tuple[roomcast.Server, dict]:
    io = roomcast.Server(parser="msgpack")
    seen: dict = {"auth": {}, "acks": [], "reasons": []}

    def on_connection(socket):
        seen["auth"][socket.nsp.name] = socket.handshake["auth"]
        socket.join(socket.handshake["auth"].get("rooms") or [])

        @socket.on("echo")
        def echo(*args):
            ack = args[-1]
            ack(*args[:-1])

        @socket.on("go")
        def go(ack):
            nsp = socket.nsp
            nsp.to("blue").emit("room", {"blob": b"\x00\x01", "list": [b"\xff", {"deep": b"z"}]})
            nsp.to("blue").except_("green").emit("blue-not-green", 1)
            nsp.emit("when", dt.datetime(2024, 5, 6, 7, 8, 9, 10000, tzinfo=dt.timezone.utc))
            seen["acks"].append(sorted(nsp.timeout(5).emit_with_ack("count")))
            seen["asked"] = socket.emit_with_ack("ask", b"q", timeout=5)
            nsp.emit("end")
            ack("went")

        socket.on("disconnect", lambda reason: seen["reasons"].append(
            (socket.handshake["auth"].get("name"), reason)))

    io.on("connection", on_connection)
    io.of("/chat").on("connection", on_connection)
    return io, seen


@pytest.mark.parametrize("nsp", ["/", "/chat"])
def test_js_client_with_the_msgpack_parser(serve, run_js, transport, nsp):
    io, seen = msgpack_server()
    result = run_js(PARSER + f"""
        const names = ["ctl", "b1", "b2", "bg"];
        const rooms = {{ctl: [], b1: ["blue"], b2: ["blue"], bg: ["blue", "green"]}};
        const socks = {{}}, got = {{}}, ended = [];
        for (const name of names) {{
            const s = io(URL + "{nsp if nsp != '/' else ''}",
                         {{forceNew: true, parser, ...{transport}, auth: {{name, rooms: rooms[name]}}}});
            socks[name] = s;
            got[name] = [];
            s.onAny((ev, ...args) => {{ if (!["end", "count", "ask"].includes(ev)) got[name].push([ev, ...args]); }});
            s.on("count", (cb) => cb(name));
            s.on("ask", (q, cb) => cb({{q, a: Buffer.from([9, 8])}}));
            ended.push(once(s, "end"));
        }}
        await Promise.all(names.map((n) => socks[n].connected ? null : once(socks[n], "connect")));
        const echoed = await new Promise((ok) => socks.ctl.emit(
            "echo", "x", {{n: [Buffer.from([1, 2, 3]), {{b: Buffer.from([4])}}]}}, 1.5, null,
            (...args) => ok(args)));
        const went = await socks.ctl.emitWithAck("go");
        await Promise.all(ended);
        const when = got.b1.find((e) => e[0] === "when")[1];
        done({{echoed, went, got, when: when instanceof Date ? when.toISOString() : String(when),
               transport: socks.ctl.io.engine.transport.name}});
    """, serve(io))
    assert result["echoed"] == ["x", {"n": [b"\x01\x02\x03", {"b": b"\x04"}]}, 1.5, None]
    assert result["went"] == "went"
    room = ["room", {"blob": b"\x00\x01", "list": [b"\xff", {"deep": b"z"}]}]
    assert [e for e in result["got"]["b1"] if e[0] != "when"] == [room, ["blue-not-green", 1]]
    assert [e for e in result["got"]["bg"] if e[0] != "when"] == [room]
    assert [e for e in result["got"]["ctl"] if e[0] != "when"] == []
    assert result["when"] == "2024-05-06T07:08:09.010Z"
    assert seen["acks"] == [["b1", "b2", "bg", "ctl"]]
    assert seen["asked"] == {"q": b"q", "a": b"\x09\x08"}
    assert seen["auth"][nsp]["name"] in ("ctl", "b1", "b2", "bg")


def test_js_client_refused_namespace_and_middleware_error(serve, run_js):
    io = roomcast.Server(parser="msgpack")

    def refuse(socket, next):
        next(roomcast.ConnectError("Not authorized", {"retry": False}))

    io.of("/locked").use(refuse)
    result = run_js(PARSER + """
        const a = io(URL + "/nowhere", {forceNew: true, parser});
        const [e1] = await once(a, "connect_error");
        const b = io(URL + "/locked", {forceNew: true, parser});
        const [e2] = await once(b, "connect_error");
        done([e1.message, e2.message, e2.data]);
    """, serve(io))
    assert result == ["Invalid namespace", "Not authorized", {"retry": False}]


@pytest.mark.parametrize("bad", ["[0xc1]", "[0x81, 0xa4, 0x74, 0x79, 0x70, 0x65, 0x09]",
                                 "'a text message'"])
def test_malformed_msgpack_closes_only_that_client(serve, run_js, wait_for, bad):
    io, seen = msgpack_server()
    result = run_js(PARSER + f"""
        const good = io(URL, {{forceNew: true, parser, auth: {{name: "good"}}}});
        const bad = io(URL, {{forceNew: true, parser, reconnection: false, auth: {{name: "bad"}}}});
        await Promise.all([once(good, "connect"), once(bad, "connect")]);
        const gone = once(bad, "disconnect");
        const raw = {bad};
        bad.io.engine.write(typeof raw === "string" ? raw : Buffer.from(raw));
        const [reason] = await gone;
        const echoed = await new Promise((ok) => good.emit("echo", "still here", (...a) => ok(a)));
        done({{reason, echoed, good: good.connected}});
    """, serve(io))
    assert result == {"reason": "transport close", "echoed": ["still here"], "good": True}
    wait_for(lambda: ("bad", "parse error") in seen["reasons"], "the bad client's disconnect")
    assert ("good", "parse error") not in seen["reasons"]


TRANSPORTS = pytest.mark.parametrize("transports", [["polling"], ["websocket"]],
                                     ids=["polling", "websocket"])


@TRANSPORTS
def test_python_socketio_msgpack_client(serve, run_psio, transports):
    io, seen = msgpack_server()
    result = run_psio(f"""
        inbox = Inbox()
        sio = socketio.Client(serializer="msgpack")
        sio.on("room", lambda data: inbox.put("room", data), namespace="/chat")
        sio.on("count", lambda: "psio", namespace="/chat")
        sio.on("ask", lambda q: {{"q": q, "a": b"\\x09\\x08"}}, namespace="/chat")
        sio.on("end", lambda: inbox.put("end"), namespace="/chat")
        sio.connect(URL, namespaces=["/", "/chat"], transports={transports!r},
                    auth={{"name": "psio", "rooms": ["blue"]}})
        echoed = sio.call("echo", ("x", {{"n": [b"\\x01", {{"b": b"\\x02"}}]}}), timeout=5,
                          namespace="/chat")
        went = sio.call("go", timeout=10, namespace="/chat")
        got = inbox.wait(2, timeout=10)
        done({{"echoed": echoed, "went": went, "got": got}})
    """, serve(io))
    assert result["echoed"] == ["x", {"n": [b"\x01", {"b": b"\x02"}]}]
    assert result["went"] == "went"
    assert result["got"] == [["room", {"blob": b"\x00\x01", "list": [b"\xff", {"deep": b"z"}]}],
                             "end"]
    assert seen["acks"] == [["psio"]]
    assert seen["asked"] == {"q": b"q", "a": b"\x09\x08"}
    assert seen["auth"]["/chat"] == {"name": "psio", "rooms": ["blue"]}


def test_compat_server_with_msgpack_serializer(serve, run_js):
    sio = compat_socketio.Server(serializer="msgpack")
    done = gevent.event.Event()

    @sio.on("hello")
    def hello(sid, data):
        sio.enter_room(sid, "r")
        sio.emit("news", {"echo": data, "bin": b"\x01"}, room="r")
        return "ok", b"\x02"

    @sio.on("disconnect")
    def disconnect(sid, reason=None):
        done.set()

    result = run_js(PARSER + """
        const s = io(URL, {forceNew: true, parser});
        await once(s, "connect");
        const news = once(s, "news");
        const answer = await new Promise((ok) => s.emit("hello", {x: Buffer.from([7])}, (...a) => ok(a)));
        done({answer, news: (await news)[0]});
    """, serve(compat_socketio.WSGIApp(sio)))
    assert result == {"answer": ["ok", b"\x02"], "news": {"echo": {"x": b"\x07"}, "bin": b"\x01"}}

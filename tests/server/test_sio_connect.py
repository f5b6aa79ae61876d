"""Socket.IO connections with the real JS client: namespaces, handshake, auth, middleware."""
from __future__ import annotations

import re
import time

import roomcast
from roomcast.errors import ConnectError

def test_connect_to_main_namespace(serve, run_js, transport):
    io = roomcast.Server()
    seen = []

    @io.on("connection")
    def connection(socket):
        seen.append(socket)
        socket.emit("welcome", socket.id)

    url = serve(io)
    result = run_js(f"""
        const s = io(URL, {transport});
        const [id] = await once(s, "welcome");
        done({{id, sid: s.id}});
    """, url)
    assert result["id"] == result["sid"]
    assert len(result["id"]) == 20
    assert result["id"] == seen[0].id
    assert seen[0].id != seen[0].conn.id   # not the Engine.IO sid


def test_handshake_fields_and_auth(serve, run_js):
    io = roomcast.Server()
    handshakes = []
    io.on("connection", lambda socket: handshakes.append(socket.handshake))
    url = serve(io)
    run_js("""
        const s = io(URL, {auth: {token: "abc"}, query: {room: "r1"},
                           extraHeaders: {"X-Custom": "yes"}});
        await once(s, "connect");
        done(null);
    """, url)
    hs = handshakes[0]
    assert hs["auth"] == {"token": "abc"}
    assert hs["query"]["room"] == "r1" and hs["query"]["EIO"] == "4"
    assert hs["headers"]["x-custom"] == "yes"
    assert hs["address"] == "127.0.0.1"
    assert hs["secure"] is False and hs["xdomain"] is False
    assert isinstance(hs["issued"], int) and isinstance(hs["time"], str)
    assert hs["url"].startswith("/socket.io/?")


def test_handshake_read_later_is_the_connections(serve, run_js):
    # socket.handshake is built when first read: it still tells the connection's time,
    # and socket.environ still holds the whole first request (wsgi.errors included)
    io = roomcast.Server()
    seen = []
    io.on("connection", lambda socket: seen.append((socket, int(time.time() * 1000))))
    run_js('const s = io(URL, {auth: {a: 1}}); await once(s, "connect"); done(null);', serve(io))
    socket, handler_ms = seen[0]
    hs = socket.handshake
    assert hs["issued"] <= handler_ms and hs["auth"] == {"a": 1}
    assert socket.handshake is hs
    env = socket.environ
    assert env["PATH_INFO"] == "/socket.io/" and env["REMOTE_ADDR"] == hs["address"]
    assert env["wsgi.errors"] is not None and env["wsgi.input"].read() == b""


def test_auth_defaults_to_empty_dict(serve, run_js):
    io = roomcast.Server()
    auths = []
    io.on("connection", lambda socket: auths.append(socket.handshake["auth"]))
    run_js('const s = io(URL); await once(s, "connect"); done(null);', serve(io))
    assert auths == [{}]


def test_custom_namespace(serve, run_js):
    io = roomcast.Server()
    chat = io.of("/chat")
    main_seen, chat_seen = [], []
    io.on("connection", lambda s: main_seen.append(s.nsp.name))

    @chat.on("connection")
    def on_chat(socket):
        chat_seen.append(socket.nsp.name)
        socket.emit("hello", socket.nsp.name)

    result = run_js("""
        const s = io(URL + "/chat");
        const [name] = await once(s, "hello");
        done(name);
    """, serve(io))
    assert result == "/chat"
    assert chat_seen == ["/chat"] and main_seen == []


def test_unknown_namespace_gets_invalid_namespace(serve, run_js):
    io = roomcast.Server()
    result = run_js("""
        const s = io(URL + "/nope");
        const [err] = await once(s, "connect_error");
        done(err.message);
    """, serve(io))
    assert result == "Invalid namespace"


def test_dynamic_namespace_regex(serve, run_js):
    io = roomcast.Server()
    parent = io.of(re.compile(r"^/dyn-\d+$"))
    created = []
    io.on("new_namespace", lambda nsp: created.append(nsp.name))

    @parent.on("connection")
    def on_connection(socket):
        socket.emit("where", socket.nsp.name)

    result = run_js("""
        const a = io(URL + "/dyn-1");
        const [where] = await once(a, "where");
        const b = io(URL + "/dyn-x");
        const [err] = await once(b, "connect_error");
        done([where, err.message]);
    """, serve(io))
    assert result == ["/dyn-1", "Invalid namespace"]
    assert created == ["/dyn-1"]
    assert io.of("/dyn-1") in parent.children


def test_dynamic_namespace_function_sees_auth_and_inherits_middleware(serve, run_js):
    io = roomcast.Server()
    parent = io.of(lambda name, auth: name.startswith("/team-") and auth.get("ok") is True)
    order = []

    def middleware(socket, next):
        order.append(("mw", socket.nsp.name))
        next()

    parent.use(middleware)
    parent.on("connection", lambda socket: order.append(("conn", socket.nsp.name)))
    result = run_js("""
        const ok = io(URL + "/team-a", {auth: {ok: true}});
        await once(ok, "connect");
        const refused = io(URL + "/team-b", {auth: {ok: false}});
        const [err] = await once(refused, "connect_error");
        done(err.message);
    """, serve(io))
    assert result == "Invalid namespace"
    assert order == [("mw", "/team-a"), ("conn", "/team-a")]


def test_parent_namespace_emit_reaches_children(serve, run_js):
    io = roomcast.Server()
    parent = io.of(re.compile(r"^/room-\w+$"))
    url = serve(io)
    ready = []
    parent.on("connection", lambda socket: ready.append(socket.nsp.name)
              if len(ready) < 1 or True else None)

    @io.on("connection")
    def go(socket):
        socket.on("go", lambda: parent.emit("all", "hi"))

    result = run_js("""
        const a = io(URL + "/room-a"), b = io(URL + "/room-b");
        await Promise.all([once(a, "connect"), once(b, "connect")]);
        const got = Promise.all([once(a, "all"), once(b, "all")]);
        io(URL).emit("go");
        done(await got);
    """, url)
    assert result == [["hi"], ["hi"]]


def test_cleanup_empty_child_namespaces(serve, run_js, wait_for):
    io = roomcast.Server(cleanup_empty_child_namespaces=True)
    parent = io.of(re.compile(r"^/tmp-\d+$"))
    run_js("""
        const s = io(URL + "/tmp-1");
        await once(s, "connect");
        const sent = once(s.io.engine, "drain");   // the DISCONNECT packet is written
        s.disconnect();
        await sent;
        done(null);
    """, serve(io))
    wait_for(lambda: not parent.children, "the child namespace to be removed")
    assert "/tmp-1" not in io._nsps and not parent.children


def test_middleware_order_and_rejection_with_data(serve, run_js):
    io = roomcast.Server()
    calls = []

    def first(socket, next):
        calls.append("first")
        next()

    def second(socket, next):
        calls.append("second")
        if socket.handshake["auth"].get("token") != "good":
            raise ConnectError("Not authorized", {"content": "retry"})
        next()

    io.use(first)
    io.use(second)
    io.on("connection", lambda socket: calls.append("connection"))
    result = run_js("""
        const bad = io(URL, {auth: {token: "bad"}});
        const [err] = await once(bad, "connect_error");
        const good = io(URL, {auth: {token: "good"}, forceNew: true});
        await once(good, "connect");
        done({message: err.message, data: err.data});
    """, serve(io))
    assert result == {"message": "Not authorized", "data": {"content": "retry"}}
    assert calls == ["first", "second", "first", "second", "connection"]


def test_middleware_next_with_error_without_data(serve, run_js):
    io = roomcast.Server()
    io.use(lambda socket, next: next(Exception("go away")))
    result = run_js("""
        const s = io(URL);
        const [err] = await once(s, "connect_error");
        done({message: err.message, hasData: err.data !== undefined});
    """, serve(io))
    assert result == {"message": "go away", "hasData": False}


def test_namespace_middleware_may_join_rooms(serve, run_js):
    io = roomcast.Server()
    nsp = io.of("/admin")

    def mw(socket, next):
        socket.join("staff")
        socket.data["role"] = "admin"
        next()

    nsp.use(mw)
    rooms = []
    nsp.on("connection", lambda s: (rooms.append(s.rooms), s.emit("role", s.data["role"])))
    result = run_js("""
        const s = io(URL + "/admin");
        const [role] = await once(s, "role");
        done(role);
    """, serve(io))
    assert result == "admin"
    assert "staff" in rooms[0] and len(rooms[0]) == 2


def test_middleware_may_block_or_call_next_later(serve, run_js):
    import gevent

    io = roomcast.Server()

    def slow_lookup(socket, next):
        gevent.sleep(0.1)                    # e.g. a database query; other clients go on
        socket.data["user"] = socket.handshake["auth"]["user"]
        next()

    def deferred(socket, next):
        gevent.spawn_later(0.05, next)       # next() from another greenlet

    io.use(slow_lookup)
    io.use(deferred)
    io.on("connection", lambda socket: socket.emit("user", socket.data["user"]))
    result = run_js("""
        const names = ["ann", "bob", "cid"];
        const socks = names.map((user) => io(URL, {forceNew: true, auth: {user}}));
        done(await Promise.all(socks.map((s) => once(s, "user").then(([u]) => u))));
    """, serve(io))
    assert result == ["ann", "bob", "cid"]


def test_run_serves_the_server_and_other_app(run_js):
    import socket as stdsocket

    import gevent

    io = roomcast.Server()
    io.on("connection", lambda socket: socket.emit("hi"))

    def other_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"plain page"]

    with stdsocket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    runner = gevent.spawn(io.run, "127.0.0.1", port, app=other_app, log=None)
    try:
        result = run_js("""
            const s = io(URL);
            await once(s, "hi");
            const page = await (await fetch(URL + "/elsewhere")).text();
            done(page);
        """, f"http://127.0.0.1:{port}")
        assert result == "plain page"
    finally:
        runner.kill()
        io.close()


def test_cleanup_child_namespace_after_a_refused_socket(serve, run_js):
    io = roomcast.Server(cleanup_empty_child_namespaces=True)
    parent = io.of(re.compile(r"^/gated-\d+$"))
    parent.use(lambda socket, next: next(ConnectError("closed")))
    result = run_js("""
        const s = io(URL + "/gated-7");
        const [err] = await once(s, "connect_error");
        done(err.message);
    """, serve(io))
    assert result == "closed"
    assert "/gated-7" not in io._nsps and not parent.children

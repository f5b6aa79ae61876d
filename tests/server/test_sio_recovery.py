"""Connection state recovery on one server, with the real socket.io-client 4.8 (it
recovers by itself when the server sends a pid). The client's connection is cut by a
TCP relay in front of the server (tests/tcp_proxy.py), as a network drop would."""
from __future__ import annotations

import re
import urllib.parse

import pytest

import roomcast
from roomcast.recovery import SessionAwareAdapter, normalize_options, offset_clock
from tcp_proxy import TcpProxy

# the client reconnects after a fixed 1.5 s: by then the server has noticed the cut
# (at once on WebSocket, by ping timeout on polling)
CLIENT = """
const socket = io(URL, Object.assign(%s, {reconnectionDelay: 1500, reconnectionDelayMax: 1500,
                                          randomizationFactor: 0}));
const got = [];
socket.on("news", (...args) => { got.push(args); socket.emit("have", got.length); });
const seen = [];
socket.on("connect", () => { seen.push({id: socket.id, recovered: socket.recovered});
                             socket.emit("state", seen.length); });
await once(socket, "connect");
"""


def recovering_server(**options):
    io = roomcast.Server(connection_state_recovery=options or True, ping_interval=0.5,
                         ping_timeout=0.5)
    state = {"connections": [], "disconnects": [], "states": []}

    @io.use
    def count_middleware(socket, next):
        state.setdefault("middlewares", 0)
        state["middlewares"] += 1
        next()

    @io.on("connection")
    def on_connection(socket):
        state["connections"].append((socket.id, socket.recovered, sorted(socket.rooms),
                                     dict(socket.data)))
        if not socket.recovered:
            socket.join(["room1", "room2"])
            socket.data["n"] = len(state["connections"])
        socket.on("disconnect", lambda reason: state["disconnects"].append(reason))
        socket.on("state", lambda n: state["states"].append(n))
        socket.on("have", lambda n: state.__setitem__("have", n))

    return io, state


@pytest.fixture
def proxied(serve):
    proxies = []

    def _start(io):
        url = serve(io)
        proxy = TcpProxy("127.0.0.1", urllib.parse.urlsplit(url).port)
        proxies.append(proxy)
        return proxy

    yield _start
    for proxy in proxies:
        proxy.close()


def test_a_cut_client_recovers_id_rooms_data_and_every_missed_packet(proxied, start_js, wait_for,
                                                                     transport):
    io, state = recovering_server()
    proxy = proxied(io)
    run = start_js(CLIENT % transport + """
        await until(() => got.length >= 12, "12 events");
        return {seen, got};
    """, proxy.url, timeout=30)
    wait_for(lambda: state["states"] == [1], "the first connection")
    sid = state["connections"][0][0]
    io.to("room1").emit("news", 0)
    io.emit("news", 1)
    io.sockets.sockets[sid].emit("news", 2)        # unicasts are recoverable too
    wait_for(lambda: state.get("have") == 3 and proxy.cut(), "the client to get 3, then a cut")
    wait_for(lambda: state["disconnects"], "the server to notice the cut")
    for n in range(3, 9):                          # missed: to its rooms, to everyone
        io.to("room2" if n % 2 else "room1").emit("news", n)
    io.except_("room1").emit("news", "not for it")
    io.to("elsewhere").emit("news", "not for it either")
    io.volatile.emit("news", "volatile: not kept")
    wait_for(lambda: state["states"] == [1, 2], "the reconnection")
    for n in range(9, 12):
        io.to("room1").emit("news", n)
    result = run.result()

    assert result["seen"] == [{"id": sid, "recovered": False}, {"id": sid, "recovered": True}]
    assert [args[0] for args in result["got"]] == list(range(12))   # once each, in order
    offsets = [args[-1] for args in result["got"]]
    assert all(isinstance(o, str) and re.fullmatch(r"[0-9A-Za-z_-]+(\.[0-9A-Za-z_-]+)?", o) for o in offsets)
    assert len(set(offsets)) == 12
    assert state["connections"][1] == (sid, True, sorted([sid, "room1", "room2"]), {"n": 1})
    assert state["middlewares"] == 1               # skip_middlewares (the default)
    assert state["disconnects"][0] in ("transport close", "transport error", "ping timeout")


def test_middlewares_run_for_recovered_sockets_without_skip_middlewares(proxied, start_js, wait_for):
    io, state = recovering_server(skip_middlewares=False)
    proxy = proxied(io)
    run = start_js(CLIENT % "{transports: ['websocket']}" + """
        await until(() => seen.length >= 2, "2 events");
        return seen;
    """, proxy.url)
    wait_for(lambda: state["states"] == [1], "the first connection")
    io.emit("news", "an offset for the client")
    wait_for(lambda: state.get("have") == 1 and proxy.cut(), "the client to get it, then a cut")
    result = run.result()
    assert [s["recovered"] for s in result] == [False, True]
    assert result[0]["id"] == result[1]["id"]
    assert state["middlewares"] == 2


def test_past_the_window_it_is_a_new_socket(proxied, start_js, wait_for):
    io, state = recovering_server(max_disconnection_duration=0.5)
    proxy = proxied(io)
    run = start_js(CLIENT % "{transports: ['websocket']}" + """
        await until(() => seen.length >= 2, "2 events");
        return {seen, got};
    """, proxy.url)
    wait_for(lambda: state["states"] == [1], "the first connection")
    io.emit("news", 0)
    wait_for(lambda: state.get("have") == 1 and proxy.cut(), "the client to get it, then a cut")
    wait_for(lambda: state["disconnects"], "the server to notice the cut")
    io.emit("news", "missed, and lost past the window")
    result = run.result()             # reconnects 1.5 s later: the session expired
    assert [s["recovered"] for s in result["seen"]] == [False, False]
    assert result["seen"][0]["id"] != result["seen"][1]["id"]
    assert [args[0] for args in result["got"]] == [0]
    assert state["connections"][1][1] is False and state["middlewares"] == 2


def test_unknown_pid_or_offset_is_a_new_socket(serve, run_js):
    io, state = recovering_server()
    url = serve(io)
    result = run_js("""
        const a = io(URL, {transports: ['websocket'], auth: {pid: "nope", offset: "nope"}});
        await once(a, "connect");
        return {recovered: a.recovered, pid: a._pid};
    """, url)
    assert result["recovered"] is False and isinstance(result["pid"], str)
    assert state["connections"][0][1] is False


def test_connect_answer_carries_pid_only_with_recovery(serve, run_js):
    plain = roomcast.Server()
    result = run_js("""
        const s = io(URL, {transports: ['websocket']});
        await once(s, "connect");
        return {pid: s._pid || null};
    """, serve(plain))
    assert result == {"pid": None}


def test_stored_packets_are_bounded_by_age_and_bytes():
    io = roomcast.Server(connection_state_recovery={"max_stored_bytes": 50_000})
    adapter = io.sockets.adapter
    assert isinstance(adapter, SessionAwareAdapter)
    for n in range(2000):
        io.emit("news", "x" * 100, n)
    assert adapter.stored_bytes <= 50_000
    assert 0 < adapter.stored_packets < 2000
    adapter.max_duration = 0.0           # everything is now too old
    io.emit("news", "last")
    assert adapter.stored_packets <= 1
    io.close()


def test_options_are_checked():
    assert normalize_options(True)["max_disconnection_duration"] == 120.0
    assert normalize_options(None) is None and normalize_options(False) is None
    with pytest.raises(ValueError):
        normalize_options({"maxDisconnectionDuration": 1})
    offsets = [offset_clock() for _ in range(1000)]
    assert len(set(offsets)) == 1000


def test_python_socketio_face_recovers_too(proxied, start_js, wait_for):
    from roomcast import compat

    sio = compat.Server(connection_state_recovery={"max_disconnection_duration": 30},
                        ping_interval=0.5, ping_timeout=0.5)
    connects = []

    @sio.event
    def connect(sid, environ, auth):
        connects.append(sid)
        sio.enter_room(sid, "news-room")

    @sio.event
    def have(sid, n):
        connects.append(("have", n))

    proxy = proxied(sio._bridge.io)
    run = start_js(CLIENT % "{transports: ['websocket']}" + """
        await until(() => got.length >= 2, "2 events");
        return {seen, got};
    """, proxy.url)
    wait_for(lambda: len(connects) == 1, "the first connection")
    sio.emit("news", 0, room="news-room")
    wait_for(lambda: ("have", 1) in connects and proxy.cut(), "the client to get it, then a cut")
    wait_for(lambda: not sio._bridge.io.sockets.sockets, "the server to notice the cut")
    sio.emit("news", 1, room="news-room")
    result = run.result()
    assert [s["recovered"] for s in result["seen"]] == [False, True]
    sids = [c for c in connects if isinstance(c, str)]
    assert sids == [result["seen"][0]["id"]] * 2     # the connect handler ran again, same sid
    assert [args[0] for args in result["got"]] == [0, 1]


def test_a_missed_intersection_is_replayed_only_to_sockets_in_every_room():
    from roomcast.adapters.cluster import should_include_packet
    from roomcast.recovery import reached

    both, one = {"sid", "a", "b"}, {"sid", "a"}
    assert reached(both, frozenset({"a"}), frozenset(), frozenset({"b"}))
    assert not reached(one, frozenset({"a"}), frozenset(), frozenset({"b"}))
    assert not reached(both, frozenset({"a"}), frozenset({"b"}), frozenset({"b"}))
    wire = {"rooms": ["a"], "except": [], "intersect": ["b"]}
    assert should_include_packet(both, wire) and not should_include_packet(one, wire)

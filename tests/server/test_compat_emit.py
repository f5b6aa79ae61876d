"""roomcast.compat: emit/send/call targets, callbacks, rooms and sessions; each
scenario runs against roomcast.compat and against python-socketio itself
(``both_sides``, tests/compat_sides.py), which must give the same results."""
from __future__ import annotations

import datetime
import decimal
import json

import pytest

import roomcast.compat


# Three JS clients join rooms, report "ready" with their sid, then record every event
# until the server emits "end".
THREE_CLIENTS = """
    const names = ["a", "b", "c"];
    const rooms = {a: ["red"], b: ["red", "blue"], c: ["blue"]};
    const inbox = {a: [], b: [], c: []};
    const sockets = names.map((n) => io(URL, {forceNew: true, auth: {name: n}}));
    const ended = sockets.map((s, i) => new Promise((resolve) => {
        s.onAny((event, ...args) => {
            if (event === "end") resolve();
            else inbox[names[i]].push([event, ...args]);
        });
    }));
    await Promise.all(sockets.map((s) => once(s, "connect")));
    for (const [i, s] of sockets.entries()) {
        await s.emitWithAck("ready", names[i], rooms[names[i]]);
    }
    await Promise.all(ended);
    done(inbox);
"""


def three_clients_server(socketio):
    sio = socketio.Server()
    sio.sids = {}

    @sio.event
    def ready(sid, name, rooms):
        for room in rooms:
            sio.enter_room(sid, room)
        sio.sids[name] = sid
        return True

    return sio


def run_three(serve, start_js, wait_for, sio, emits, script=THREE_CLIENTS):
    """The three clients on ``sio``; ``emits(sio, sids)`` once they are ready; returns
    (what emits returned, the clients' inboxes)."""
    url = serve(sio)
    run = start_js(script, url)
    wait_for(lambda: len(sio.sids) == 3, "three ready clients")
    observed = emits(sio, sio.sids)
    sio.emit("end")
    return observed, run.result()


def test_emit_targets(both_sides, start_js, wait_for):
    def emits(sio, sids):
        sio.emit("all", 1)
        sio.emit("to sid", 2, to=sids["a"])
        sio.emit("room alias", 3, room=sids["b"])
        sio.emit("room", 4, to="red")
        sio.emit("rooms", 5, to=["red", "blue"])                  # b once
        sio.emit("skip one", 6, to="blue", skip_sid=sids["b"])
        sio.emit("skip list", 7, skip_sid=[sids["a"], sids["c"]])
        sio.emit("several", (8, "x", {"y": None}), to=sids["c"])
        sio.emit("binary", {"blob": b"\x00\xff"}, to=sids["a"])
        sio.emit("no args", to=sids["a"])
        sio.send("text", to=sids["c"])
        sio.emit("elsewhere", 9, namespace="/nobody")            # no such namespace: no-op
        sio.emit("empty room", 10, to="nobody's room")

    def scenario(socketio, serve):
        return run_three(serve, start_js, wait_for, three_clients_server(socketio), emits)[1]

    inbox = both_sides(scenario)
    assert inbox["a"] == [["all", 1], ["to sid", 2], ["room", 4], ["rooms", 5],
                          ["binary", {"blob": b"\x00\xff"}], ["no args"]]
    assert inbox["b"] == [["all", 1], ["room alias", 3], ["room", 4], ["rooms", 5],
                          ["skip list", 7]]
    assert inbox["c"] == [["all", 1], ["rooms", 5], ["skip one", 6],
                          ["several", 8, "x", {"y": None}], ["message", "text"]]


def test_rooms_api(both_sides, start_js, wait_for):
    def emits(sio, sids):
        a, b, c = sids["a"], sids["b"], sids["c"]
        seen = {"b's rooms": sorted(sio.rooms(b)) == sorted([b, "red", "blue"]),
                "sid room first": sio.rooms(b)[0] == b}
        sio.leave_room(b, "red")
        sio.leave_room(b, "never joined")
        sio.emit("red after leave", to="red")                     # a only
        sio.close_room("blue")
        sio.emit("blue after close", to="blue")                   # nobody
        seen["c's rooms"] = sio.rooms(c) == [c]
        seen["unknown sid's rooms"] = sio.rooms("unknown sid")
        seen["red"] = list(dict(sio.manager.get_participants("/", "red"))) == [a]
        seen["namespaces"] = list(sio.manager.get_namespaces())
        seen["connected"] = sio.manager.is_connected(a, "/")
        return seen

    def scenario(socketio, serve):
        return run_three(serve, start_js, wait_for, three_clients_server(socketio), emits)

    assert both_sides(scenario) == (
        {"b's rooms": True, "sid room first": True, "c's rooms": True, "unknown sid's rooms": [],
         "red": True, "namespaces": ["/"], "connected": True},
        {"a": [["red after leave"]], "b": [], "c": []})


def test_rooms_api_refusals(serve, start_js, wait_for):
    # roomcast.compat only: what python-socketio silently accepts, refused with a reason
    def emits(sio, sids):
        a, b = sids["a"], sids["b"]
        with pytest.raises(ValueError, match="cannot enter a sid room"):
            sio.enter_room(a, b)
        with pytest.raises(ValueError, match="cannot close a sid room"):
            sio.close_room(a)
        with pytest.raises(ValueError, match="not connected"):
            sio.enter_room("unknown sid", "red")

    run_three(serve, start_js, wait_for, three_clients_server(roomcast.compat), emits)


def test_callbacks_and_call_with_the_python_client(both_sides, run_psio):
    def scenario(socketio, serve):
        sio = socketio.Server()
        results = {}

        @sio.event
        def ready(sid):
            def work():
                got = []
                sio.emit("double", 21, to=sid, callback=lambda *a: got.append(a))
                results["one"] = sio.call("double", 5, to=sid, timeout=5)
                results["several"] = sio.call("pair", ("x", "y"), sid=sid, timeout=5)
                results["none"] = sio.call("nothing", to=sid, timeout=5)
                try:
                    sio.call("silent", to=sid, timeout=0.2)
                except socketio.exceptions.TimeoutError:
                    results["timeout"] = "TimeoutError"
                results["callback"] = got
                sio.emit("finished", to=sid)
            sio.start_background_task(work)

        run_psio("""
            sio = socketio.Client()
            sio.on("double", lambda n: n * 2)
            sio.on("pair", lambda a, b: (b, a))
            sio.on("nothing", lambda: None)
            sio.on("silent", lambda: time.sleep(1))    # answers too late for the 0.2 s call
            inbox = Inbox()
            sio.on("finished", lambda: inbox.put("finished"))
            sio.connect(URL)
            sio.emit("ready")
            inbox.wait(1, timeout=10)
            done()
        """, serve(sio))
        with pytest.raises(ValueError, match="broadcast"):
            sio.call("x")
        return results

    assert both_sides(scenario) == {"one": 10, "several": ("y", "x"), "none": None,
                                    "timeout": "TimeoutError", "callback": [(42,)]}


def test_callback_on_a_room_emit_runs_once_per_client(both_sides, start_js, wait_for):
    def scenario(socketio, serve):
        acks = []

        def emits(sio, sids):
            sio.emit("ack me", "please", to="red", callback=lambda *a: acks.append(a))
            wait_for(lambda: len(acks) == 2, "both acks")

        run_three(serve, start_js, wait_for, three_clients_server(socketio), emits,
                  THREE_CLIENTS.replace(
                      "s.onAny((event, ...args) => {",
                      "s.on(\"ack me\", (x, ack) => ack(names[i], x));\n"
                      "        s.onAny((event, ...args) => {"))
        return sorted(acks)

    assert both_sides(scenario) == [("a", "please"), ("b", "please")]


def test_sessions(both_sides, run_js):
    def scenario(socketio, serve):
        sio = socketio.Server()

        @sio.event
        def connect(sid, environ, auth):
            sio.save_session(sid, {"user": auth["user"], "hits": 0})

        @sio.event
        def hit(sid):
            with sio.session(sid) as session:
                session["hits"] += 1
            return sio.get_session(sid)

        @sio.on("connect", namespace="/other")
        def other_connect(sid, environ, auth):
            pass

        @sio.on("peek", namespace="/other")
        def peek(sid):
            return sio.get_session(sid, namespace="/other")

        result = run_js("""
            const s = io(URL, {auth: {user: "zoe"}});
            await s.emitWithAck("hit");
            const main = await s.emitWithAck("hit");
            const other = await io(URL + "/other").emitWithAck("peek");
            done({main, other});
        """, serve(sio))
        with pytest.raises(KeyError):
            sio.get_session("gone")
        return result

    assert both_sides(scenario) == {"main": {"user": "zoe", "hits": 2}, "other": {}}


class Codec:
    """A json= module that knows dates and decimals (python-socketio's json option)."""

    @staticmethod
    def dumps(obj, **kwargs):
        def default(o):
            if isinstance(o, (datetime.date, decimal.Decimal)):
                return str(o)
            raise TypeError(repr(o))
        return json.dumps(obj, default=default, **kwargs)

    loads = staticmethod(json.loads)


def test_custom_json_module(both_sides, run_js):
    def scenario(socketio, serve):
        sio = socketio.Server(json=Codec)

        @sio.event
        def invoice(sid):
            sio.emit("invoice", {"due": datetime.date(2026, 1, 31),
                                 "total": decimal.Decimal("9.90"), "scan": b"\x01"}, to=sid)

        return run_js("""
            const s = io(URL);
            s.emit("invoice");
            const [invoice] = await once(s, "invoice");
            done(invoice);
        """, serve(sio))

    assert both_sides(scenario) == {"due": "2026-01-31", "total": "9.90", "scan": b"\x01"}


def test_background_tasks_and_sleep(both_sides, run_js):
    def scenario(socketio, serve):
        sio = socketio.Server()

        def ticker():
            for n in range(3):
                sio.sleep(0.05)
                sio.emit("tick", n)

        @sio.event
        def start(sid):
            task = sio.start_background_task(ticker)
            return hasattr(task, "join")

        return run_js("""
            const s = io(URL);
            const ticks = [];
            s.on("tick", (n) => ticks.push(n));
            const joinable = await s.emitWithAck("start");
            await until(() => ticks.length >= 3, "three ticks");
            done([joinable, ticks]);
        """, serve(sio))

    assert both_sides(scenario) == [True, [0, 1, 2]]

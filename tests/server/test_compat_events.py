"""roomcast.compat: events, acks, catch-all handlers, class-based namespaces; each
scenario runs against roomcast.compat and against python-socketio itself
(``both_sides``, tests/compat_sides.py), which must give the same results."""
from __future__ import annotations

import pytest
import socketio as real_socketio   # python-socketio itself, for its Namespace class


def test_return_value_becomes_the_ack(both_sides, run_js):
    def scenario(socketio, serve):
        sio = socketio.Server()

        @sio.event
        def nothing(sid):
            return None

        @sio.event
        def one(sid, x):
            return x * 2

        @sio.event
        def several(sid, a, b):
            return a, b, {"sum": a + b}

        @sio.on("raw")
        def raw(sid, *args):
            return list(args)

        return run_js("""
            const socket = io(URL);
            const call = (...args) => new Promise((resolve) => socket.emit(...args, (...a) => resolve(a)));
            const out = [await call("nothing"), await call("one", 21), await call("several", 1, 2),
                         await call("raw", "x", [1], null)];
            try {
                await socket.timeout(300).emitWithAck("nobody listens");
                out.push("acked");
            } catch (err) {
                out.push(err.message);                  // no handler: no ack
            }
            done(out);
        """, serve(sio))

    assert both_sides(scenario) == [[], [42], [1, 2, {"sum": 3}], [["x", [1], None]],
                                    "operation has timed out"]


def test_handlers_with_the_python_client_and_binary(both_sides, run_psio):
    def scenario(socketio, serve):
        sio = socketio.Server()

        @sio.event
        def reverse(sid, blob):
            return blob[::-1]

        @sio.event
        def upload(sid, meta, blob):
            sio.emit("stored", (meta["name"], len(blob), blob[:4]), to=sid)

        return run_psio("""
            sio = socketio.Client()
            inbox = Inbox()
            sio.on("stored", lambda *a: inbox.put(*a))
            sio.connect(URL, transports=["websocket"])
            back = sio.call("reverse", b"\\x01\\x02\\x03", timeout=5)
            sio.emit("upload", ({"name": "f.bin"}, bytes(range(10))))
            done({"back": back, "stored": inbox.wait(1)[0]})
        """, serve(sio))

    assert both_sides(scenario) == {"back": b"\x03\x02\x01",
                                    "stored": ["f.bin", 10, b"\x00\x01\x02\x03"]}


def test_catch_all_events_and_namespaces(both_sides, run_js):
    def scenario(socketio, serve):
        sio = socketio.Server(namespaces="*")
        calls = []

        @sio.on("hello")
        def hello(sid, x):
            calls.append(("exact", x))
            return "exact"

        @sio.on("*")
        def any_event(event, sid, *args):
            calls.append(("any event", event, args))
            return "any event"

        @sio.on("hello", namespace="*")
        def hello_anywhere(namespace, sid, x):
            calls.append(("hello anywhere", namespace, x))
            return "hello anywhere"

        @sio.on("*", namespace="*")
        def anything(event, namespace, sid, *args):
            calls.append(("anything", event, namespace, args))
            return "anything"

        result = run_js("""
            const main = io(URL);
            const other = io(URL + "/other");
            const ask = (s, ...args) => new Promise((resolve) => s.emit(...args, (r) => resolve(r)));
            done([await ask(main, "hello", 1), await ask(main, "bye", 2, 3),
                  await ask(other, "hello", 4), await ask(other, "bye", 5)]);
        """, serve(sio))
        return result, calls

    result, calls = both_sides(scenario)
    assert result == ["exact", "any event", "hello anywhere", "anything"]
    assert calls == [("exact", 1), ("any event", "bye", (2, 3)),
                     ("hello anywhere", "/other", 4), ("anything", "bye", "/other", (5,))]


def chat_namespace(socketio, log):
    class Chat(socketio.Namespace):
        def on_connect(self, sid, environ):             # the legacy two-argument form
            self.enter_room(sid, "everyone")
            log.append("connect")

        def on_disconnect(self, sid, reason):
            log.append(("disconnect", reason))

        def on_say(self, sid, text):
            with self.session(sid) as session:
                session["said"] = session.get("said", 0) + 1
            self.emit("said", {"text": text, "count": self.get_session(sid)["said"]},
                      room="everyone", skip_sid=sid)
            return "ok"

        def on_whoami(self, sid):
            return sid, self.rooms(sid)

    return Chat("/chat")


class Legacy(real_socketio.Namespace):
    """A namespace class written against python-socketio itself."""

    def on_connect(self, sid, environ, auth):
        self.save_session(sid, {"auth": auth})

    def on_echo(self, sid, value):
        self.emit("echo", {"value": value, "auth": self.get_session(sid)["auth"]}, to=sid)


def test_class_based_namespaces(both_sides, run_js, wait_for):
    def scenario(socketio, serve):
        sio = socketio.Server()
        log = []
        sio.register_namespace(chat_namespace(socketio, log))
        sio.register_namespace(Legacy("/legacy"))
        result = run_js("""
            const a = io(URL + "/chat"), b = io(URL + "/chat", {forceNew: true});
            await Promise.all([once(a, "connect"), once(b, "connect")]);
            const heard = once(b, "said");
            const ack = await a.emitWithAck("say", "hi");
            const [said] = await heard;
            const [sid, rooms] = await new Promise((r) => a.emit("whoami", (...x) => r(x)));
            const legacy = io(URL + "/legacy", {auth: {t: 1}});
            legacy.emit("echo", 5);
            const [echo] = await once(legacy, "echo");
            const id = a.id;
            const sent = once(a.io.engine, "drain");   // the DISCONNECT packet is written
            a.disconnect();
            await sent;
            done({ack, said, echo, sidIsId: sid === id,
                  rooms: rooms.map((r) => r === id ? "<sid>" : r).sort()});
        """, serve(sio))
        wait_for(lambda: ("disconnect", "client disconnect") in log, "the disconnect handler")
        return result, log.count("connect")

    result, connects = both_sides(scenario)
    assert result == {"ack": "ok", "said": {"text": "hi", "count": 1},
                      "echo": {"value": 5, "auth": {"t": 1}}, "sidIsId": True,
                      "rooms": ["<sid>", "everyone"]}
    assert connects == 2


def test_catch_all_namespace_class(both_sides, run_js):
    def scenario(socketio, serve):
        class Everything(socketio.Namespace):
            def trigger_event(self, event, namespace, *args):
                # a '*' namespace class receives the namespace before the usual arguments
                if event in ("connect", "disconnect"):
                    return None
                return [event, namespace, *args[1:]]

        sio = socketio.Server(namespaces="*")
        sio.register_namespace(Everything("*"))
        return run_js("""
            const s = io(URL + "/room-42");
            done(await s.emitWithAck("anything", 1, "two"));
        """, serve(sio))

    assert both_sides(scenario) == ["anything", "/room-42", 1, "two"]


def test_register_namespace_refuses_other_objects(both_sides):
    def scenario(socketio, serve):
        sio = socketio.Server()
        errors = []
        with pytest.raises(ValueError) as plain:
            sio.register_namespace(object())
        errors.append(str(plain.value))

        class AsyncOne(socketio.Namespace):
            def is_asyncio_based(self):
                return True

        with pytest.raises(ValueError) as asyncio_based:
            sio.register_namespace(AsyncOne("/x"))
        errors.append(str(asyncio_based.value))
        return errors

    assert both_sides(scenario) == ["Not a namespace instance",
                                    "Not a valid namespace class for this server"]


def test_handler_errors_are_logged_and_the_connection_lives_on(both_sides, run_js):
    def scenario(socketio, serve):
        sio = socketio.Server()

        @sio.event
        def boom(sid):
            raise RuntimeError("handler bug")

        @sio.event
        def fine(sid):
            return "still connected"

        return run_js("""
            const s = io(URL);
            s.emit("boom");
            done(await s.emitWithAck("fine"));
        """, serve(sio))

    assert both_sides(scenario) == "still connected"


def test_sync_handlers(both_sides, run_js):
    def scenario(socketio, serve):
        sio = socketio.Server(async_handlers=False)
        order = []

        @sio.event
        def step(sid, n):
            order.append(n)
            return n

        acks = run_js("""
            const s = io(URL);
            const acks = await Promise.all([1, 2, 3, 4].map((n) => s.emitWithAck("step", n)));
            done(acks);
        """, serve(sio))
        with pytest.raises(RuntimeError) as refused:
            sio.call("step", 1, to="x")
        return acks, order, "async_handlers" in str(refused.value)

    assert both_sides(scenario) == ([1, 2, 3, 4], [1, 2, 3, 4], True)


def test_registration_forms(both_sides, run_js):
    def scenario(socketio, serve):
        sio = socketio.Server()

        def plain(sid, x):
            return "plain " + x

        sio.on("plain", plain)                                   # not as a decorator
        sio.on("in chat", lambda sid, x: "chat " + x, namespace="/chat")

        @sio.event(namespace="/chat")
        def shout(sid, x):
            return x.upper()

        @sio.on("message")
        def message(sid, data):                                  # what the client's send() emits
            return "got " + data

        return run_js("""
            const main = io(URL), chat = io(URL + "/chat");
            const sent = await new Promise((r) => main.send("it", (a) => r(a)));
            done([await main.emitWithAck("plain", "p"), await chat.emitWithAck("in chat", "c"),
                  await chat.emitWithAck("shout", "s"), sent]);
        """, serve(sio))

    assert both_sides(scenario) == ["plain p", "chat c", "S", "got it"]

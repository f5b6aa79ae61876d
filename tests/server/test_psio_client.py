"""The real python-socketio client against roomcast's native Server.

Also home of the ``run_psio`` / ``start_psio`` fixtures (imported by the
test_compat_* files): the python-socketio client runs in a subprocess, with
its own threads, while this process keeps serving under gevent.

A snippet is plain Python that sees ``socketio`` (the real package), ``URL``,
``done(value)``, ``fail(message)``, ``Inbox`` (a thread-safe mailbox:
``inbox.put(*item)``, ``inbox.wait(n=1, timeout=5) -> first n items``),
``time`` and ``threading``. ``done`` ends the process at once (no goodbye to
the server: call ``sio.disconnect()`` first when the test is about that; note
that python-socketio's client may hang in ``disconnect()`` over polling when its
writer thread is still busy, so pause briefly before it).
"""
from __future__ import annotations

import base64
import itertools
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

import gevent
import gevent.event
import gevent.subprocess
import pytest

import roomcast
from roomcast.errors import ConnectError

DONE = "@@psio-done@@ "
FAIL = "@@psio-fail@@ "

PRELUDE = r'''
import base64, json, os, sys, threading, time
import socketio

URL = sys.argv[1]


def _encode(value):
    if isinstance(value, (bytes, bytearray)):
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot return {value!r} to the test")


def _report(marker, value):
    sys.stdout.write(marker + json.dumps(value, default=_encode) + "\n")
    sys.stdout.flush()


def done(value=None):
    _report("@@psio-done@@ ", value)
    os._exit(0)


def fail(message):
    _report("@@psio-fail@@ ", str(message))
    os._exit(1)


class Inbox:
    """What handlers received, from any thread; wait(n) for the first n items."""

    def __init__(self):
        self.items = []
        self._cond = threading.Condition()

    def put(self, *item):
        with self._cond:
            self.items.append(item[0] if len(item) == 1 else list(item))
            self._cond.notify_all()

    def wait(self, n=1, timeout=5.0):
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.items) >= n, timeout):
                fail(f"waited {timeout}s for {n} items, got {self.items!r}")
            return list(self.items[:n])


def _excepthook(kind, value, tb):
    import traceback
    traceback.print_exception(kind, value, tb)
    _report("@@psio-fail@@ ", f"{kind.__name__}: {value}")
    os._exit(1)


sys.excepthook = _excepthook
threading.excepthook = lambda args: _excepthook(args.exc_type, args.exc_value,
                                                args.exc_traceback)
'''


def _from_json(text: str) -> Any:
    def hook(obj: dict) -> Any:
        if len(obj) == 1 and "$bytes" in obj:
            return base64.b64decode(obj["$bytes"])
        return obj
    return json.loads(text, object_hook=hook)


class PsioRun:
    """One python-socketio client process running a snippet."""

    def __init__(self, script_file: Path, url: str, timeout: float) -> None:
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.proc = gevent.subprocess.Popen(
            [sys.executable, str(script_file), url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._outcome: tuple[bool, Any] | None = None
        self._waiter = gevent.spawn(self._wait)

    def result(self) -> Any:
        """The value given to done(); AssertionError on fail(), an error or the timeout."""
        ok, value = self._waiter.get()
        if not ok:
            raise AssertionError(value)
        return value

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self._waiter.join()

    def _wait(self) -> tuple[bool, Any]:
        timed_out = False
        try:
            out, err = self.proc.communicate(timeout=max(0.0, self.deadline - time.monotonic()))
        except gevent.subprocess.TimeoutExpired:
            timed_out = True
            self.proc.kill()
            out, err = self.proc.communicate()
        stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
        for line in stdout.splitlines():
            if line.startswith(DONE) and not timed_out:
                return True, _from_json(line[len(DONE):])
            if line.startswith(FAIL):
                return False, f"client failed: {json.loads(line[len(FAIL):])}\n{stderr}"
        head = (f"client timed out after {self.timeout}s" if timed_out
                else f"client exited with code {self.proc.returncode} without done()")
        return False, f"{head}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"


_numbers = itertools.count()


@pytest.fixture
def start_psio(tmp_path: Path) -> Callable[..., PsioRun]:
    """start_psio(script, url, timeout=15.0) -> handle with .result() and .kill()."""
    runs: list[PsioRun] = []

    def _start(script: str, url: str, timeout: float = 15.0) -> PsioRun:
        path = tmp_path / f"psio_{next(_numbers)}.py"
        path.write_text(PRELUDE + "\n" + textwrap.dedent(script))
        run = PsioRun(path, url, timeout)
        runs.append(run)
        return run

    yield _start
    for run in runs:
        run.kill()


@pytest.fixture
def run_psio(start_psio: Callable[..., PsioRun]) -> Callable[..., Any]:
    """run_psio(script, url, timeout=15.0) -> the value the snippet gave to done()."""
    def _run(script: str, url: str, timeout: float = 15.0) -> Any:
        return start_psio(script, url, timeout).result()
    return _run


# -- the native server, driven by python-socketio's client ---------------------------

TRANSPORTS = pytest.mark.parametrize("transports", [["polling", "websocket"], ["websocket"]],
                                     ids=["polling+upgrade", "websocket"])


def _echo_server() -> roomcast.Server:
    io = roomcast.Server()
    seen_auth: dict = {}

    def on_connection(socket):
        seen_auth[socket.nsp.name] = socket.handshake["auth"]

        @socket.on("echo")
        def echo(*args):
            if args and callable(args[-1]):
                args[-1](*args[:-1])
            else:
                socket.emit("echoed", *args)

    def check_token(socket, next):
        if socket.handshake["auth"].get("token") == "bad":
            next(ConnectError("bad token", {"retry": False}))
        else:
            next()

    for nsp in (io.sockets, io.of("/chat")):
        nsp.use(check_token)
        nsp.on("connection", on_connection)
    io.seen_auth = seen_auth
    return io


@TRANSPORTS
def test_connects_to_main_and_custom_namespace_with_auth(serve, run_psio, transports):
    io = _echo_server()
    url = serve(io)
    result = run_psio(f"""
        sio = socketio.Client()
        inbox = Inbox()
        sio.on("echoed", lambda *a: inbox.put("/", *a))
        sio.on("echoed", lambda *a: inbox.put("/chat", *a), namespace="/chat")
        sio.connect(URL, auth={{"token": "t1"}}, namespaces=["/", "/chat"],
                    transports={transports!r})
        sio.emit("echo", "hello")
        sio.emit("echo", ("a", 2, {{"k": None}}), namespace="/chat")
        got = sorted(inbox.wait(2), key=str)
        sids = [sio.get_sid("/"), sio.get_sid("/chat")]
        done({{"got": got, "sids": sids, "transport": sio.transport()}})
    """, url)
    assert result["got"] == [["/", "hello"], ["/chat", "a", 2, {"k": None}]]
    assert all(isinstance(s, str) and s for s in result["sids"])
    assert result["sids"][0] != result["sids"][1]
    assert io.seen_auth == {"/": {"token": "t1"}, "/chat": {"token": "t1"}}


def test_refused_connection_reaches_connect_error(serve, run_psio):
    url = serve(_echo_server())
    result = run_psio("""
        sio = socketio.Client()
        inbox = Inbox()
        sio.on("connect_error", lambda data: inbox.put(data), namespace="/chat")
        try:
            sio.connect(URL, auth={"token": "bad"}, namespaces=["/chat"], wait_timeout=3)
        except socketio.exceptions.ConnectionError as exc:
            done({"error": inbox.wait(1)[0], "raised": type(exc).__name__})
        done("connected")
    """, url)
    assert result == {"error": {"message": "bad token", "data": {"retry": False}},
                      "raised": "ConnectionError"}


def test_unknown_namespace_is_refused(serve, run_psio):
    url = serve(_echo_server())
    result = run_psio("""
        sio = socketio.Client()
        inbox = Inbox()
        sio.on("connect_error", lambda data: inbox.put(data), namespace="/nope")
        try:
            sio.connect(URL, namespaces=["/nope"], wait_timeout=3)
        except socketio.exceptions.ConnectionError:
            done(inbox.wait(1)[0])
        done("connected")
    """, url)
    assert result == {"message": "Invalid namespace"}


@TRANSPORTS
def test_acks_both_ways(serve, run_psio, transports):
    io = roomcast.Server()
    answers = gevent.event.AsyncResult()

    @io.on("connection")
    def on_connection(socket):
        @socket.on("add")
        def add(a, b, ack):
            ack(a + b, "sum")

        @socket.on("ask me")
        def ask_me(ack):
            ack()
            # the server asks back and blocks for the client's ack
            gevent.spawn(lambda: answers.set(socket.emit_with_ack("question", 6, 7, timeout=5)))

    url = serve(io)
    result = run_psio(f"""
        sio = socketio.Client()
        sio.on("question", lambda a, b: a * b)       # a handler's return value is the ack
        sio.connect(URL, transports={transports!r})
        inbox = Inbox()
        sio.emit("add", (2, 3), callback=lambda *args: inbox.put(*args))
        by_call = sio.call("add", (10, 20), timeout=5)
        sio.call("ask me", timeout=5)
        time.sleep(0.2)
        done({{"callback": inbox.wait(1)[0], "call": by_call}})
    """, url)
    assert result == {"callback": [5, "sum"], "call": [30, "sum"]}
    assert answers.get(timeout=5) == 42


@TRANSPORTS
def test_binary_both_ways(serve, run_psio, transports):
    io = roomcast.Server()
    received = []

    @io.on("connection")
    def on_connection(socket):
        @socket.on("upload")
        def upload(meta, blob, ack):
            received.append((meta, blob))
            ack({"size": len(blob), "back": blob[::-1], "nested": [b"\x00", {"x": b"\xff"}]})

    url = serve(io)
    result = run_psio(f"""
        sio = socketio.Client()
        sio.connect(URL, transports={transports!r})
        blob = bytes(range(256)) * 4
        answer = sio.call("upload", ({{"name": "f"}}, blob), timeout=5)
        done([answer["size"], answer["back"] == blob[::-1], answer["nested"]])
    """, url)
    assert result == [1024, True, [b"\x00", {"x": b"\xff"}]]
    assert received == [({"name": "f"}, bytes(range(256)) * 4)]


def test_room_broadcast_reaches_members_only(serve, start_psio):
    io = roomcast.Server()
    joined = gevent.event.Event()
    members = []

    @io.on("connection")
    def on_connection(socket):
        @socket.on("join")
        def join(room, ack):
            socket.join(room)
            members.append(socket.id)
            ack()
            if len(members) == 2:
                joined.set()

    url = serve(io)
    member = """
        sio = socketio.Client()
        inbox = Inbox()
        sio.on("news", lambda *a: inbox.put(*a))
        sio.connect(URL)
        sio.call("join", "lobby", timeout=5)
        got = inbox.wait(1, timeout=8)
        done(got)
    """
    outsider = """
        sio = socketio.Client()
        inbox = Inbox()
        sio.on("news", lambda *a: inbox.put(*a))
        sio.on("end", lambda: inbox.put("end"))
        sio.connect(URL)
        inbox.wait(1, timeout=10)
        done(inbox.items)
    """
    runs = [start_psio(member, url), start_psio(member, url), start_psio(outsider, url)]
    assert joined.wait(timeout=10)
    with gevent.Timeout(10):
        while len(io.sockets.sockets) < 3:
            gevent.sleep(0.01)
    io.to("lobby").emit("news", "from the server", None)
    io.emit("end")
    assert runs[0].result() == [["from the server", None]]
    assert runs[1].result() == [["from the server", None]]
    assert runs[2].result() == ["end"]


def test_room_broadcast_excludes_the_sender(serve, start_psio):
    io = roomcast.Server()

    @io.on("connection")
    def on_connection(socket):
        socket.join("lobby")

        @socket.on("shout")
        def shout(text):
            socket.to("lobby").emit("news", text)
            socket.emit("end")      # after the news, had the sender been sent it

    url = serve(io)
    listener = start_psio("""
        sio = socketio.Client()
        inbox = Inbox()
        sio.on("news", lambda *a: inbox.put(*a))
        sio.connect(URL)
        got = inbox.wait(1, timeout=8)
        done(got)
    """, url)
    with gevent.Timeout(10):
        while len(io.sockets.sockets) < 1:
            gevent.sleep(0.02)
    shouter = start_psio("""
        sio = socketio.Client()
        inbox = Inbox()
        sio.on("news", lambda *a: inbox.put(*a))
        sio.on("end", lambda: inbox.put("end"))
        sio.connect(URL)
        sio.emit("shout", "hey")
        inbox.wait(1)
        done(inbox.items)
    """, url)
    assert listener.result() == ["hey"]
    assert shouter.result() == ["end"]


@TRANSPORTS
def test_server_disconnect(serve, run_psio, transports):
    io = roomcast.Server()
    reasons = []

    @io.on("connection")
    def on_connection(socket):
        socket.on("disconnect", reasons.append)

        @socket.on("kick me")
        def kick_me():
            socket.disconnect()

    url = serve(io)
    result = run_psio(f"""
        sio = socketio.Client()
        inbox = Inbox()
        sio.on("disconnect", lambda reason: inbox.put(reason))
        sio.connect(URL, transports={transports!r})
        sio.emit("kick me")
        done(inbox.wait(1)[0])
    """, url)
    assert result == "server disconnect"
    assert reasons == ["server namespace disconnect"]


def test_client_disconnect_reason(serve, run_psio):
    io = roomcast.Server()
    gone = gevent.event.AsyncResult()

    @io.on("connection")
    def on_connection(socket):
        socket.on("disconnect", gone.set)

    url = serve(io)
    # Over polling the client's DISCONNECT and Engine.IO close go out in order, in one
    # POST (over WebSocket the client closes the socket without waiting for its writer).
    # The pause lets the client's writer thread get back to its queue: a disconnect()
    # while it is still finishing the CONNECT's POST drops the packets (a client race).
    run_psio("""
        sio = socketio.Client()
        sio.connect(URL, transports=["polling"])
        time.sleep(0.2)
        sio.disconnect()
        done()
    """, url)
    assert gone.get(timeout=5) == "client namespace disconnect"


def test_simple_client(serve, run_psio):
    io = roomcast.Server()

    @io.on("connection")
    def on_connection(socket):
        socket.emit("welcome", socket.id)

        @socket.on("ping me")
        def ping_me(n, ack):
            ack(n + 1)

    url = serve(io)
    result = run_psio("""
        with socketio.SimpleClient() as client:
            client.connect(URL)
            event = client.receive(timeout=5)
            answer = client.call("ping me", 41, timeout=5)
            done({"event": event, "sid": client.sid, "answer": answer})
    """, url)
    assert result["event"] == ["welcome", result["sid"]]
    assert result["answer"] == 42

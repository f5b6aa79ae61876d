"""python-socketio's message queues (Redis, RabbitMQ through kombu) in their own format.

(a) python-socketio's write-only RedisManager/KombuManager and Flask-SocketIO's
    SocketIO(message_queue=...) in a worker process reach roomcast's clients;
(b) a real python-socketio server and a roomcast server share one queue, each
    reaching the other's clients (rooms, skip_sid, binary, remote enter_room,
    close_room, disconnect, callbacks both ways);
(c) roomcast's write-only manager reaches python-socketio's clients.
Every test uses a channel of its own; the kombu tests delete their exchange.
"""
from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import gevent
import gevent.subprocess
import pytest

import roomcast.compat as socketio

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
HERE = Path(__file__).parent

# Clients (spec: [{name, url, rooms, nsp}]) announce themselves with ready(name, rooms),
# ack every event, answer "probe" (the tests' sync point) and record the rest until
# "end" or a disconnect.
CLIENTS = """
    const spec = SPEC;
    const inbox = {};
    const sockets = spec.map((c) => {
        inbox[c.name] = [];
        return io(c.url + (c.nsp || ""), {forceNew: true, auth: {name: c.name},
                                          transports: ["websocket"]});
    });
    const ended = sockets.map((s, i) => new Promise((resolve) => {
        const name = spec[i].name;
        s.onAny((event, ...args) => {
            const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
            if (event === "probe") { if (ack) ack("pong"); return; }
            if (event === "end") resolve();
            else inbox[name].push([event, ...args]);
            if (ack) ack(name + " got " + event);
        });
        s.on("disconnect", (reason) => { inbox[name].push(["disconnected", reason]); resolve(); });
    }));
    await Promise.all(sockets.map((s) => once(s, "connect")));
    for (const [i, s] of sockets.entries()) {
        if (!spec[i].nsp) await s.emitWithAck("ready", spec[i].name, spec[i].rooms);
    }
    await Promise.all(ended);
    done(inbox);
"""


def clients_script(spec: list[dict]) -> str:
    return CLIENTS.replace("SPEC", json.dumps(spec))


@pytest.fixture(params=["redis", "kombu"])
def queue(request, redis_url, in_thread):
    """(kind, url, channel) of a channel used by this test only."""
    kind = request.param
    channel = f"roomcast-test-{uuid.uuid4().hex[:12]}"
    if kind == "redis":
        yield kind, redis_url, channel
        return
    import kombu
    yield kind, AMQP_URL, channel

    def delete_exchange():
        with kombu.Connection(AMQP_URL) as conn:
            kombu.Exchange(channel, type="fanout", durable=False)(conn.default_channel).delete()
    in_thread(delete_exchange)


def roomcast_manager(kind: str, url: str, channel: str, **kwargs):
    if kind == "redis":
        return socketio.RedisManager(url, channel=channel, **kwargs)
    return socketio.KombuManager(url, channel=channel, **kwargs)


def roomcast_server(kind: str, url: str, channel: str) -> socketio.Server:
    manager = roomcast_manager(kind, url, channel)
    sio = socketio.Server(client_manager=manager)
    sio.sids = {}

    @sio.event
    def ready(sid, name, rooms):
        for room in rooms:
            sio.enter_room(sid, room)
        sio.sids[name] = sid
        return True

    @sio.event(namespace="/chat")
    def connect(sid, environ, auth):
        sio.sids["chat:" + auth["name"]] = sid

    assert manager.wait_subscribed(10), "the roomcast manager did not subscribe"
    return sio


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def psio_server(in_thread):
    """Starts the real python-socketio server of psio_queue_server.py; returns its
    URL and a do(op, **args) that drives it."""
    procs = []

    def start(kind: str, url: str, channel: str):
        port = _free_port()
        proc = gevent.subprocess.Popen(
            [sys.executable, str(HERE / "psio_queue_server.py"), str(port), kind, url, channel],
            stdout=subprocess.PIPE)
        procs.append(proc)
        with gevent.Timeout(20, AssertionError("the python-socketio server did not start")):
            assert proc.stdout.readline().strip() == b"listening"
        base = f"http://127.0.0.1:{port}"

        def do(op: str, **args):
            import requests
            reply = in_thread(requests.post, base + "/do", data=json.dumps({"op": op, **args}),
                              timeout=10)
            reply.raise_for_status()
            return reply.json()

        return base, do

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_python_socketio_and_roomcast_servers_share_a_queue(queue, serve, start_js, wait_for,
                                                             psio_server):
    kind, url, channel = queue
    sio = roomcast_server(kind, url, channel)
    r_url = serve(sio)
    p_url, do = psio_server(kind, url, channel)
    run = start_js(clients_script([
        {"name": "r1", "url": r_url, "rooms": ["red"]},
        {"name": "r2", "url": r_url, "rooms": ["red", "blue"]},
        {"name": "p1", "url": p_url, "rooms": ["red"]},
        {"name": "p2", "url": p_url, "rooms": ["blue"]},
        {"name": "rc", "url": r_url, "nsp": "/chat"},
        {"name": "pc", "url": p_url, "nsp": "/chat"},
    ]), r_url, timeout=40)
    wait_for(lambda: len(sio.sids) == 3, "the roomcast clients")
    p_sids = wait_for(lambda: (lambda s: s if len(s) == 3 else None)(do("sids")),
                      "the python-socketio clients")
    r_sids = sio.sids

    def sync_from_roomcast(retry: bool = False) -> None:
        # a callback round trip through the queue: everything roomcast published
        # before has reached python-socketio's clients
        answers = []

        def probe():
            sio.emit("probe", to=p_sids["p1"], callback=lambda *a: answers.append(a))
            return answers
        if retry:   # until python-socketio's listener has subscribed
            wait_for(lambda: answers or probe() and False, "the first probe", timeout=15)
        else:
            probe()
            wait_for(lambda: answers, "a probe's callback")

    def sync_from_psio() -> None:
        before = len(do("acks"))
        do("emit_with_callback", event="probe", args=[], to=r_sids["r2"])
        wait_for(lambda: len(do("acks")) > before, "python-socketio's probe callback")

    sync_from_roomcast(retry=True)

    # (b) roomcast -> everyone on the queue
    sio.emit("r-all", 1)
    sio.emit("r-red", 2, to="red")
    sio.emit("r-rooms", 3, to=["red", "blue"], skip_sid=p_sids["p1"])
    sio.emit("r-bin", {"b": b"\x01\x02"}, to=p_sids["p2"])
    sio.emit("r-multi", (1, "two"), to="blue")
    sio.emit("r-chat", 4, namespace="/chat")
    sio.enter_room(p_sids["p2"], "green")          # a python-socketio client, through the queue
    sio.emit("r-green", 5, to="green")
    sio.enter_room(p_sids["p1"], "violet")
    sio.leave_room(p_sids["p1"], "violet")          # left again, through the queue
    sio.emit("r-violet", 16, to="violet")           # nobody
    acked = []
    sio.emit("r-ask", 6, to=p_sids["p1"], callback=lambda *a: acked.append(a))
    wait_for(lambda: acked, "the callback from python-socketio's client")
    assert acked == [("p1 got r-ask",)]
    sync_from_roomcast()

    # (b) python-socketio -> everyone on the queue
    do("emit", event="p-all", args=[7])
    do("emit", event="p-blue", args=[8], to="blue")
    do("emit", event="p-skip", args=[9], to="red", skip_sid=r_sids["r1"])
    do("emit", event="p-bin", args=[{"$hex": "00ff"}], to=r_sids["r1"])
    do("emit", event="p-chat", args=[10], namespace="/chat")
    do("enter_room", sid=r_sids["r1"], room="green")   # a roomcast client, through the queue
    do("emit", event="p-green", args=[11], to="green")
    do("enter_room", sid=r_sids["r2"], room="violet")
    do("leave_room", sid=r_sids["r2"], room="violet")
    do("emit", event="p-violet", args=[17], to="violet")   # nobody
    do("emit_with_callback", event="p-ask", args=[12], to=r_sids["r2"])
    wait_for(lambda: ["r2 got p-ask"] in do("acks"), "the callback from roomcast's client")
    sync_from_psio()

    # (c) a roomcast write-only manager reaches both servers' clients
    writer = roomcast_manager(kind, url, channel, write_only=True)
    try:
        writer.emit("w-red", 13, room="red", skip_sid=r_sids["r2"])
        writer.close_room("green")
        writer.emit("w-green", 14, room="green")            # closed: nobody
        writer.emit("w-bin", (b"\xff", 15), room=p_sids["p2"])
        writer.disconnect(p_sids["chat:pc"], namespace="/chat")   # python-socketio's crashes
    finally:
        writer.close()
    sync_from_roomcast()
    sync_from_psio()

    # disconnects across servers, then the end for whoever is left
    sio.disconnect(p_sids["p2"])
    do("disconnect", sid=r_sids["r1"])
    wait_for(lambda: not sio.manager.is_connected(r_sids["r1"], "/"), "r1's disconnect")
    sync_from_roomcast()   # p2's disconnect was applied before the probe
    sio.emit("end")
    sio.emit("end", namespace="/chat")
    inbox = run.result()

    assert inbox["r1"] == [["r-all", 1], ["r-red", 2], ["r-rooms", 3], ["p-all", 7],
                           ["p-bin", b"\x00\xff"], ["p-green", 11], ["w-red", 13],
                           ["disconnected", "io server disconnect"]]
    assert inbox["r2"] == [["r-all", 1], ["r-red", 2], ["r-rooms", 3], ["r-multi", 1, "two"],
                           ["p-all", 7], ["p-blue", 8], ["p-skip", 9], ["p-ask", 12]]
    assert inbox["p1"] == [["r-all", 1], ["r-red", 2], ["r-ask", 6], ["p-all", 7],
                           ["p-skip", 9], ["w-red", 13]]
    assert inbox["p2"] == [["r-all", 1], ["r-rooms", 3], ["r-bin", {"b": b"\x01\x02"}],
                           ["r-multi", 1, "two"], ["r-green", 5], ["p-all", 7], ["p-blue", 8],
                           ["p-green", 11], ["w-bin", b"\xff", 15],
                           ["disconnected", "io server disconnect"]]
    assert inbox["rc"] == [["r-chat", 4], ["p-chat", 10]]
    assert inbox["pc"] == [["r-chat", 4], ["p-chat", 10], ["disconnected", "io server disconnect"]]


WORKER = """
    from gevent import monkey
    monkey.patch_all()   # python-socketio's queue managers require it under gevent
    import json, sys
    import flask_socketio
    kind, url, channel, r1 = sys.argv[2:6]
    if kind == "redis":
        manager = socketio.RedisManager(url, channel=channel, write_only=True)
        import redis
        junk_client = redis.Redis.from_url(url)
        junk = lambda text: junk_client.publish(channel, text)
    else:
        manager = socketio.KombuManager(url, channel=channel, write_only=True)
        import kombu
        conn = kombu.Connection(url)
        producer = conn.Producer(exchange=kombu.Exchange(channel, type="fanout", durable=False))
        junk = lambda text: producer.publish(text)
    # messages roomcast must log and skip
    for text in ["not json", "[1, 2]", json.dumps({"method": "explode"}),
                 json.dumps({"method": "emit", "event": 3, "data": []}),
                 json.dumps({"method": "emit", "event": "x", "data": "no list"}),
                 json.dumps({"method": "emit", "event": "x", "data": [{}, "%%%"], "binary": True}),
                 json.dumps({"method": "close_room", "room": {"a": 1}})]:
        junk(text)
    manager.emit("psio-all", {"n": 1})
    manager.emit("psio-red", (2, "x"), room="red", skip_sid=r1)
    manager.emit("psio-bin", b"\\x00\\x01", room=r1)
    manager.emit("psio-chat", 3, namespace="/chat")
    manager.close_room("red")
    manager.emit("psio-red-closed", 4, room="red")
    fsio = flask_socketio.SocketIO(message_queue=url, channel=channel)
    fsio.emit("flask-all", 5)
    fsio.emit("flask-red", 6, to="blue")
    fsio.emit("end")
    fsio.emit("end", namespace="/chat")
    done("sent")
"""


def test_python_socketio_write_only_emitters_reach_roomcast(queue, serve, start_js, run_psio,
                                                            wait_for, caplog):
    kind, url, channel = queue
    sio = roomcast_server(kind, url, channel)
    r_url = serve(sio)
    run = start_js(clients_script([
        {"name": "r1", "url": r_url, "rooms": ["red"]},
        {"name": "r2", "url": r_url, "rooms": ["red", "blue"]},
        {"name": "rc", "url": r_url, "nsp": "/chat"},
    ]), r_url, timeout=30)
    wait_for(lambda: len(sio.sids) == 3, "the roomcast clients")
    worker = WORKER.replace("sys.argv[2:6]", repr([kind, url, channel, sio.sids["r1"]]))
    with caplog.at_level(logging.WARNING, logger="roomcast.compat.queue"):
        assert run_psio(worker, r_url, timeout=30) == "sent"
        inbox = run.result()
    assert inbox["r1"] == [["psio-all", {"n": 1}], ["psio-bin", b"\x00\x01"], ["flask-all", 5]]
    assert inbox["r2"] == [["psio-all", {"n": 1}], ["psio-red", 2, "x"], ["flask-all", 5],
                           ["flask-red", 6]]
    assert inbox["rc"] == [["psio-chat", 3]]
    skipped = [r.getMessage() for r in caplog.records if "skipping a bad message" in r.getMessage()]
    assert len(skipped) == 7, skipped
    sio.shutdown()


def test_python_socketio_managers_given_to_roomcast_become_roomcast_ones(redis_url):
    import socketio as real_socketio

    given = real_socketio.RedisManager(redis_url, channel="roomcast-test-given",
                                       redis_options={"socket_timeout": 5})
    sio = socketio.Server(client_manager=given)
    assert isinstance(sio.manager, socketio.RedisManager)
    assert (sio.manager.redis_url, sio.manager.channel, sio.manager.write_only,
            sio.manager.redis_options) == (redis_url, "roomcast-test-given", False,
                                           {"socket_timeout": 5})
    assert sio.manager.wait_subscribed(10)
    sio.shutdown()
    kombu_given = real_socketio.KombuManager(AMQP_URL, channel="roomcast-test-given",
                                             write_only=True)
    writer = socketio.Server(client_manager=kombu_given).manager
    assert isinstance(writer, socketio.KombuManager)
    assert (writer.url, writer.channel, writer.write_only) == (AMQP_URL, "roomcast-test-given",
                                                               True)

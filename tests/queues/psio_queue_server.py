"""A real python-socketio server on a message queue, for the queue tests.

    python psio_queue_server.py PORT redis|kombu URL CHANNEL

Monkey patched gevent (python-socketio's queue managers require it). Clients
call ``ready(name, rooms)`` to join rooms; the test drives the server through
``POST /do`` with a JSON operation and reads the answer as JSON.
"""
from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import sys  # noqa: E402

import socketio  # noqa: E402
from gevent import pywsgi  # noqa: E402
from geventwebsocket.handler import WebSocketHandler  # noqa: E402

port, kind, url, channel = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
manager_class = socketio.RedisManager if kind == "redis" else socketio.KombuManager
sio = socketio.Server(client_manager=manager_class(url, channel=channel), async_mode="gevent")
sids = {}
acks = []


@sio.event
def ready(sid, name, rooms):
    for room in rooms:
        sio.enter_room(sid, room)
    sids[name] = sid
    return True


@sio.on("*", namespace="/chat")
def chat_any(event, sid, *args):
    pass


@sio.event(namespace="/chat")
def connect(sid, environ, auth):
    sids["chat:" + auth["name"]] = sid


def _bytes(value):
    # {"$hex": "..."} in an operation stands for bytes
    if isinstance(value, dict):
        if list(value) == ["$hex"]:
            return bytes.fromhex(value["$hex"])
        return {k: _bytes(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_bytes(v) for v in value]
    return value


def control(environ, start_response):
    op = _bytes(json.loads(environ["wsgi.input"].read() or b"{}"))
    kind = op.pop("op")
    result = None
    if kind == "sids":
        result = sids
    elif kind == "emit":
        sio.emit(op.pop("event"), tuple(op.pop("args")), **op)
    elif kind == "emit_with_callback":
        sio.emit(op.pop("event"), tuple(op.pop("args")), callback=lambda *a: acks.append(a), **op)
    elif kind == "acks":
        result = acks
    elif kind == "enter_room":
        sio.enter_room(op["sid"], op["room"])
    elif kind == "leave_room":
        sio.leave_room(op["sid"], op["room"])
    elif kind == "close_room":
        sio.close_room(op["room"])
    elif kind == "disconnect":
        sio.disconnect(op["sid"])
    body = json.dumps(result).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


app = socketio.WSGIApp(sio, control)
server = pywsgi.WSGIServer(("127.0.0.1", port), app, handler_class=WebSocketHandler, log=None)
server.start()
print("listening", flush=True)
server.serve_forever()

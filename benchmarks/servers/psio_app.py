"""The benchmark app on python-socketio 5.x, in its classic gevent deployment:
socketio.Server(async_mode="gevent") + socketio.WSGIApp on gevent.pywsgi with
gevent-websocket's WebSocketHandler. The app is written down in benchmarks/README.md.

usage: python psio_app.py PORT
"""
from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402

import socketio  # noqa: E402
from gevent import pywsgi  # noqa: E402
from geventwebsocket.handler import WebSocketHandler  # noqa: E402

PAD = "x" * 24
ATTACHMENT = bytes(range(64))
GROUPS = ["g0", "g1", "g2"]

sio = socketio.Server(async_mode="gevent", logger=False, engineio_logger=False)
order: list[str] = []  # sids in connection order, for the unicast scenario


@sio.event
def connect(sid, environ, auth=None):
    order.append(sid)


@sio.event
def disconnect(sid, reason=None):
    order.remove(sid)


@sio.on("join")
def join(sid, rooms):
    for room in rooms:
        sio.enter_room(sid, room)
    return True


@sio.on("echo")
def echo(sid, data):
    return data


@sio.on("chat")
def chat(sid, msg):
    sio.emit("m", msg["d"], to=msg["room"], skip_sid=sid)
    return True


@sio.on("burst")
def burst(sid, spec):
    kind, k = spec["kind"], spec["k"]
    data = {"ph": spec["ph"], "t": spec["t"], "p": "x" * spec["pad"] if "pad" in spec else PAD}
    for _ in range(k):
        if kind == "all":
            sio.emit("b", data)
        elif kind == "room":
            sio.emit("b", data, to="g0")
        elif kind == "multi":
            # python-socketio has no except(room): the app skips the excluded room's sids
            excluded = [s for s, _ in sio.manager.get_participants("/", "x0")]
            sio.emit("b", data, to=GROUPS, skip_sid=excluded)
        elif kind == "bin":
            sio.emit("bb", (data, ATTACHMENT))
        elif kind == "uni":
            for s in order:
                sio.emit("b", data, to=s)
    return True


if __name__ == "__main__":
    app = socketio.WSGIApp(sio)
    pywsgi.WSGIServer(("127.0.0.1", int(sys.argv[1])), app, handler_class=WebSocketHandler,
                      log=None, backlog=1024).serve_forever()

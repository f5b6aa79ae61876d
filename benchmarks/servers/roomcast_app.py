"""The benchmark app on roomcast's native API (ARCHITECTURE.md section 8), served
as io.run() serves it: gevent.pywsgi with roomcast's WebSocketHandler
(roomcast.wsgi.make_server). The app is written down in benchmarks/README.md.

usage: python roomcast_app.py PORT
ROOMCAST_NO_EXTENSIONS=1 selects the pure-Python twin at import time;
run.py sets ROOMCAST_REQUIRE_EXTENSIONS=1 for the compiled run so that a missing
extension fails loudly instead of measuring the twin under the wrong name.
"""
from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402

import roomcast  # noqa: E402
from roomcast.wsgi import make_server  # noqa: E402

PAD = "x" * 24
ATTACHMENT = bytes(range(64))
GROUPS = ["g0", "g1", "g2"]

import os  # noqa: E402

if os.environ.get("ROOMCAST_BENCH_REDIS"):   # benchmarks/bench_workers.py: workers over Redis
    from roomcast.adapters.redis import RedisAdapter  # noqa: E402

    # one key per supervisor, so that only this run's workers meet
    io = roomcast.Server(adapter=RedisAdapter.factory(os.environ["ROOMCAST_BENCH_REDIS"],
                                                      key=f"bench-workers-{os.getppid()}"))
else:
    io = roomcast.Server()
if os.environ.get("ROOMCAST_BENCH_METRICS"):   # the cost of roomcast.metrics when on
    from roomcast import metrics  # noqa: E402

    metrics.enable()
order: dict = {}  # sockets in connection order (dicts keep insertion order), for unicast


@io.on("connection")
def on_connection(socket):
    order[socket.id] = socket

    @socket.on("disconnect")
    def on_disconnect(reason):
        order.pop(socket.id, None)

    @socket.on("join")
    def join(rooms, ack=None):
        socket.join(rooms)
        if ack:
            ack(True)

    @socket.on("echo")
    def echo(data, ack=None):
        if ack:
            ack(data)

    @socket.on("chat")
    def chat(msg, ack=None):
        socket.to(msg["room"]).emit("m", msg["d"])
        if ack:
            ack(True)

    @socket.on("burst")
    def burst(spec, ack=None):
        kind, k = spec["kind"], spec["k"]
        data = {"ph": spec["ph"], "t": spec["t"], "p": "x" * spec["pad"] if "pad" in spec else PAD}
        for _ in range(k):
            if kind == "all":
                io.emit("b", data)
            elif kind == "room":
                io.to("g0").emit("b", data)
            elif kind == "multi":
                io.to(GROUPS).except_("x0").emit("b", data)
            elif kind == "bin":
                io.emit("bb", data, ATTACHMENT)
            elif kind == "uni":
                for s in list(order.values()):
                    s.emit("b", data)
        if ack:
            ack(True)


if __name__ == "__main__":
    print(f"roomcast compiled core: {roomcast.USING_EXTENSIONS}", file=sys.stderr, flush=True)
    make_server(io, "127.0.0.1", int(sys.argv[1]), backlog=1024).serve_forever()

"""The app the multi-worker tests serve: `roomcast serve tests.apps.workers_app:io
--workers 2`, `gunicorn -k roomcast.gunicorn.Worker -w 2 tests.apps.workers_app:app`
and `python -m tests.apps.workers_app PORT WORKERS` (io.run(workers=N)).
Every answer says which worker process gave it."""
from __future__ import annotations

import os
from typing import Any

import roomcast

if os.environ.get("WORKERS_APP_REDIS"):
    # the Redis adapter instead of the inter-process one (url and key prefix from the test)
    from roomcast.adapters.redis import RedisAdapter

    url, key = os.environ["WORKERS_APP_REDIS"].split("#", 1)
    io = roomcast.Server(adapter=RedisAdapter.factory(url, key=key, allow_intersections=True))
else:
    io = roomcast.Server()
app = roomcast.WSGIApp(io)


@io.on("connection")
def on_connection(socket: roomcast.Socket) -> None:
    socket.join("everyone")

    @socket.on("whoami")
    def whoami(ack: Any) -> None:
        ack({"pid": os.getpid(), "servers": io.sockets.adapter.server_count()})

    @socket.on("join")
    def join(room: str, ack: Any) -> None:
        socket.join(room)
        ack(os.getpid())

    @socket.on("broadcast")
    def broadcast(room: str, payload: Any, ack: Any) -> None:
        io.to(room).emit("news", payload)
        ack(os.getpid())

    @socket.on("broadcast-both")
    def broadcast_both(room: str, other: str, payload: Any, ack: Any) -> None:
        io.to(room).intersect(other).emit("news", payload)
        ack(os.getpid())

    @socket.on("ask-everyone")
    def ask_everyone(ack: Any) -> None:
        answers = io.timeout(5.0).emit_with_ack("question", os.getpid())
        ack(sorted(answers))

    @socket.on("fetch")
    def fetch(room: str, ack: Any) -> None:
        ack(sorted(s.id for s in io.in_(room).fetch_sockets()))

    @socket.on("sockets-join")
    def sockets_join(room: str, target: str, ack: Any) -> None:
        io.in_(room).sockets_join(target)
        ack(os.getpid())

    @socket.on("disconnect-room")
    def disconnect_room(room: str, ack: Any) -> None:
        ack(os.getpid())
        io.in_(room).disconnect_sockets(True)

    @socket.on("server-side")
    def server_side(ack: Any) -> None:
        ack(sorted(io.server_side_emit_with_ack("pid-please")))

    @socket.on("crash")
    def crash() -> None:
        os._exit(3)


@io.on("pid-please")
def pid_please(ack: Any) -> None:
    ack(os.getpid())


if __name__ == "__main__":   # io.run(workers=N)
    import sys

    io.run(host="127.0.0.1", port=int(sys.argv[1]), workers=int(sys.argv[2]), shutdown_timeout=3.0)

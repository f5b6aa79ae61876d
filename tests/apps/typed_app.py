"""A small app written against roomcast's public API with full type hints.

tests/unit/test_typing.py runs ``mypy --strict`` on it: the public names, the
decorators and the compiled core's stubs must all be visible to a type checker.
"""
from __future__ import annotations

from typing import Any

import roomcast
from roomcast import _speedups

io = roomcast.Server(cors="*", ping_interval=10.0)
chat: roomcast.Namespace = io.of("/chat")


def authenticate(socket: roomcast.Socket, next: Any) -> None:
    if socket.handshake["auth"].get("token") == "bad":
        next(roomcast.ConnectError("Not authorized", {"retry": False}))
    else:
        next()


io.use(authenticate)


@io.on("connection")
def on_connection(socket: roomcast.Socket) -> None:
    socket.join("lobby")
    socket.data["name"] = "anonymous"

    @socket.on("say")
    def say(text: str, ack: Any = None) -> None:
        io.to("lobby").except_("muted").emit("said", socket.id, text)
        if ack is not None:
            ack("ok")

    @socket.on("disconnect")
    def gone(reason: str) -> None:
        io.emit("left", socket.id, reason)


def lobby_members() -> list[str]:
    return [s.id for s in io.in_("lobby").fetch_sockets()]


def everyone_answers() -> list[Any]:
    answers: list[Any] = io.timeout(2.0).emit_with_ack("ping")
    return answers


def core_smoke() -> int:
    index = _speedups.RoomIndex()
    index.add(1, "room")
    selected: _speedups.Selection = index.select(["room"])
    packet: _speedups.EncodedPacket = _speedups.encode_packet(2, "/", ["hi"])
    return len(selected) + len(packet.ws)


app = roomcast.WSGIApp(io, static_files={"/": "index.html"})
compiled: bool = roomcast.USING_EXTENSIONS

if __name__ == "__main__":
    io.run(host="127.0.0.1", port=5000)

"""The demo's server side: chat rooms on "/" and a shared news feed on "/news".

Everything the browser sends is checked here (types, lengths): a bad request gets an
error in its acknowledgement, and nothing else happens.
"""
from __future__ import annotations

import re
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

import roomcast

STATIC = Path(__file__).resolve().parent / "static"
MAX_TEXT = 500
NEWS_HISTORY = 20
ROOM_NAME = re.compile(r"^[\w .:-]{1,32}$")
USER_NAME = re.compile(r"^[\w .-]{1,24}$")


def _split_ack(args: tuple) -> tuple[tuple, Callable[..., None]]:
    """Handler arguments and the ack callable (a no-op when the client asked for none)."""
    if args and callable(args[-1]):
        return args[:-1], args[-1]
    return args, lambda *_: None


def _text(value: Any) -> str | None:
    if isinstance(value, str) and 0 < len(value.strip()) <= MAX_TEXT:
        return value.strip()
    return None


def _user_name(socket: Any) -> str:
    auth = socket.handshake.get("auth")
    name = auth.get("name") if isinstance(auth, dict) else None
    if isinstance(name, str) and USER_NAME.match(name.strip()):
        return name.strip()
    return "guest-" + socket.id[:4]


def _now_ms() -> int:
    return int(time.time() * 1000)


def create_server(**server_kwargs: Any) -> roomcast.Server:
    """The demo's Socket.IO server (in-memory adapter)."""
    io = roomcast.Server(**server_kwargs)

    def member_count(room: str) -> int:
        return len(io.in_(room).fetch_sockets())

    @io.on("connection")
    def on_chat_connection(socket: Any) -> None:
        name = socket.data["name"] = _user_name(socket)
        socket.emit("welcome", {"name": name})

        def joined_rooms() -> list[str]:
            return sorted(r for r in socket.rooms if r != socket.id)

        @socket.on("join")
        def on_join(*args: Any) -> None:
            args, ack = _split_ack(args)
            room = args[0] if args else None
            if not isinstance(room, str) or not ROOM_NAME.match(room):
                ack({"error": "a room name is 1-32 letters, digits, spaces or .:-_"})
                return
            if room not in socket.rooms:
                socket.join(room)
                socket.to(room).emit("system", {"room": room, "text": f"{name} joined",
                                                "time": _now_ms()})
            ack({"room": room, "members": member_count(room), "rooms": joined_rooms()})

        @socket.on("leave")
        def on_leave(*args: Any) -> None:
            args, ack = _split_ack(args)
            room = args[0] if args else None
            if not isinstance(room, str) or room not in socket.rooms or room == socket.id:
                ack({"error": "not in that room"})
                return
            socket.leave(room)
            socket.to(room).emit("system", {"room": room, "text": f"{name} left",
                                            "time": _now_ms()})
            ack({"room": room, "rooms": joined_rooms()})

        @socket.on("message")
        def on_message(*args: Any) -> None:
            args, ack = _split_ack(args)
            payload = args[0] if args else None
            room = payload.get("room") if isinstance(payload, dict) else None
            text = _text(payload.get("text")) if isinstance(payload, dict) else None
            if not isinstance(room, str) or room not in socket.rooms or room == socket.id:
                ack({"error": "join the room first"})
                return
            if text is None:
                ack({"error": f"a message is 1-{MAX_TEXT} characters"})
                return
            io.to(room).emit("message", {"room": room, "from": name, "text": text,
                                         "time": _now_ms()})
            ack({"room": room})

        @socket.on("disconnecting")
        def on_disconnecting(reason: str) -> None:
            for room in joined_rooms():
                socket.to(room).emit("system", {"room": room, "text": f"{name} left",
                                                "time": _now_ms()})

    news = io.of("/news")
    history: deque[dict] = deque(maxlen=NEWS_HISTORY)

    @news.on("connection")
    def on_news_connection(socket: Any) -> None:
        name = _user_name(socket)
        socket.emit("history", list(history))

        @socket.on("post")
        def on_post(*args: Any) -> None:
            args, ack = _split_ack(args)
            text = _text(args[0]) if args else None
            if text is None:
                ack({"error": f"a news item is 1-{MAX_TEXT} characters"})
                return
            item = {"from": name, "text": text, "time": _now_ms()}
            history.append(item)
            news.emit("news", item)
            ack({"ok": True})

    return io


def create_app(client_js: str | Path, **server_kwargs: Any) -> tuple[roomcast.Server, Any]:
    """The server and the WSGI app: the page at "/", its files under "/static",
    the official socket.io client (a file from the npm package) at "/client/socket.io.min.js"."""
    io = create_server(**server_kwargs)
    app = roomcast.WSGIApp(io, static_files={
        "/": str(STATIC / "index.html"),
        "/static": str(STATIC),
        "/client/socket.io.min.js": str(client_js),
    })
    return io, app

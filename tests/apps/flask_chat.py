"""A Flask-SocketIO chat app in the spirit of Flask-SocketIO's example/ folder
(its own code): the same module runs on real Flask-SocketIO or on roomcast.flask.

    make_app("flask_socketio") / make_app("roomcast.flask") -> (app, socketio)
    python flask_chat.py MODULE PORT [manage_session]   # serves with socketio.run()

Every reply is a ``reply`` event ``{"text", "n"}``, ``n`` counting the events this
connection sent (kept in the Socket.IO session, as the example does).
"""
from __future__ import annotations

import importlib
import sys

from flask import Flask, copy_current_request_context, request, session


def make_app(module_name: str, **options):
    fsio = importlib.import_module(module_name)
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "not so secret"
    socketio = fsio.SocketIO(app, **options)
    app.ticks = []

    def counted() -> int:
        session["n"] = session.get("n", 0) + 1
        return session["n"]

    def my_rooms() -> list:
        return sorted(r for r in fsio.rooms() if r != request.sid)

    @app.route("/login/<name>")
    def login(name):
        session["user"] = name
        return "logged in"

    @app.route("/announce/<text>")
    def announce(text):
        socketio.emit("reply", {"text": "announced " + text, "n": 0})   # from an HTTP route
        return "sent"

    @socketio.on("connect")
    def on_connect(auth):
        if auth and auth.get("token") == "bad":
            raise fsio.ConnectionRefusedError("bad token")
        fsio.emit("reply", {"text": "welcome " + session.get("user", "stranger"), "n": 0})

    @socketio.event
    def say(data):
        fsio.emit("reply", {"text": data["text"], "n": counted()})

    @socketio.event
    def shout(data):
        fsio.emit("reply", {"text": data["text"], "n": counted()}, broadcast=True)

    @socketio.event
    def shout_others(data):
        fsio.emit("reply", {"text": data["text"], "n": counted()}, broadcast=True,
                  include_self=False)

    @socketio.event
    def join(data):
        fsio.join_room(data["room"])
        fsio.emit("reply", {"text": "rooms: " + ",".join(my_rooms()), "n": counted()})

    @socketio.event
    def leave(data):
        fsio.leave_room(data["room"])
        fsio.emit("reply", {"text": "rooms: " + ",".join(my_rooms()), "n": counted()})

    @socketio.on("to_room")
    def to_room(data):
        fsio.emit("reply", {"text": data["text"], "n": counted()}, to=data["room"])

    @socketio.on("close")
    def close(data):
        fsio.emit("reply", {"text": "closing " + data["room"], "n": counted()}, to=data["room"])
        fsio.close_room(data["room"])

    @socketio.event
    def whisper(data):
        fsio.send(data["text"], to=data["room"], include_self=False)

    @socketio.event
    def ask(data):
        return "answer to " + data

    @socketio.event
    def binary(data):
        fsio.emit("reply", {"text": "bytes", "n": len(data)})
        return data[::-1]

    @socketio.event
    def boom(data):
        raise RuntimeError("boom " + data)

    @socketio.on_error()
    def on_error(exc):
        fsio.emit("reply", {"text": "error: " + str(exc) + " in " + request.event["message"],
                            "n": 0})

    @socketio.on("*")
    def anything(event, data):
        fsio.emit("reply", {"text": "unhandled " + event, "n": counted()})

    @socketio.event
    def tick(data):
        sid = request.sid

        def later():
            socketio.sleep(0.05)
            socketio.emit("reply", {"text": "tick " + data, "n": 0}, to=sid)
        socketio.start_background_task(later)

    @socketio.event
    def bye():
        @copy_current_request_context
        def acked():
            fsio.disconnect()
        fsio.emit("reply", {"text": "bye", "n": counted()}, callback=acked)

    @socketio.on("message")
    def message(data):
        fsio.send("echo " + data)

    @socketio.on("json")
    def json_message(data):
        fsio.send({"echo": data}, json=True)

    @socketio.on("disconnect")
    def on_disconnect(reason):
        app.ticks.append("gone")

    class Chat(fsio.Namespace):
        def on_connect(self):
            fsio.emit("reply", {"text": "chat welcome", "n": 0})

        def on_post(self, data):
            fsio.emit("reply", {"text": request.namespace + " " + data, "n": counted()},
                      broadcast=True)

        def on_whoami(self):
            return session.get("user", "stranger")

    socketio.on_namespace(Chat("/chat"))
    return app, socketio


if __name__ == "__main__":
    if sys.argv[1] == "flask_socketio":
        from gevent import monkey
        monkey.patch_all()
    app, socketio = make_app(sys.argv[1], manage_session=len(sys.argv) < 4,
                             cors_allowed_origins="*")
    print("serving", flush=True)
    socketio.run(app, host="127.0.0.1", port=int(sys.argv[2]))

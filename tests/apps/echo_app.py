"""A small roomcast app served by gunicorn / io.run in the hosting tests.

It answers "echo" with an ack, and Flask serves "/" behind roomcast.WSGIApp.
"""
import sys

import flask

import roomcast

io = roomcast.Server()


@io.on("connection")
def on_connection(socket):
    def echo(*args):
        *values, ack = args
        ack({"echo": values, "transport": socket.conn.transport})

    socket.on("echo", echo)


flask_app = flask.Flask(__name__)


@flask_app.route("/")
def index():
    return "flask says hi"


app = roomcast.WSGIApp(io, flask_app)

if __name__ == "__main__":   # python -m tests.apps.echo_app PORT: the one-call runner
    io.run("127.0.0.1", int(sys.argv[1]), app=flask_app)

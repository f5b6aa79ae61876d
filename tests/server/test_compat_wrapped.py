"""roomcast.compat calls handlers wrapped with functools.wraps (every Flask-SocketIO
handler is) with the signature the wrapper really has, as python-socketio does:
the same wrapped handlers on real python-socketio and on roomcast.compat, the same
client script, the same calls."""
from __future__ import annotations

import functools

import socketio as real_socketio

import roomcast.compat as socketio

CLIENT = """
    // python-socketio tries the legacy connect form only when the client sent no auth
    const sockets = [io(URL, { forceNew: true, auth: { token: "/" } }),
                     io(URL + "/legacy", { forceNew: true }),
                     io(URL + "/noargs", { forceNew: true })];
    await Promise.all(sockets.map((s) => once(s, "connect")));
    for (const s of sockets) s.disconnect();
    await new Promise(() => {});   // stays until the test has seen the disconnects
"""


def install(sio, calls: list) -> None:
    """Wrapped connect/disconnect handlers of every shape, recording what they get."""

    def flask_like(fn):   # Flask-SocketIO's shape: its own signature is (sid, *args)
        @functools.wraps(fn)
        def _handler(sid, *args):
            return fn(*args)
        return _handler

    def passing_through(fn):   # a generic decorator: (*args, **kwargs)
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            return fn(*args, **kwargs)
        return wrapper

    def full(fn):   # a wrapper that takes the full form and calls a legacy handler
        @functools.wraps(fn)
        def wrapper(sid, environ, auth):
            calls.append(("wrapper of connect", auth))
            return fn(sid, environ)
        return wrapper

    @full
    def connect(sid, environ):
        calls.append(("/", "connect", "legacy form"))

    @flask_like
    def disconnect(reason):
        calls.append(("/", "disconnect", reason))

    @passing_through
    def legacy_connect(sid, environ):
        calls.append(("/legacy", "connect", "legacy form"))

    @passing_through
    def legacy_disconnect(sid):
        calls.append(("/legacy", "disconnect", "legacy form"))

    def noargs_connect(sid, environ, auth):
        calls.append(("/noargs", "connect", auth))

    @flask_like
    def noargs_disconnect():
        calls.append(("/noargs", "disconnect", "no arguments"))

    sio.on("connect", connect)
    sio.on("disconnect", disconnect)
    sio.on("connect", legacy_connect, namespace="/legacy")
    sio.on("disconnect", legacy_disconnect, namespace="/legacy")
    sio.on("connect", noargs_connect, namespace="/noargs")
    sio.on("disconnect", noargs_disconnect, namespace="/noargs")


def test_wrapped_handlers_get_what_python_socketio_gives_them(serve, start_js, wait_for):
    outcomes = {}
    for name, sio in [("python-socketio", real_socketio.Server(async_mode="gevent")),
                      ("roomcast.compat", socketio.Server())]:
        calls: list = []
        install(sio, calls)
        url = serve(sio if name == "roomcast.compat" else real_socketio.WSGIApp(sio))
        client = start_js(CLIENT, url)
        wait_for(lambda: len(calls) == 7, f"the seven handler calls on {name}")
        client.kill()
        outcomes[name] = sorted(calls, key=repr)
    assert outcomes["roomcast.compat"] == outcomes["python-socketio"]
    assert ("/", "disconnect", "client disconnect") in outcomes["roomcast.compat"]
    assert ("wrapper of connect", {"token": "/"}) in outcomes["roomcast.compat"]


def test_every_public_name_exists_and_every_refusal_is_documented():
    import inspect

    for real, ours in [(real_socketio.Server, socketio.Server),
                       (real_socketio.Namespace, socketio.Namespace)]:
        missing = [name for name, _ in inspect.getmembers(real)
                   if not name.startswith("_") and not hasattr(ours, name)]
        assert missing == [], real
    assert socketio.Server().is_asyncio_based() is False
    # what roomcast.compat refuses or ignores is in its list of differences
    for refused in ("custom ``serializer``", "monitor_clients=False",
                    "functools.wraps"):
        assert refused in socketio.__doc__, refused

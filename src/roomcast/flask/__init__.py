"""Flask-SocketIO 5's API on roomcast: change ``flask_socketio`` to ``roomcast.flask``.

    from roomcast.flask import SocketIO, emit, send, join_room, leave_room, \\
        close_room, rooms, disconnect

The ``SocketIO`` extension builds a ``roomcast.compat.Server`` (python-socketio's
API on roomcast's native server) and routes the Socket.IO path of the Flask
app to it. As in Flask-SocketIO, every handler runs inside a Flask request
context made from the connection's handshake request, with ``request.sid``,
``request.namespace`` and ``request.event`` set, and (``manage_session=True``,
the default) a ``session`` copied from the user's Flask session once per
connection and kept for its lifetime.

``message_queue=`` picks python-socketio's queue managers as Flask-SocketIO
does (``redis://``/``rediss://`` -> RedisManager, other URLs -> KombuManager),
on the ``channel`` (default ``"flask-socketio"``); without an app the manager is
write-only, for workers that only emit. ``test_client()`` is in testing.py.
"""
from __future__ import annotations

import sys
from functools import wraps
from typing import Any, Callable

import flask
from flask.sessions import SessionMixin

from roomcast import compat
from roomcast.compat.exceptions import ConnectionRefusedError  # noqa: F401  (re-exported)
from roomcast.compat.server import event_decorator

from .namespace import Namespace
from .testing import SocketIOTestClient

__all__ = ["SocketIO", "Namespace", "SocketIOTestClient", "ConnectionRefusedError", "emit",
           "send", "call", "join_room", "leave_room", "close_room", "rooms", "disconnect"]

DEFAULT_CHANNEL = "flask-socketio"


class _SocketIOMiddleware(compat.WSGIApp):
    """Serves Socket.IO under the app's path, marking each environ with its Flask app."""

    def __init__(self, server: compat.Server, flask_app: flask.Flask, socketio_path: str) -> None:
        self.flask_app = flask_app
        super().__init__(server, flask_app.wsgi_app, socketio_path=socketio_path)

    def __call__(self, environ: dict, start_response: Callable):
        environ = dict(environ, **{"flask.app": self.flask_app})
        return super().__call__(environ, start_response)


class _ManagedSession(dict, SessionMixin):
    """The Socket.IO copy of a user's session (a plain dict Flask treats as a session)."""


def _queue_manager(url: str, channel: str, write_only: bool) -> compat.Manager:
    if url.startswith(("redis://", "rediss://", "unix://")):
        return compat.RedisManager(url, channel=channel, write_only=write_only)
    if url.startswith(("kafka://", "zmq")):
        raise ValueError(f"roomcast does not support the message queue {url!r} "
                         "(use a Redis or AMQP/kombu URL)")
    return compat.KombuManager(url, channel=channel, write_only=write_only)


def _current_context() -> Any:
    """The object that holds the request's session (it moved in Flask 3.2)."""
    app_ctx = getattr(flask.globals, "app_ctx", None)
    if app_ctx is not None and hasattr(app_ctx, "session"):
        return app_ctx._get_current_object()
    return flask.globals.request_ctx._get_current_object()


def _set_session(session: Any) -> None:
    ctx = _current_context()
    if hasattr(ctx, "_session"):
        ctx._session = session
    else:
        ctx.session = session


class SocketIO:
    """The Flask extension: ``SocketIO(app, **options)`` or ``init_app(app, **options)``.

    Options are python-socketio's ``Server`` options (``cors_allowed_origins``,
    ``ping_interval``, ``logger``, ``json``...) plus ``manage_session``,
    ``message_queue``, ``channel`` and ``path`` (default ``"socket.io"``).
    """

    reason = compat.Server.reason

    def __init__(self, app: flask.Flask | None = None, **kwargs: Any) -> None:
        self.server: compat.Server | None = None
        self.server_options: dict = {}
        self.wsgi_server: Any = None
        self.handlers: list[tuple] = []
        self.namespace_handlers: list[Any] = []
        self.exception_handlers: dict[str, Callable] = {}
        self.default_exception_handler: Callable | None = None
        self.manage_session = True
        self.async_mode = "gevent"
        self.sockio_mw: _SocketIOMiddleware | None = None
        # with an app, or without one but with a queue (a write-only emitter): now;
        # otherwise the app factory calls init_app later
        if app is not None or "message_queue" in kwargs:
            self.init_app(app, **kwargs)
        else:
            self.server_options.update(kwargs)

    def init_app(self, app: flask.Flask | None, **kwargs: Any) -> None:
        if app is not None:
            if not hasattr(app, "extensions"):
                app.extensions = {}
            app.extensions["socketio"] = self
        self.server_options.update(kwargs)
        options = self.server_options
        self.manage_session = options.pop("manage_session", self.manage_session)
        url = options.pop("message_queue", None)
        channel = options.pop("channel", DEFAULT_CHANNEL)
        if "client_manager" not in options and url:
            options["client_manager"] = _queue_manager(url, channel, write_only=app is None)
        if app is not None and options.get("json") is flask.json:
            options["json"] = _AppJSON(app)
        path = options.pop("path", None) or options.pop("resource", None) or "socket.io"
        path = path.lstrip("/")
        options.pop("async_mode", None)   # gevent is the only mode; say nothing about it
        self.server = compat.Server(**options)
        for message, handler, namespace in self.handlers:
            self.server.on(message, handler, namespace=namespace)
        for namespace_handler in self.namespace_handlers:
            self.server.register_namespace(namespace_handler)
        if app is not None:
            self.sockio_mw = _SocketIOMiddleware(self.server, app, path)
            app.wsgi_app = self.sockio_mw

    # -- handlers ---------------------------------------------------------------

    def on(self, message: str, namespace: str | None = None) -> Callable:
        """Decorator: ``handler(*args)`` runs for event ``message`` (``"*"``: any event,
        the handler then gets the event name first) in ``namespace`` (``"*"``: any)."""
        namespace = namespace or "/"

        def decorator(handler: Callable) -> Callable:
            @wraps(handler)
            def dispatch(sid: str, *args: Any) -> Any:
                real_namespace = namespace
                if namespace == "*":       # python-socketio passes the namespace first
                    real_namespace, sid, args = sid, args[0], args[1:]
                if message == "*":         # ... or the event name, then the sid
                    sid, args = args[0], (sid, *args[1:])
                return self._handle_event(handler, message, real_namespace, sid, *args)

            # the server must see dispatch's own (sid, *args) signature, not the
            # handler's: _handle_event adapts the arguments to the handler
            del dispatch.__wrapped__
            if self.server is not None:
                self.server.on(message, dispatch, namespace=namespace)
            else:
                self.handlers.append((message, dispatch, namespace))
            return handler
        return decorator

    def on_error(self, namespace: str | None = None) -> Callable:
        """Decorator: the handler of exceptions raised by the namespace's handlers."""
        namespace = namespace or "/"

        def decorator(exception_handler: Callable) -> Callable:
            if not callable(exception_handler):
                raise ValueError("exception_handler must be callable")
            self.exception_handlers[namespace] = exception_handler
            return exception_handler
        return decorator

    def on_error_default(self, exception_handler: Callable) -> Callable:
        """Decorator: the handler of exceptions of namespaces without their own."""
        if not callable(exception_handler):
            raise ValueError("exception_handler must be callable")
        self.default_exception_handler = exception_handler
        return exception_handler

    def on_event(self, message: str, handler: Callable, namespace: str | None = None) -> None:
        self.on(message, namespace=namespace)(handler)

    def event(self, *args: Any, **kwargs: Any) -> Callable:
        """``@socketio.event`` / ``@socketio.event(namespace=...)``: named after the function."""
        return event_decorator(self.on, args, kwargs)

    def on_namespace(self, namespace_handler: Namespace) -> None:
        if not isinstance(namespace_handler, Namespace):
            raise ValueError("Not a namespace instance.")
        namespace_handler._set_socketio(self)
        if self.server is not None:
            self.server.register_namespace(namespace_handler)
        else:
            self.namespace_handlers.append(namespace_handler)

    # -- emitting ------------------------------------------------------------------

    def emit(self, event: str, *args: Any, **kwargs: Any) -> None:
        """Emit from anywhere: ``to``/``room``, ``include_self``, ``skip_sid``,
        ``namespace`` (default ``/``), ``callback``, ``ignore_queue``."""
        namespace = kwargs.pop("namespace", "/")
        to = kwargs.pop("to", None) or kwargs.pop("room", None)
        include_self = kwargs.pop("include_self", True)
        skip_sid = kwargs.pop("skip_sid", None)
        if not include_self and not skip_sid:
            skip_sid = flask.request.sid
        callback = kwargs.pop("callback", None)
        if callback is not None and flask.has_request_context() and \
                getattr(flask.request, "sid", None):
            # the ack runs in the emitting client's request context, like its handlers
            callback = self._in_context(callback, flask.request.sid,
                                        getattr(flask.request, "namespace", namespace))
        self.server.emit(event, *args, namespace=namespace, to=to, skip_sid=skip_sid,
                         callback=callback, **kwargs)

    def _in_context(self, callback: Callable, sid: str, namespace: str) -> Callable:
        def run(*args: Any) -> Any:
            return self._handle_event(callback, None, namespace, sid, *args)
        return run

    def call(self, event: str, *args: Any, **kwargs: Any) -> Any:
        """Emit to one client and wait for its ack (``to``/``room``, ``timeout=60``)."""
        namespace = kwargs.pop("namespace", "/")
        to = kwargs.pop("to", None) or kwargs.pop("room", None)
        return self.server.call(event, *args, namespace=namespace, to=to, **kwargs)

    def send(self, data: Any, json: bool = False, namespace: str | None = None,
             to: Any = None, callback: Callable | None = None, include_self: bool = True,
             skip_sid: Any = None, **kwargs: Any) -> None:
        """Emit ``message`` (``json``: the ``json`` event)."""
        skip_sid = flask.request.sid if not include_self else skip_sid
        self.emit("json" if json else "message", data, namespace=namespace, to=to,
                  skip_sid=skip_sid, callback=callback, **kwargs)

    def close_room(self, room: Any, namespace: str | None = None) -> None:
        self.server.close_room(room, namespace)

    # -- serving ---------------------------------------------------------------------

    def run(self, app: flask.Flask, host: str | None = None, port: int | None = None,
            **kwargs: Any) -> None:
        """Serve the app (and Socket.IO) with gevent's pywsgi and roomcast's WebSocket
        handler until stop(); ``debug`` adds Werkzeug's debugger to the Flask app."""
        from gevent import pywsgi

        from roomcast.wsgi import WebSocketHandler

        host = host or "127.0.0.1"
        if port is None:
            server_name = app.config.get("SERVER_NAME")
            port = int(server_name.rsplit(":", 1)[1]) if server_name and ":" in server_name \
                else 5000
        debug = kwargs.pop("debug", app.debug)
        log_output = kwargs.pop("log_output", debug)
        for ignored in ("use_reloader", "extra_files", "reloader_options",
                        "allow_unsafe_werkzeug"):
            kwargs.pop(ignored, None)
        app.debug = debug
        if debug and self.sockio_mw is not None:
            from werkzeug.debug import DebuggedApplication
            self.sockio_mw.other_app = DebuggedApplication(self.sockio_mw.other_app, evalex=True)
        self.wsgi_server = pywsgi.WSGIServer((host, port), app, handler_class=WebSocketHandler,
                                             log="default" if log_output else None, **kwargs)
        self.wsgi_server.serve_forever()

    def stop(self) -> None:
        """Stop the server that run() started."""
        if self.wsgi_server is not None:
            self.wsgi_server.stop()

    def start_background_task(self, target: Callable, *args: Any, **kwargs: Any) -> Any:
        return self.server.start_background_task(target, *args, **kwargs)

    def sleep(self, seconds: float = 0) -> None:
        return self.server.sleep(seconds)

    def test_client(self, app: flask.Flask, namespace: str | None = None,
                    query_string: str | None = None, headers: dict | None = None,
                    auth: Any = None, flask_test_client: Any = None) -> SocketIOTestClient:
        """A client that talks to this server in-process (see testing.py)."""
        return SocketIOTestClient(app, self, namespace=namespace, query_string=query_string,
                                  headers=headers, auth=auth, flask_test_client=flask_test_client)

    # -- the request context of every handler -------------------------------------------

    def _handle_event(self, handler: Callable, message: str | None, namespace: str,
                      sid: str, *args: Any) -> Any:
        environ = self.server.get_environ(sid, namespace=namespace)
        if not environ:
            return "", 400    # a client we no longer know: Flask-SocketIO's answer
        app = environ["flask.app"]
        with app.request_context(environ):
            if self.manage_session:
                # one copy of the user's session per connection, kept in its environ
                if "saved_session" not in environ:
                    environ["saved_session"] = _ManagedSession(flask.session)
                session_obj = environ["saved_session"]
                _set_session(session_obj)
            else:
                session_obj = flask.session._get_current_object()
            flask.request.sid = sid
            flask.request.namespace = namespace
            flask.request.event = {"message": message, "args": args}
            try:
                if message == "connect":
                    auth = args[1] if len(args) > 1 else None
                    try:
                        result = handler(auth)
                    except TypeError:
                        result = handler()     # the older connect() without auth
                else:
                    result = handler(*args)
            except compat.exceptions.ConnectionRefusedError:
                raise
            except Exception:
                error_handler = self.exception_handlers.get(namespace,
                                                            self.default_exception_handler)
                if error_handler is None:
                    raise
                return error_handler(sys.exc_info()[1])
            if not self.manage_session and getattr(session_obj, "modified", True):
                # Flask owns the session: save it as a response would
                app.session_interface.save_session(app, session_obj, app.response_class())
            return result


class _AppJSON:
    """flask.json with the app context its dumps/loads need, wherever they run."""

    def __init__(self, app: flask.Flask) -> None:
        self.app = app

    def dumps(self, *args: Any, **kwargs: Any) -> str:
        with self.app.app_context():
            return flask.json.dumps(*args, **kwargs)

    def loads(self, *args: Any, **kwargs: Any) -> Any:
        with self.app.app_context():
            return flask.json.loads(*args, **kwargs)


# -- the functions handlers call (they use the current request's sid and namespace) ----

def _socketio() -> SocketIO:
    return flask.current_app.extensions["socketio"]


def emit(event: str, *args: Any, **kwargs: Any) -> None:
    """Emit from a handler: to the sender unless ``to``/``room`` or ``broadcast=True``."""
    namespace = kwargs["namespace"] if "namespace" in kwargs else flask.request.namespace
    to = kwargs.pop("to", None) or kwargs.pop("room", None)
    if to is None and not kwargs.get("broadcast"):
        to = flask.request.sid
    return _socketio().emit(event, *args, namespace=namespace, to=to,
                            include_self=kwargs.get("include_self", True),
                            skip_sid=kwargs.get("skip_sid"), callback=kwargs.get("callback"),
                            ignore_queue=kwargs.get("ignore_queue", False))


def call(event: str, *args: Any, **kwargs: Any) -> Any:
    """Emit to the sender (or ``to``) and wait for the ack (``timeout=60``)."""
    namespace = kwargs["namespace"] if "namespace" in kwargs else flask.request.namespace
    to = kwargs.pop("to", None) or kwargs.pop("room", None) or flask.request.sid
    return _socketio().call(event, *args, namespace=namespace, to=to,
                            ignore_queue=kwargs.get("ignore_queue", False),
                            timeout=kwargs.get("timeout", 60))


def send(message: Any, **kwargs: Any) -> None:
    """Send ``message`` (``json=True``: the ``json`` event), like emit()."""
    namespace = kwargs["namespace"] if "namespace" in kwargs else flask.request.namespace
    to = kwargs.pop("to", None) or kwargs.pop("room", None)
    if to is None and not kwargs.get("broadcast"):
        to = flask.request.sid
    return _socketio().send(message, json=kwargs.get("json", False), namespace=namespace, to=to,
                            include_self=kwargs.get("include_self", True),
                            skip_sid=kwargs.get("skip_sid"), callback=kwargs.get("callback"),
                            ignore_queue=kwargs.get("ignore_queue", False))


def join_room(room: Any, sid: str | None = None, namespace: str | None = None) -> None:
    _socketio().server.enter_room(sid or flask.request.sid, room,
                                  namespace=namespace or flask.request.namespace)


def leave_room(room: Any, sid: str | None = None, namespace: str | None = None) -> None:
    _socketio().server.leave_room(sid or flask.request.sid, room,
                                  namespace=namespace or flask.request.namespace)


def close_room(room: Any, namespace: str | None = None) -> None:
    _socketio().server.close_room(room, namespace=namespace or flask.request.namespace)


def rooms(sid: str | None = None, namespace: str | None = None) -> list:
    return _socketio().server.rooms(sid or flask.request.sid,
                                    namespace=namespace or flask.request.namespace)


def disconnect(sid: str | None = None, namespace: str | None = None,
               silent: bool = False) -> None:
    return _socketio().server.disconnect(sid or flask.request.sid,
                                         namespace=namespace or flask.request.namespace)

"""The seam between the python-socketio face and roomcast's native Server.

Everything that touches the native API lives here: building the native server
from python-engineio's options, hooking namespaces, and the few queries and
broadcasts the compat Server needs.
"""
from __future__ import annotations

import json as _stdjson
import logging
import weakref
from typing import TYPE_CHECKING, Any, Callable, Iterable

from roomcast.eio_packet import CLOSE
from roomcast.engine.cors import CorsOptions
from roomcast.engine.http import Refusal
from roomcast.errors import ConnectError
from roomcast.operators import BroadcastOperator
from roomcast.recovery import normalize_options

if TYPE_CHECKING:  # pragma: no cover
    from .server import Server

# Node's disconnect reasons -> python-engineio's (sio.reason.*)
_REASONS = {
    "client namespace disconnect": "client disconnect",
    "server namespace disconnect": "server disconnect",
    "forced close": "server disconnect",
    "forced server close": "server disconnect",
    "server shutting down": "server disconnect",
    "ping timeout": "ping timeout",
    "transport close": "transport close",
    "transport error": "transport error",
    "parse error": "transport error",
    "send buffer full": "transport error",   # roomcast's slow-consumer closes
    "write timeout": "transport error",
}


def native_disconnect_reason(reason: str, client_closed: bool = False) -> str:
    if client_closed and reason == "transport close":
        # the client sent an Engine.IO close packet: python-engineio calls that
        # a client disconnect, Node a transport close
        return "client disconnect"
    return _REASONS.get(reason, "transport error")


def _same_origins(environ: dict) -> list[str]:
    """python-engineio's default: only the server's own origin (and a proxy's)."""
    origins = []
    if "wsgi.url_scheme" in environ and "HTTP_HOST" in environ:
        origins.append(f"{environ['wsgi.url_scheme']}://{environ['HTTP_HOST']}")
        if "HTTP_X_FORWARDED_PROTO" in environ or "HTTP_X_FORWARDED_HOST" in environ:
            scheme = environ.get("HTTP_X_FORWARDED_PROTO",
                                 environ["wsgi.url_scheme"]).split(",")[0].strip()
            host = environ.get("HTTP_X_FORWARDED_HOST", environ["HTTP_HOST"]).split(",")[0].strip()
            origins.append(f"{scheme}://{host}")
    return origins


def _allowed_origins(allowed: Any, environ: dict) -> list | None:
    """python-engineio's (4.x) list of accepted origins for this request (None: any)."""
    if allowed is None:
        return _same_origins(environ)
    if allowed == "*":
        return None
    if isinstance(allowed, str):
        return [allowed]
    if callable(allowed):
        origin = environ.get("HTTP_ORIGIN")
        try:
            ok = allowed(origin, environ)
        except TypeError:
            ok = allowed(origin)
        return [origin] if ok else []
    return None if "*" in allowed else allowed


def origin_checker(allowed: Any) -> Callable[[dict], Any]:
    """An EngineServer origin_check refusing what python-engineio refuses, as it does:
    every request (WebSocket upgrades and OPTIONS included) with an Origin header
    that is not accepted gets 400 and a JSON string; ``[]`` turns the check off."""
    logged: list[bool] = []
    logger = logging.getLogger("roomcast.compat")

    def origin_check(environ: dict) -> Refusal | None:
        origin = environ.get("HTTP_ORIGIN")
        if allowed == [] or not origin:
            return None
        accepted = _allowed_origins(allowed, environ)
        if accepted is None or origin in accepted:
            return None
        message = origin + " is not an accepted origin."
        if logged:   # python-engineio: an error the first time, then INFO
            logger.info(message)
        else:
            logged.append(True)
            logger.error(message + " (further occurrences of this error will be logged "
                         "with level INFO)")
        return Refusal("400 BAD REQUEST", "text/plain",
                       _stdjson.dumps("Not an accepted origin.").encode("utf-8"))
    return origin_check


def _cookie(cookie: Any) -> Any:
    # python-engineio: a name, or a dict of name + attributes (values may be callables)
    if cookie is None or cookie is False:
        return None
    if isinstance(cookie, str):
        return {"name": cookie, "path": "/", "samesite": "Lax"}
    if isinstance(cookie, dict):
        out = {}
        for key, value in cookie.items():
            key = key.lower().replace("-", "")
            out[key] = value() if callable(value) else value
        out.setdefault("path", "/")
        return out
    return cookie


def native_options(options: dict, async_handlers: bool) -> dict:
    """roomcast.Server keyword arguments for python-engineio's options."""
    out: dict[str, Any] = {"async_handlers": async_handlers}
    ping_interval = options.get("ping_interval", 25)
    ping_timeout = options.get("ping_timeout", 20)
    if isinstance(ping_interval, tuple):
        # (interval, grace): the grace only lengthens how long a silent client is kept
        ping_interval, grace = ping_interval
        ping_timeout = ping_timeout + grace
    out["ping_interval"] = float(ping_interval)
    out["ping_timeout"] = float(ping_timeout)
    for name in ("max_http_buffer_size", "allow_upgrades", "http_compression",
                 "compression_threshold"):
        if name in options:
            out[name] = options[name]
    transports = options.get("transports")
    if transports is not None:
        if isinstance(transports, str):
            transports = [transports]
        transports = [t for t in transports if t in ("polling", "websocket")]
        if not transports:
            raise ValueError("No valid transports provided")
        out["transports"] = tuple(transports)
    cookie = _cookie(options.get("cookie"))
    if cookie is not None:
        out["cookie"] = cookie
    allowed = options.get("cors_allowed_origins")
    if allowed == []:
        out["cors"] = None            # python-engineio: [] turns CORS handling off
    else:
        out["cors"] = CorsOptions(origin=True, credentials=options.get("cors_credentials", True),
                                  methods="OPTIONS, GET, POST")
    out["origin_check"] = origin_checker(allowed)
    recovery = normalize_options(options.get("connection_state_recovery"))
    if recovery is not None:
        # the connect handler is python-socketio's only connection hook, and it runs as a
        # connection middleware: it runs for recovered sockets too
        out["connection_state_recovery"] = dict(recovery, skip_middlewares=False)
    _engine_logging(options.get("engineio_logger"))
    return out


class _ForwardTo(logging.Handler):
    """Hands roomcast.engine's records to the app's own engineio_logger."""

    def __init__(self, target: logging.Logger) -> None:
        super().__init__()
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        if self.target.isEnabledFor(record.levelno):
            self.target.handle(record)


def _engine_logging(setting: Any) -> None:
    # python-engineio's engineio_logger: True logs INFO to stderr, a Logger gets the records
    if not setting:
        return
    engine_log = logging.getLogger("roomcast.engine")
    engine_log.setLevel(logging.INFO)
    if isinstance(setting, logging.Logger):
        if not any(isinstance(h, _ForwardTo) and h.target is setting
                   for h in engine_log.handlers):
            engine_log.addHandler(_ForwardTo(setting))
    elif not engine_log.handlers:
        engine_log.addHandler(logging.StreamHandler())


class NativeBridge:
    """Owns the native roomcast.Server behind a compat Server."""

    def __init__(self, compat: "Server", options: dict) -> None:
        from roomcast.server import Server as NativeServer

        self.compat = compat
        native = native_options(options, compat.async_handlers)
        origin_check = native.pop("origin_check")
        self.io = NativeServer(path="/socket.io", parser=compat.serializer, **native)
        self.io.engine.origin_check = origin_check
        self._hooked: set[str] = set()
        self._closed_by_client: weakref.WeakSet = weakref.WeakSet()
        self.io.engine.on("connection", self._watch_close_packet)
        self._parent = None
        self._hook(self.io.sockets)
        for name in compat.namespaces if compat.namespaces != "*" else ():
            self.namespace_added(name)
        if compat.namespaces == "*":
            # any other name: a parent namespace (python-socketio's namespaces='*')
            self._parent = self.io.of(lambda name, auth: True)
            self._hook(self._parent)

    # -- namespaces ----------------------------------------------------------

    def namespace_added(self, name: str) -> None:
        """A handler or namespaces=[...] names this namespace: make it exist natively."""
        if name == "*" or name in self._hooked:
            return
        existing = self._find(name)
        if existing is not None and self._parent is not None and \
                getattr(existing, "_parent", None) is self._parent:
            return   # a child of the '*' parent: it copied the parent's hooks
        self._hook(self.io.of(name))

    def _hook(self, nsp: Any) -> None:
        self._hooked.add(getattr(nsp, "name", None))
        nsp.use(self._middleware)
        nsp.on("connection", self._on_connection)

    def _find(self, name: str) -> Any:
        """The native namespace called name, without creating one."""
        return self.io._nsps.get(name)

    def sockets_in(self, namespace: str, rooms: Any) -> list:
        """Connected local sockets of namespace in any of rooms (None: all)."""
        nsp = self._find(namespace)
        if nsp is None:
            return []
        if rooms is None:
            return list(nsp.sockets.values())
        if isinstance(rooms, (str, bytes)) or not hasattr(rooms, "__iter__"):
            rooms = [rooms]
        sids = nsp.adapter.sockets(set(rooms))
        return [nsp.sockets[sid] for sid in sids if sid in nsp.sockets]

    def broadcast(self, namespace: str, rooms: list | None, skip: frozenset,
                  event: str, args: list) -> None:
        nsp = self._find(namespace)
        if nsp is None:
            return
        # every sid is also a room of its own, so skip_sid is an except-room;
        # the operator is built directly from sets (cheaper than chaining to/except_)
        BroadcastOperator(nsp.adapter, frozenset(rooms) if rooms else frozenset(),
                          skip).emit(event, *args)

    # -- connections ---------------------------------------------------------

    def _middleware(self, socket: Any, next: Callable) -> None:
        compat = self.compat
        name = socket.nsp.name
        if not compat._accepts(name):
            next(ConnectError("Unable to connect"))
            return
        client = compat._client_pending(socket)
        if not compat.always_connect:
            refusal = compat._run_connect(socket, socket.handshake.get("auth"))
            if refusal is not None:
                compat._client_gone(client)
                next(ConnectError(refusal["message"], refusal.get("data")))
                return
        next()   # connects synchronously: `connection` has run when it returns
        if not socket.connected and client.state == "pending":
            compat._client_gone(client)   # the client left during the connect handler

    def _on_connection(self, socket: Any) -> None:
        compat = self.compat
        client = compat._clients.get(socket.nsp.name, {}).get(socket.id)
        if client is None:        # cannot happen unless the socket was dropped meanwhile
            client = compat._client_pending(socket)
        # the app's disconnect handler runs while the socket is still in its rooms,
        # as python-socketio's does (apps tell the rooms who left)
        socket.on("disconnecting", lambda reason: compat._on_disconnect(client, reason))
        socket.on("disconnect", lambda reason: compat._client_gone(client))
        socket.on_any(lambda event, *args: self._on_event(client, event, args))
        if compat.always_connect:
            compat._client_connected(client)
            refusal = compat._run_connect(socket, socket.handshake.get("auth"))
            if refusal is not None:
                client.refused = True
                socket.disconnect()
            return
        compat._client_connected(client)

    def _watch_close_packet(self, conn: Any) -> None:
        def on_packet(ptype: int, data: Any) -> None:
            if ptype == CLOSE:
                self._closed_by_client.add(conn)
        conn.on("packet", on_packet)

    def disconnect_reason(self, socket: Any, native_reason: str) -> str:
        return native_disconnect_reason(native_reason, socket.conn in self._closed_by_client)

    def _on_event(self, client: Any, event: str, args: tuple) -> None:
        ack = None
        if args and callable(args[-1]):
            ack, args = args[-1], args[:-1]
        self.compat._handle_event(client, event, list(args), ack)

    # -- server --------------------------------------------------------------

    def set_path(self, path: str) -> None:
        self.io.engine.path = "/" + path.strip("/")

    def handle_request(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        return self.io.engine.handle_request(environ, start_response)

    def close(self, timeout: float = 10.0) -> None:
        self.io.close(timeout)

"""The Engine.IO v4 server: request routing, handshakes, options and errors.

It is a WSGI callable for the requests under its ``path`` and is usable on its
own (like Node's engine.io) or under a Socket.IO server.
"""
from __future__ import annotations

import json
import logging
import socket as stdsocket
from typing import Any, Callable, Iterable

from gevent import get_hub
from gevent.event import Event
from geventwebsocket.websocket import WebSocket

from roomcast import _speedups
from roomcast.eio_packet import CLOSE, NOOP, PING
from roomcast.engine import http
from roomcast.engine.cors import CorsOptions
from roomcast.engine.memory import Trimmer
from roomcast.engine.sendbuffer import DEFAULT_MAX_SEND_BUFFER
from roomcast.engine.socket import EngineSocket
from roomcast.engine.tcp import detach, request_socket, set_nodelay, take_over
from roomcast.events import EventEmitter
from roomcast.worker_ids import tagged_id
from roomcast.ws_deflate import deflate_options, negotiate
from roomcast.ws_frames import close_frame

log = logging.getLogger("roomcast.engine")

TRANSPORTS = ("polling", "websocket")
# json.dumps(..., separators=...) makes a new encoder at each call
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))
# the open packet as _COMPACT_JSON writes it, for the common case (a sid that needs no
# escaping, an int maxPayload): formatting it is a fifth of the encoder's cost
_OPEN_PACKET = '{"sid":"%s","upgrades":%s,"pingInterval":%d,"pingTimeout":%d,"maxPayload":%d}'
# per-request I/O objects a session must not keep alive (the request's reader holds an
# 8 KiB buffer and its socket): a session's environ is a copy without them (and
# without wsgi.errors, which the session keeps beside it: see EngineSocket.environ)
_REQUEST_IO = ("wsgi.input", "wsgi.websocket", "gunicorn.socket", "gunicorn.sock",
               "roomcast.connection", "wsgi.errors", "roomcast.verified")


class _RetiredWebSocket(WebSocket):
    """gevent-websocket's WebSocket once the engine owns (or has closed) its connection.
    Its ``__del__`` would call ``close()`` again, which on a closed WebSocket builds a
    class and raises and catches two exceptions: a tenth of a connect's CPU."""

    __slots__ = ()

    def __del__(self) -> None:
        pass


def _retire(ws) -> None:
    """Mark an upgraded WebSocket closed: the engine sends its own close frame."""
    ws.closed = True
    if type(ws) is WebSocket:
        ws.__class__ = _RetiredWebSocket


def session_environ(environ: dict, owned: bool = False) -> dict:
    """A copy of the first request's environ, for the whole session, without its
    input and wsgi.errors (EngineSocket.environ puts an empty body and the stream
    in when it is first read). ``owned``: the caller gives this environ away, so it
    becomes the session's (those keys taken out) instead of a copy."""
    if owned:
        for key in _REQUEST_IO:
            environ.pop(key, None)
        return environ
    return {key: value for key, value in environ.items() if key not in _REQUEST_IO}


_sid_tag = ""


def set_sid_tag(tag: str) -> None:
    """Start every new sid of this process with ``tag`` (a worker process names itself
    in its sids so that requests reaching another worker can be handed to it)."""
    global _sid_tag
    _sid_tag = tag


def generate_id() -> str:
    """A 20-character url-safe random id, the shape of Node's base64id (with this
    worker's tag first when there are several workers)."""
    return tagged_id(_sid_tag)


class EngineServer(EventEmitter):
    """An Engine.IO v4 server (see ARCHITECTURE.md §5).

    Events (``on(event, handler)`` or ``@on(event)``): "connection" (EngineSocket),
    "connection_error" ({environ, code, message}), "initial_headers" and "headers"
    (headers dict, environ).
    """

    def __init__(self, *, path: str = "/engine.io", ping_interval: float = 25.0,
                 ping_timeout: float = 20.0, upgrade_timeout: float = 10.0,
                 max_http_buffer_size: int = 1_000_000,
                 transports: Iterable[str] = TRANSPORTS, allow_upgrades: bool = True,
                 cors: Any = None, allow_request: Callable[[dict], Any] | None = None,
                 cookie: bool | dict | None = None, http_compression: bool = True,
                 compression_threshold: int = 1024, initial_packet: str | bytes | None = None,
                 origin_check: Callable[[dict], "http.Refusal | None"] | None = None,
                 max_send_buffer: int | None = DEFAULT_MAX_SEND_BUFFER,
                 per_message_deflate: bool | dict = False) -> None:
        self.path = "/" + path.strip("/")
        self.ping_interval = float(ping_interval)
        self.ping_timeout = float(ping_timeout)
        self.upgrade_timeout = float(upgrade_timeout)
        self.max_http_buffer_size = int(max_http_buffer_size)
        # bytes queued for one connection, not yet taken by its socket (None: unbounded);
        # beyond it the connection is closed ("send buffer full"), see engine/sendbuffer.py
        self.max_send_buffer = None if max_send_buffer is None else int(max_send_buffer)
        self.transports = tuple(transports)
        unknown = set(self.transports) - set(TRANSPORTS)
        if unknown:
            raise ValueError(f"unknown transports: {sorted(unknown)}")
        self.allow_upgrades = allow_upgrades
        self.cors = CorsOptions.from_value(cors)
        # origin_check(environ) -> Refusal | None runs first on every request; by
        # default it refuses origins that cors does not name (see engine/cors.py)
        self.origin_check = origin_check if origin_check is not None else self._cors_origin_check
        self.allow_request = allow_request
        self.cookie = self._cookie_options(cookie)
        self.http_compression = http_compression
        self.compression_threshold = compression_threshold
        self.initial_packet = initial_packet
        # WebSocket permessage-deflate: None (off, Node's default) or {"threshold": bytes}
        self.per_message_deflate = deflate_options(per_message_deflate)
        self.clients: dict[str, EngineSocket] = {}
        self.table = _speedups.ConnTable()
        self.http_servers: list = []    # roomcast.wsgi.HTTPServer instances serving this
        self.closing = False
        self._all_closed = Event()
        self._trimmer = Trimmer()   # closed connections' heap pages go back to the OS
        # writes held back during a loop pass go out before the loop waits (coalescing)
        self.table.set_flush_hook(self._schedule_flush)
        EventEmitter.__init__(self)
        # control packets, encoded once
        self.ping_packet = _speedups.encode_eio(PING)
        self.noop_packet = _speedups.encode_eio(NOOP)
        self.close_packet = _speedups.encode_eio(CLOSE)

    @staticmethod
    def _cookie_options(cookie) -> dict | None:
        if not cookie:
            return None
        base = {"name": "io", "path": "/", "httponly": True, "samesite": "Lax"}
        if isinstance(cookie, dict):
            base.update({k.lower(): v for k, v in cookie.items()})
        return base

    def _schedule_flush(self) -> None:
        get_hub().loop.run_callback(self.table.flush)

    # ------------------------------------------------------------------ events
    def listener_failed(self, event: Any) -> None:
        raise   # a listener's error fails the request that emitted the event

    @property
    def clients_count(self) -> int:
        return len(self.clients)

    def _forget(self, conn: EngineSocket) -> None:
        if self.clients.get(conn.id) is conn:
            del self.clients[conn.id]
        self._trimmer.connection_closed()
        if self.closing and not self.clients:
            self._all_closed.set()

    def add_http_server(self, server: Any) -> None:
        """An HTTP server (with ``stop_listening()`` and ``close()``) that serves this
        engine: close() stops it accepting first and ends it last."""
        self.http_servers.append(server)

    def stop_accepting(self) -> None:
        """No new connections (the HTTP servers stop listening) nor sessions (503)."""
        self.closing = True
        for server in self.http_servers:
            server.stop_listening()

    def close(self, timeout: float = 10.0) -> None:
        """Close every session (Node's engine.close()) and stop serving, within ``timeout``.

        New connections and handshakes are refused at once; every session gets its
        close after what is queued for it (a WebSocket close frame, or the close
        packet on the next GET); sessions still open at the deadline (clients that
        do not read) are dropped.
        """
        self.stop_accepting()
        conns = list(self.clients.values())
        for conn in conns:
            conn.close("forced close")
        if self.clients:
            self._all_closed.wait(timeout)
        for conn in list(self.clients.values()):
            conn.abort("forced close")
        for server in self.http_servers:
            server.close()
        self._trimmer.close()

    # ------------------------------------------------------------------ WSGI
    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        return self.handle_request(environ, start_response)

    def _cors_origin_check(self, environ: dict) -> "http.Refusal | None":
        origin = environ.get("HTTP_ORIGIN")
        if not origin or self.cors is None or not self.cors.names_origins:
            return None
        try:
            allowed = self.cors.origin_allowed(origin)
        except Exception:   # a bug in the user's origin callable refuses, loudly
            log.exception("error in the cors origin callable")
            allowed = False
        if allowed:
            return None
        log.info("refused a request from origin %r (not in cors)", origin)
        return http.origin_refusal()

    def origin_refusal(self, environ: dict) -> "http.Refusal | None":
        """The refusal of a request whose origin is not allowed, or None (asked
        first on every request, and by roomcast's WebSocketHandler before upgrading)."""
        refusal = self.origin_check(environ)
        if refusal is not None:
            self._connection_error(environ, http.FORBIDDEN, http.ORIGIN_NOT_ALLOWED)
        return refusal

    def handle_request(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        ws = environ.get("wsgi.websocket")
        refusal = self.origin_refusal(environ)
        if refusal is not None:
            if ws is not None:
                # the stock gevent-websocket handler has already answered 101
                self._refuse_websocket(ws, http.FORBIDDEN, http.ORIGIN_NOT_ALLOWED)
                return []
            return http.respond(start_response, refusal.status, refusal.body, refusal.content_type)
        method = environ.get("REQUEST_METHOD", "GET")
        if not environ.get("roomcast.nodelay"):   # roomcast's WebSocketHandler did it at accept
            set_nodelay(request_socket(environ))
        cors_headers: list = []
        if self.cors is not None:
            cors_headers = self.cors.headers(environ, preflight=method == "OPTIONS")
            if method == "OPTIONS":
                return http.respond(start_response, "204 No Content", b"", None, cors_headers)
        query = http.query_of(environ)
        if query.get("sid") in self.clients:
            session = self.clients[query["sid"]]
            if ws is None and session.upgrading:
                session.settle_upgrade()   # judged after what its WebSocket already holds
            session.expire_if_overdue()    # judged after a ping timeout whose timer is late
        # a WebSocket that roomcast's handler let through was verified (allow_request
        # included) just before: Node asks allow_request once per request
        verified = environ.pop("roomcast.verified", False)
        code, message = self._verify(environ, method, query, ws is not None, ask_app=not verified)
        if code is not None:
            self._connection_error(environ, code, message)
            if ws is not None:
                # gevent-websocket has already answered 101: close this WebSocket only.
                self._refuse_websocket(ws, code, message)
                return []
            return http.error_response(start_response, code, message, cors_headers)
        sid = query.get("sid")
        if ws is not None:
            return self._handle_websocket(environ, ws, sid)
        if sid is None:
            return self._handshake_polling(environ, start_response, cors_headers)
        conn = self.clients[sid]
        if method == "GET":
            return self._poll(conn, environ, start_response, cors_headers)
        if method == "POST":
            return self._post(conn, environ, start_response, cors_headers)
        return http.respond(start_response, "400 Bad Request", b"", None, cors_headers)

    def _verify(self, environ: dict, method: str, query: dict, upgrade: bool,
                ask_app: bool = True) -> tuple[int | None, str | None]:
        """Node's verify(): the checks every Engine.IO request passes, in its order
        (``ask_app``: False when allow_request already said yes to this request)."""
        transport = query.get("transport")
        if transport not in self.transports:
            return http.UNKNOWN_TRANSPORT, None
        if upgrade and transport != "websocket":
            return http.BAD_REQUEST, None
        sid = query.get("sid")
        if sid is not None:
            conn = self.clients.get(sid)
            if conn is None:
                return http.UNKNOWN_SID, None
            if not upgrade and conn.transport != transport:
                return http.BAD_REQUEST, None   # transport mismatch
            return None, None
        if method != "GET":
            return http.BAD_HANDSHAKE_METHOD, None
        if self.closing:
            return http.SHUTTING_DOWN, None
        if transport == "websocket" and not upgrade:
            return http.BAD_REQUEST, None
        if query.get("EIO") != "4":
            return http.UNSUPPORTED_PROTOCOL_VERSION, None
        if self.allow_request is not None and ask_app:
            try:
                verdict = self.allow_request(environ)
            except Exception as exc:  # a refusal by exception carries its message
                return http.FORBIDDEN, str(exc) or None
            if verdict is not True and verdict is not None:
                return http.FORBIDDEN, verdict if isinstance(verdict, str) else None
        return None, None

    # ------------------------------------------------------------------ handshakes
    def _new_session(self, environ: dict, transport: str, owned: bool = False) -> EngineSocket:
        sid = generate_id()
        errors = environ.get("wsgi.errors")
        conn = EngineSocket(self, sid, session_environ(environ, owned), transport, errors)
        upgrades = (["websocket"] if transport == "polling" and self.allow_upgrades
                    and "websocket" in self.transports else [])
        ping_interval, ping_timeout = int(self.ping_interval * 1000), int(self.ping_timeout * 1000)
        max_payload = self.max_http_buffer_size
        if (type(max_payload) is int and sid.isascii() and sid.isprintable()
                and '"' not in sid and "\\" not in sid):
            open_packet = _OPEN_PACKET % (sid, '["websocket"]' if upgrades else "[]",
                                          ping_interval, ping_timeout, max_payload)
        else:
            open_packet = _COMPACT_JSON.encode({
                "sid": sid, "upgrades": upgrades, "pingInterval": ping_interval,
                "pingTimeout": ping_timeout, "maxPayload": max_payload,
            })
        self.clients[sid] = conn
        conn.open(open_packet)
        self.emit("connection", conn)
        return conn

    def _cookie_header(self, sid: str) -> list[tuple[str, str]]:
        c = self.cookie
        if c is None:
            return []
        parts = [f"{c['name']}={sid}", f"Path={c['path']}"]
        if c.get("httponly"):
            parts.append("HttpOnly")
        if c.get("samesite"):
            parts.append(f"SameSite={c['samesite']}")
        if c.get("secure"):
            parts.append("Secure")
        if c.get("maxage") is not None:
            parts.append(f"Max-Age={int(c['maxage'])}")
        return [("Set-Cookie", "; ".join(parts))]

    def _handshake_polling(self, environ, start_response, cors_headers):
        conn = self._new_session(environ, "polling")
        return self._poll(conn, environ, start_response,
                          cors_headers + self._cookie_header(conn.id), initial=True)

    def _session_headers(self, environ: dict, headers: list, initial: bool) -> list:
        """Node's "initial_headers" (handshake) and "headers" (every polling response)
        events: listeners get a dict of the response headers they may change."""
        if not (self._listeners.get("headers") or (initial and self._listeners.get("initial_headers"))):
            return headers
        editable = dict(headers)
        if initial:
            self.emit("initial_headers", editable, environ)
        self.emit("headers", editable, environ)
        return list(editable.items())

    def websocket_extensions(self, environ: dict) -> str | None:
        """The Sec-WebSocket-Extensions answer of an accepted WebSocket request (asked by
        roomcast's WebSocketHandler as it writes the 101), or None; what was agreed is
        kept in the environ for the connection."""
        if self.per_message_deflate is None:
            return None
        agreed = negotiate(environ.get("HTTP_SEC_WEBSOCKET_EXTENSIONS"))
        if agreed is None:
            return None
        environ["roomcast.deflate"] = agreed
        return agreed.response

    def _handle_websocket(self, environ: dict, ws, sid: str | None) -> Iterable[bytes]:
        handler = ws.handler
        sock, rfile = handler.socket, handler.rfile
        # agreed in the 101 by roomcast's WebSocketHandler (other handlers: no extension)
        deflate = environ.get("roomcast.deflate")
        try:
            if sid is None:
                conn = self._new_session(environ, "websocket")
            else:
                conn = self.clients[sid]
                if (not self.allow_upgrades or conn.transport != "polling" or conn.upgrading
                        or conn.ready_state != "open"):
                    # Node upgrades first, then closes this WebSocket; the session's
                    # own transport (or the upgrade in progress) is untouched.
                    self._drop_websocket(ws)
                    return []
            taken = take_over(sock, rfile)
            if taken is not None:
                # plain TCP: the event loop serves it from now on; this greenlet ends
                # (roomcast's server keeps counting the connection until it is closed)
                hold = environ.get("roomcast.connection")
                conn.start_websocket(taken[0], taken[1], probing=sid is not None,
                                     on_release=hold.keep() if hold is not None else None,
                                     deflate=deflate)
            else:
                conn.run_websocket(sock, rfile, probing=sid is not None, deflate=deflate)
        finally:
            _retire(ws)   # we send our own close frame; gevent-websocket must not add one
        return []

    def accept_websocket(self, environ: dict, sock: Any, early: bytes, head: bytes,
                         on_release: Callable[[], None] | None = None) -> EngineSocket:
        """A new session over a WebSocket whose request roomcast's handler read itself
        (roomcast.upgrade_request), after origin_refusal(), websocket_refusal() and
        websocket_extensions() had their say: ``sock`` is the gevent socket (plain TCP,
        taken over here), ``early`` what was read past the request, ``head`` the 101,
        which leaves in one send() with the open packet. The session keeps ``environ``."""
        deflate = environ.get("roomcast.deflate")
        conn = self._new_session(environ, "websocket", owned=True)
        conn.start_websocket(detach(sock), early, probing=False, on_release=on_release,
                             deflate=deflate, head=head)
        return conn

    def websocket_refusal(self, environ: dict) -> str | None:
        """Why this WebSocket request would be refused (Node's abortUpgrade), or None.

        A handler that asks before upgrading (roomcast.wsgi.WebSocketHandler)
        answers a plain 400 with this message, exactly as Node does; the refusal is a
        "connection_error", as in Node's handleUpgrade.
        """
        code, message = self._verify(environ, "GET", http.query_of(environ), upgrade=True)
        if code is None:
            environ["roomcast.verified"] = True   # handle_request does not ask allow_request again
            return None
        self._connection_error(environ, code, message)
        return message or http.ERROR_MESSAGES[code]

    def _connection_error(self, environ: dict, code: int, message: str | None) -> None:
        if self._listeners.get("connection_error"):
            self.emit("connection_error", {"environ": environ, "code": code,
                                           "message": message or http.ERROR_MESSAGES[code]})

    @staticmethod
    def _drop_websocket(ws) -> None:
        """Close an upgraded WebSocket that cannot join its session (Node's
        websocket.close(): a close frame without a status code)."""
        try:
            ws.handler.socket.sendall(close_frame(None))
            ws.handler.socket.shutdown(stdsocket.SHUT_RDWR)
        except OSError:
            pass
        _retire(ws)

    def _refuse_websocket(self, ws, code: int, message: str | None) -> None:
        reason = message or http.ERROR_MESSAGES[code]
        try:
            ws.handler.socket.sendall(close_frame(1008, reason[:120]))
        except OSError:
            pass
        _retire(ws)

    # ------------------------------------------------------------------ polling requests
    def _poll(self, conn: EngineSocket, environ, start_response, headers, initial=False):
        polled = conn.handle_poll()
        if polled is None:
            return http.respond(start_response, "400 Bad Request", b"", None, headers)
        body, compress = polled
        headers = self._session_headers(environ, list(headers), initial)
        if self.http_compression and compress:
            body, encoding = http.compress(body, environ.get("HTTP_ACCEPT_ENCODING", ""),
                                           self.compression_threshold)
            if encoding:
                headers.append(("Content-Encoding", encoding))
        return http.respond(start_response, "200 OK", body, "text/plain; charset=UTF-8", headers)

    def _post(self, conn: EngineSocket, environ, start_response, headers):
        limit = self.max_http_buffer_size
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            return http.error_response(start_response, http.BAD_REQUEST, None, headers)
        if length > limit:
            return http.respond(start_response, "413 Payload Too Large", b"", None, headers)
        stream = environ["wsgi.input"]
        body = stream.read(length) if length >= 0 else stream.read(limit + 1)
        if len(body) > limit:
            return http.respond(start_response, "413 Payload Too Large", b"", None, headers)
        if not conn.handle_post(body):
            return http.respond(start_response, "400 Bad Request", b"", None, headers)
        headers = self._session_headers(environ, list(headers), initial=False)
        return http.respond(start_response, "200 OK", b"ok", "text/html", headers)

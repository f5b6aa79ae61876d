"""Serving roomcast inside a WSGI app: the WSGIApp router and a one-call runner.

roomcast's own HTTP server (``io.run``, ``make_server``) holds the limits that keep
slow or idle clients from holding descriptors, with Node's http defaults:

- ``headers_timeout`` (60 s, Node's headersTimeout): the request line and headers
  must arrive within it (from the connection, or from the first byte of a request
  on a kept-alive connection); else ``408`` and the connection is closed.
- ``keep_alive_timeout`` (5 s, Node's keepAliveTimeout): an idle kept-alive
  connection is closed after it.
- ``request_timeout`` (300 s, Node's requestTimeout): a request body (a polling
  POST) must be read within it from the start of the request; else ``408``.
- ``max_connections`` (default: the process's open-file limit minus 64, kept for
  Redis, logs and files; Node has none): beyond it a new connection gets ``503``.

Any of them ``None`` turns it off. The timeouts are in ``WebSocketHandler``, so
they apply under any gevent pywsgi server that uses it; ``max_connections`` is
the server's (``HTTPServer``).
"""
from __future__ import annotations

import logging
import mimetypes
import os
import resource
import signal
import time
from http.client import LineTooLong
from typing import Any, Callable, Iterable

import gevent
import geventwebsocket.handler
from gevent import pywsgi

from roomcast import metrics
from roomcast import upgrade_request
from roomcast import workers as worker_processes
from roomcast.engine import http
from roomcast.engine.tcp import can_take_over, set_nodelay
from roomcast.request_headers import parse_headers

log = logging.getLogger("roomcast.http")

HEADERS_TIMEOUT = 60.0
KEEP_ALIVE_TIMEOUT = 5.0
REQUEST_TIMEOUT = 300.0
SHUTDOWN_TIMEOUT = 10.0
_RESERVED_FDS = 64


def default_max_connections() -> int | None:
    """The open-file limit minus a reserve; None when the limit is unlimited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    return max(1, soft - _RESERVED_FDS)


def _engine_of(server: Any):
    """A Socket.IO Server exposes its EngineServer as .engine; an EngineServer is its own."""
    return getattr(server, "engine", server)


class WSGIApp:
    """Serves the Socket.IO / Engine.IO paths and passes every other request on.

    ``io`` is a roomcast Server, an EngineServer, or a list of them (a bare
    Engine.IO server can sit on its own path beside the Socket.IO one).
    ``static_files`` maps URL paths to files or directories, e.g.
    ``{"/": "index.html", "/static": "public/"}``.
    """

    def __init__(self, io: Any, other_app: Callable | None = None,
                 static_files: dict[str, str] | None = None) -> None:
        servers = io if isinstance(io, (list, tuple)) else [io]
        self.engines = [_engine_of(s) for s in servers]
        self.other_app = other_app
        self.static_files = dict(static_files or {})

    def engine_at(self, path: str):
        """The engine serving this URL path, or None."""
        for engine in self.engines:
            if path == engine.path or path.startswith(engine.path + "/"):
                return engine
        return None

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/") or "/"
        engine = self.engine_at(path)
        if engine is not None:
            return engine.handle_request(environ, start_response)
        static = self._static_file(path)
        if static is not None:
            return self._serve_file(static, start_response)
        if self.other_app is not None:
            return self.other_app(environ, start_response)
        return http.respond(start_response, "404 Not Found", b"Not Found", "text/plain")

    # roomcast's WebSocketHandler answers a new session's WebSocket request on an engine's
    # path itself (roomcast.upgrade_request) when the app's __call__ says that it passes
    # those requests straight to the engine; an override of __call__ that does not say
    # so gets every request.
    __call__.engine_paths_first = True   # type: ignore[attr-defined]

    def websocket_refusal(self, environ: dict) -> str | None:
        """Asked by roomcast's WebSocketHandler before it upgrades a request."""
        engine = self.engine_at(environ.get("PATH_INFO", "/") or "/")
        return None if engine is None else engine.websocket_refusal(environ)

    def websocket_extensions(self, environ: dict) -> str | None:
        """Asked by roomcast's WebSocketHandler as it accepts a WebSocket request."""
        engine = self.engine_at(environ.get("PATH_INFO", "/") or "/")
        return None if engine is None else engine.websocket_extensions(environ)

    def origin_refusal(self, environ: dict) -> http.Refusal | None:
        """Asked by roomcast's WebSocketHandler before it upgrades a request."""
        engine = self.engine_at(environ.get("PATH_INFO", "/") or "/")
        return None if engine is None else engine.origin_refusal(environ)

    def _static_file(self, path: str) -> str | None:
        for prefix in sorted(self.static_files, key=len, reverse=True):
            target = self.static_files[prefix]
            if path == prefix and os.path.isfile(target):
                return target
            if os.path.isdir(target) and (path == prefix or path.startswith(prefix.rstrip("/") + "/")):
                rel = path[len(prefix.rstrip("/")):].lstrip("/") or "index.html"
                full = os.path.realpath(os.path.join(target, rel))
                root = os.path.realpath(target)
                if full.startswith(root + os.sep) and os.path.isfile(full):
                    return full
        return None

    @staticmethod
    def _serve_file(filename: str, start_response: Callable) -> Iterable[bytes]:
        with open(filename, "rb") as f:
            body = f.read()
        ctype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype == "application/javascript":
            ctype += "; charset=utf-8"
        return http.respond(start_response, "200 OK", body, ctype)


class _HeadersTimedOut(Exception):
    """The request line and headers did not arrive within headers_timeout."""


class _BodyTimedOut(pywsgi._InvalidClientInput):
    """The request body did not arrive within request_timeout."""


class _TimedInput(pywsgi.Input):
    """wsgi.input whose reads end at the request's deadline (request_timeout)."""

    __slots__ = ("deadline", "timed_out")

    def _timer(self) -> gevent.Timeout:
        return gevent.Timeout(max(0.0, self.deadline - time.monotonic()), _BodyTimedOut)

    def read(self, length=None):
        try:
            with self._timer():
                return pywsgi.Input.read(self, length)
        except _BodyTimedOut:
            self.timed_out = True
            raise

    def readline(self, size=None):
        try:
            with self._timer():
                return pywsgi.Input.readline(self, size)
        except _BodyTimedOut:
            self.timed_out = True
            raise


_REQUEST_TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
                             b"Content-Length: 0\r\n\r\n")


class WebSocketHandler(geventwebsocket.handler.WebSocketHandler):
    """gevent-websocket's handler with roomcast's HTTP limits (module docstring),
    and a refused Engine.IO WebSocket request gets Node's plain 400 (or 403 for
    an origin) before the upgrade instead of a 101 and a close frame.
    (The stock handler works too; it just cannot refuse before upgrading, nor agree
    to permessage-deflate.)
    It also sets TCP_NODELAY on every connection it accepts, as Node does.
    With several worker processes, a request for a session of another worker is
    handed to that worker before anything is answered (roomcast.handoff)."""

    def handle_one_response(self):
        owner = worker_processes.handoff_owner(self.environ)
        if owner is not None and self._hand_off(owner):
            return None
        return super().handle_one_response()

    def _hand_off(self, owner: int) -> bool:
        head = [self.requestline, *(f"{k}: {v}" for k, v in self.headers.items()), "", ""]
        sock = self.socket
        # what the reader has buffered beyond the headers (part of a POST body), without
        # waiting for more: the owner reads the rest from the socket itself
        timeout = sock.gettimeout()
        sock.settimeout(0.0)
        try:
            buffered = self.rfile.peek()
        except OSError:
            buffered = b""
        finally:
            sock.settimeout(timeout)
        if not worker_processes.hand_off(owner, sock, "\r\n".join(head).encode("latin-1") + buffered):
            return False
        # this worker must neither answer nor read from the connection any more
        self.close_connection = True
        self.socket = None
        return True

    #: answer a new Engine.IO session's WebSocket request without pywsgi when it can
    #: (roomcast.upgrade_request); False sends every request the pywsgi way
    upgrade_at_once = True

    def handle(self):
        set_nodelay(self.socket)
        if self.upgrade_at_once and self._upgrade_at_once():
            return None
        return super().handle()

    _refusal: tuple[str, str, bytes] | None = None

    def _upgrade_at_once(self) -> bool:
        """True when the connection's first request was a new session's WebSocket and
        was answered here (or the connection ended before a request came); False when
        the request goes the pywsgi way (what was read stays in the reader for it)."""
        app = self.server.application   # pywsgi sets self.application per request
        if (not getattr(type(app).__call__, "engine_paths_first", False)
                or not can_take_over(self.socket)):
            return False
        self.time_start = time.time()
        self._start_headers_timer()
        try:
            data = self.rfile.peek()   # waits for the first segment; reads nothing more
        except _HeadersTimedOut:
            self._headers_timed_out()
            return True
        except OSError:
            self._stop_headers_timer()
            return True
        except BaseException:
            self._stop_headers_timer()
            raise
        if not data:
            self._stop_headers_timer()
            return True   # closed before a request: nothing to answer
        request = upgrade_request.parse(data)
        engine = None if request is None else app.engine_at(request.path)
        if engine is None:
            return False   # read the pywsgi way, within what is left of headers_timeout
        env = self._environ_of(request)
        if http.query_of(env).get("sid") is not None:
            return False   # an upgrade of a polling session (maybe another worker's)
        refusal = engine.origin_refusal(env)
        if refusal is not None:
            self._refusal = (refusal.status, refusal.content_type, refusal.body)
            return False   # answered the pywsgi way, without asking again
        message = engine.websocket_refusal(env)
        if message is not None:
            self._refusal = ("400 Bad Request", "text/html", message.encode("utf-8"))
            return False
        head = upgrade_request.switching_protocols(env["HTTP_SEC_WEBSOCKET_KEY"],
                                                   engine.websocket_extensions(env))
        self._stop_headers_timer()
        self.rfile.read(len(data))   # the buffered bytes: request and early frames
        hold = getattr(self, "connection_hold", None)
        engine.accept_websocket(env, self.socket, data[request.length:], head,
                                hold.keep() if hold is not None else None)
        self.socket = None   # the engine's now; the server closes only its detached shell
        self.requestline = request.requestline
        self.status = self._orig_status = "101 Switching Protocols"
        self.response_length = 0
        self.time_finish = time.time()
        self.log_request()
        return True

    def _environ_of(self, request: upgrade_request.UpgradeRequest) -> dict:
        """The environ pywsgi and gevent-websocket would give this request."""
        env = self.server.get_environ()
        env["REQUEST_METHOD"] = "GET"
        env["SCRIPT_NAME"] = ""
        env["PATH_INFO"] = request.path
        env["QUERY_STRING"] = request.query
        env["SERVER_PROTOCOL"] = "HTTP/1.1"
        address = self.client_address
        if isinstance(address, tuple):
            env["REMOTE_ADDR"] = str(address[0])
            env["REMOTE_PORT"] = str(address[1])
        env.update(request.headers)
        env["wsgi.input"] = self.rfile
        env["wsgi.input_terminated"] = False
        env["roomcast.nodelay"] = True
        hold = getattr(self, "connection_hold", None)
        if hold is not None:
            env["roomcast.connection"] = hold
        env["wsgi.websocket_version"] = request.headers["HTTP_SEC_WEBSOCKET_VERSION"]
        self.environ = env
        return env

    def _headers(self):
        """The request's headers as environ items, as pywsgi's _headers() gives them,
        from the stored names and values rather than from lines formatted again and
        split again (names with '_' are dropped; two are not HTTP_ items)."""
        for name, value in self.headers.raw_items():
            if "_" in name:
                continue
            key = name.replace("-", "_").upper()
            if key != "CONTENT_TYPE" and key != "CONTENT_LENGTH":
                yield "HTTP_" + key, value.strip()

    def MessageClass(self, fp, *args):   # noqa: N802 (pywsgi's name)
        """The request's headers, as pywsgi reads them, without the email package's parser
        for plain header blocks (roomcast.request_headers)."""
        try:
            return parse_headers(fp, pywsgi.OldMessage)
        except LineTooLong:   # as pywsgi's headers_factory answers it
            message = pywsgi.OldMessage()
            message.status = "Line too long"
            return message

    _requests_read = 0
    _headers_timer: gevent.Timeout | None = None

    def _limit(self, name: str, default: float | None) -> float | None:
        return getattr(self.server, name, default)

    def read_requestline(self):
        if self._requests_read:
            # a kept-alive connection: wait for the next request at most keep_alive_timeout
            idle = self._limit("keep_alive_timeout", KEEP_ALIVE_TIMEOUT)
            if idle is not None:
                with gevent.Timeout(idle, False):
                    self.rfile.peek(1)
                    idle = None
                if idle is not None:
                    return ""   # idle too long: close quietly, as Node does
        self._requests_read += 1
        if self._headers_timer is None:   # else _upgrade_at_once started it at the connection
            self._start_headers_timer()
        try:
            return super().read_requestline()
        except _HeadersTimedOut:
            self._headers_timed_out()
            return ""
        except BaseException:
            self._stop_headers_timer()
            raise

    def read_request(self, raw_requestline):
        try:
            return super().read_request(raw_requestline)
        finally:
            self._stop_headers_timer()

    def _start_headers_timer(self) -> None:
        """The request starts now; its line and headers must arrive within headers_timeout."""
        self._request_start = time.monotonic()
        headers_timeout = self._limit("headers_timeout", HEADERS_TIMEOUT)
        if headers_timeout is not None:
            self._headers_timer = gevent.Timeout(headers_timeout, _HeadersTimedOut)
            self._headers_timer.start()

    def _stop_headers_timer(self) -> None:
        if self._headers_timer is not None:
            self._headers_timer.close()
            self._headers_timer = None

    def _headers_timed_out(self) -> None:
        self._stop_headers_timer()
        if metrics.active is not None:
            metrics.active.timeout("http")
        log.info("closed a connection from %s: headers not received in time", self.client_address)
        try:
            self.socket.sendall(_REQUEST_TIMEOUT_RESPONSE)
        except OSError:
            pass

    def _handle_client_error(self, ex):
        if isinstance(ex, (_HeadersTimedOut, _BodyTimedOut)) and metrics.active is not None:
            metrics.active.timeout("http")
        if isinstance(ex, _HeadersTimedOut):
            self._stop_headers_timer()
            log.info("closed a connection from %s: headers not received in time",
                     self.client_address)
            return ("408", _REQUEST_TIMEOUT_RESPONSE)
        if isinstance(ex, _BodyTimedOut):
            log.info("closed a connection from %s: body not received in time", self.client_address)
            return ("408", _REQUEST_TIMEOUT_RESPONSE)
        return super()._handle_client_error(ex)

    def _send_error_response_if_possible(self, error_code):
        if getattr(self.wsgi_input, "timed_out", False) and not self.response_length:
            self.close_connection = True
            try:
                self.socket.sendall(_REQUEST_TIMEOUT_RESPONSE)
            except OSError:
                pass
            return
        super()._send_error_response_if_possible(error_code)

    def get_environ(self):
        env = super().get_environ()
        env["roomcast.nodelay"] = True
        hold = getattr(self, "connection_hold", None)
        if hold is not None:
            env["roomcast.connection"] = hold
        request_timeout = self._limit("request_timeout", REQUEST_TIMEOUT)
        if request_timeout is not None and env["wsgi.input"] is self.wsgi_input:
            timed = _TimedInput(self.rfile, self.content_length,
                                socket=self.wsgi_input.socket,
                                chunked_input=self.wsgi_input.chunked_input)
            timed.deadline = self._request_start + request_timeout
            timed.timed_out = False
            self.wsgi_input = env["wsgi.input"] = timed
        return env

    def run_application(self):
        if self._refusal is not None:   # decided by _upgrade_at_once (asked once only)
            refusal, self._refusal = self._refusal, None
            return self._refuse(*refusal)
        if self.environ.get("HTTP_UPGRADE", "").lower() == "websocket":
            ask_origin = getattr(self.application, "origin_refusal", None)
            refusal = ask_origin(self.environ) if ask_origin is not None else None
            if refusal is not None:
                return self._refuse(refusal.status, refusal.content_type, refusal.body)
            ask = getattr(self.application, "websocket_refusal", None)
            message = ask(self.environ) if ask is not None else None
            if message is not None:
                return self._refuse("400 Bad Request", "text/html", message.encode("utf-8"))
        return super().run_application()

    def _refuse(self, status: str, content_type: str, body: bytes) -> None:
        self.close_connection = True
        self.start_response(status, [
            ("Connection", "close"), ("Content-Type", content_type),
            ("Content-Length", str(len(body)))])
        self.result = [body]
        self.process_result()

    def start_response(self, status, headers, exc_info=None):
        # pywsgi closes the connection of a request that said "Connection: close"
        # without saying so in the response; HTTP/1.1 clients that pool connections
        # (Node >= 19 with node-fetch) would then send their next request on it.
        if (self.close_connection and self.request_version == "HTTP/1.1"
                and not status.startswith("101")
                and not any(name.lower() == "connection" for name, _ in headers)):
            headers = [*headers, ("Connection", "close")]
        # the 101 of an accepted WebSocket carries the extensions the engine agreed to
        if status.startswith("101"):
            ask = getattr(self.application, "websocket_extensions", None)
            extensions = ask(self.environ) if ask is not None else None
            if extensions:
                headers = [*headers, ("Sec-WebSocket-Extensions", extensions)]
        return super().start_response(status, headers, exc_info)


_SERVICE_UNAVAILABLE = (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
                        b"Content-Type: text/plain\r\nContent-Length: 19\r\n\r\n"
                        b"Service Unavailable")


class ConnectionHold:
    """One accepted connection counted in ``HTTPServer.connections``. A WebSocket that
    the engine takes over (its request greenlet ends) keeps it counted until the
    engine closes the socket: ``environ["roomcast.connection"].keep()`` returns the
    release to call then (the hold itself, which releases when called: a kept
    connection keeps no bound method for it)."""

    __slots__ = ("server", "kept", "released")

    def __init__(self, server: "HTTPServer") -> None:
        self.server = server
        self.kept = False
        self.released = False

    def keep(self) -> Callable[[], None]:
        self.kept = True
        return self

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.server.connections -= 1

    __call__ = release


class HTTPServer(pywsgi.WSGIServer):
    """gevent's pywsgi server with roomcast's handler and limits (module docstring)."""

    handler_class = WebSocketHandler

    def __init__(self, listener: Any, application: Callable, *,
                 headers_timeout: float | None = HEADERS_TIMEOUT,
                 keep_alive_timeout: float | None = KEEP_ALIVE_TIMEOUT,
                 request_timeout: float | None = REQUEST_TIMEOUT,
                 max_connections: int | None | str = "default", **kwargs: Any) -> None:
        super().__init__(listener, application, **kwargs)
        self.headers_timeout = headers_timeout
        self.keep_alive_timeout = keep_alive_timeout
        self.request_timeout = request_timeout
        self.max_connections = (default_max_connections() if max_connections == "default"
                                else max_connections)
        self.connections = 0

    def handle(self, sock, address):
        limit = self.max_connections
        if limit is not None and self.connections >= limit:
            self._refuse_overflow(sock, address)
            return
        self.connections += 1
        hold = ConnectionHold(self)
        handler = self.handler_class(sock, address, self)
        handler.connection_hold = hold
        try:
            handler.handle()
        finally:
            if not hold.kept:
                hold.release()

    @staticmethod
    def _refuse_overflow(sock, address) -> None:
        """503 to a connection beyond max_connections, after reading its request
        (briefly), so that the answer is not lost to a reset."""
        log.warning("refused a connection from %s: max_connections reached", address)
        try:
            with gevent.Timeout(1.0, False):
                sock.recv(65536)
            sock.sendall(_SERVICE_UNAVAILABLE)
            sock.shutdown(2)
        except OSError:
            pass
        finally:
            sock.close()

    def stop_listening(self) -> None:
        """Stop accepting and close the listening socket; connections stay served."""
        self.stop_accepting()
        listener = getattr(self, "socket", None)
        if listener is not None:
            listener.close()


def as_wsgi(target: Any, app: Callable | None = None) -> Callable:
    """A WSGI callable for a roomcast Server / EngineServer (with ``app`` for the other
    paths), or ``target`` itself when it already is a WSGI app (a WSGIApp, Flask...)."""
    if isinstance(target, WSGIApp) or (app is None and not hasattr(target, "handle_request")
                                        and callable(target)):
        return target
    if isinstance(app, WSGIApp):
        return app
    return WSGIApp(target, app)


def make_server(io: Any, host: str = "127.0.0.1", port: int = 5000, app: Callable | None = None,
                log: Any = None, listener: Any = None, **kwargs: Any) -> HTTPServer:
    """roomcast's HTTP server (gevent pywsgi, WebSocket handler, limits) serving io (and app).

    ``kwargs``: ``headers_timeout``, ``keep_alive_timeout``, ``request_timeout``,
    ``max_connections`` (module docstring) and gevent's WSGIServer options (TLS:
    ``certfile``/``keyfile``, ``spawn``...). ``io.close()`` stops it accepting.
    ``io`` may also be a WSGI app holding roomcast Servers; ``listener``: an already
    bound and listening socket instead of host:port.
    """
    from roomcast.server import live_servers

    wsgi_app = as_wsgi(io, app)
    server = HTTPServer(listener if listener is not None else (host, port), wsgi_app, log=log,
                        **kwargs)
    # a WSGIApp names its engines; another WSGI app (Flask...) holds this process' Servers
    engines = (wsgi_app.engines if isinstance(wsgi_app, WSGIApp)
               else [server.engine for server in live_servers()])
    for engine in engines:
        engine.add_http_server(server)
    return server


def run(io: Any, host: str = "127.0.0.1", port: int = 5000, app: Callable | None = None,
        shutdown_timeout: float = SHUTDOWN_TIMEOUT, workers: int = 1,
        metrics_port: int | None = None, **kwargs: Any) -> None:
    """Serve until ``io.close()`` or SIGTERM (the common case: ``io.run(host, port)``).

    SIGTERM closes gracefully: no new connections, every client gets a close (it
    reconnects elsewhere), what is queued is flushed, within ``shutdown_timeout``.
    ``workers`` > 1: that many processes on the one port (roomcast.workers).
    ``metrics_port``: Prometheus metrics on that port (roomcast.metrics; every worker's sum).
    """
    if workers > 1:
        worker_processes.serve(lambda: as_wsgi(io, app), host, port, workers=workers,
                               graceful_timeout=shutdown_timeout, metrics_port=metrics_port,
                               **kwargs)
        return
    if metrics_port is not None:
        metrics.serve(metrics_port, host)
    server = make_server(io, host, port, app, **kwargs)
    server.start()

    def on_sigterm() -> None:
        log.info("SIGTERM: shutting down")
        gevent.spawn(io.close, shutdown_timeout)

    handler = gevent.signal_handler(signal.SIGTERM, on_sigterm)
    try:
        server.serve_forever()
    finally:
        handler.cancel()

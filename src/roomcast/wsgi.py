"""Serving roomcast inside a WSGI app: the WSGIApp router and a one-call runner."""
from __future__ import annotations

import mimetypes
import os
from typing import Any, Callable, Iterable

import geventwebsocket.handler
from gevent import pywsgi

from roomcast.engine import http
from roomcast.engine.tcp import set_nodelay


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

    def _engine_for(self, path: str):
        for engine in self.engines:
            if path == engine.path or path.startswith(engine.path + "/"):
                return engine
        return None

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/") or "/"
        engine = self._engine_for(path)
        if engine is not None:
            return engine.handle_request(environ, start_response)
        static = self._static_file(path)
        if static is not None:
            return self._serve_file(static, start_response)
        if self.other_app is not None:
            return self.other_app(environ, start_response)
        return http.respond(start_response, "404 Not Found", b"Not Found", "text/plain")

    def websocket_refusal(self, environ: dict) -> str | None:
        """Asked by roomcast's WebSocketHandler before it upgrades a request."""
        engine = self._engine_for(environ.get("PATH_INFO", "/") or "/")
        return None if engine is None else engine.websocket_refusal(environ)

    def origin_refusal(self, environ: dict) -> http.Refusal | None:
        """Asked by roomcast's WebSocketHandler before it upgrades a request."""
        engine = self._engine_for(environ.get("PATH_INFO", "/") or "/")
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


class WebSocketHandler(geventwebsocket.handler.WebSocketHandler):
    """gevent-websocket's handler, but a bad Engine.IO WebSocket request gets
    Node's plain 400 before the upgrade instead of a 101 and a close frame.
    (The stock handler works too; it just cannot refuse before upgrading.)
    It also sets TCP_NODELAY on every connection it accepts, as Node does."""

    def handle(self):
        set_nodelay(self.socket)
        return super().handle()

    def get_environ(self):
        environ = super().get_environ()
        environ["roomcast.nodelay"] = True
        return environ

    def run_application(self):
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


def make_server(io: Any, host: str = "127.0.0.1", port: int = 5000, app: Callable | None = None,
                log: Any = None, **kwargs: Any):
    """A gevent pywsgi server with roomcast's WebSocket handler, serving io (and app)."""
    wsgi_app = app if isinstance(app, WSGIApp) else WSGIApp(io, app)
    return pywsgi.WSGIServer((host, port), wsgi_app, handler_class=WebSocketHandler,
                             log=log, **kwargs)


def run(io: Any, host: str = "127.0.0.1", port: int = 5000, app: Callable | None = None,
        **kwargs: Any) -> None:
    """Serve forever (the common case: ``io.run(host, port)``)."""
    make_server(io, host, port, app, **kwargs).serve_forever()

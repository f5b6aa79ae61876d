"""``socketio.WSGIApp`` / ``socketio.Middleware`` on top of roomcast.WSGIApp.

Routing (the Socket.IO path, then static files, then the other WSGI app) is
roomcast's; only ``static_files`` follows python-engineio's rules, so that an
app's existing mapping keeps working:

- a key is a URL path; its value a file name, or ``{"filename", "content_type"}``;
- a request under a key (``/static/css/a.css`` under ``/static``) appends the
  rest of the path to the key's file name (a directory);
- a file name ending in ``/`` gets ``static_files[""]`` (else ``index.html``);
- the content type comes from a short extension table, else octet-stream.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Iterable

from roomcast.engine import http
from roomcast.wsgi import WSGIApp as _NativeWSGIApp

_CONTENT_TYPES = {
    "css": "text/css", "gif": "image/gif", "html": "text/html", "jpg": "image/jpeg",
    "js": "application/javascript", "json": "application/json", "png": "image/png",
    "txt": "text/plain",
}


def _as_entry(value: Any) -> dict:
    return {"filename": value} if isinstance(value, str) else dict(value)


def resolve_static(path: str, static_files: dict) -> dict | None:
    """{"filename", "content_type"} for a request path, or None (python-engineio's rules)."""
    entry, rest = static_files.get(path), ""
    if entry is None:
        prefix = path
        while prefix:
            prefix, last = prefix.rsplit("/", 1)
            rest = "/" + last + rest
            for key in (prefix, prefix + "/"):
                if key in static_files:
                    entry = static_files[key]
                    break
            if entry is not None:
                break
    if entry is None or "../" in rest:
        return None
    found = _as_entry(entry)
    filename = found["filename"]
    if filename.endswith("/") and rest.startswith("/"):
        rest = rest[1:]
    filename += rest
    if filename.endswith("/"):
        default = static_files.get("")
        if default is None:
            filename += "index.html"
        else:
            default = _as_entry(default)
            filename += default["filename"]
            if "content_type" in default:
                found["content_type"] = default["content_type"]
    found["filename"] = filename
    if "content_type" not in found:
        found["content_type"] = _CONTENT_TYPES.get(filename.rsplit(".")[-1],
                                                   "application/octet-stream")
    return found


class WSGIApp(_NativeWSGIApp):
    """Serves a compat Server at ``/socketio_path/``; static files; the rest to wsgi_app."""

    def __init__(self, socketio_app: Any, wsgi_app: Callable | None = None,
                 static_files: dict | None = None, socketio_path: str = "socket.io") -> None:
        socketio_app._bridge.set_path(socketio_path)
        super().__init__(socketio_app._bridge.io, wsgi_app)
        self.psio_static_files = dict(static_files or {})

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/") or "/"
        if self.psio_static_files and self.engine_at(path) is None:
            found = resolve_static(path, self.psio_static_files)
            if found is not None and os.path.isfile(found["filename"]):
                with open(found["filename"], "rb") as f:
                    body = f.read()
                return http.respond(start_response, "200 OK", body, found["content_type"])
        return super().__call__(environ, start_response)

    __call__.engine_paths_first = True   # type: ignore[attr-defined]  (roomcast.wsgi.WSGIApp)


class Middleware(WSGIApp):
    """The old name of WSGIApp (deprecated in python-socketio, kept for old apps)."""

    def __init__(self, socketio_app: Any, wsgi_app: Callable | None = None,
                 socketio_path: str = "socket.io") -> None:
        super().__init__(socketio_app, wsgi_app, socketio_path=socketio_path)

"""``socketio.WSGIApp`` / ``socketio.Middleware`` on top of roomcast.WSGIApp."""
from __future__ import annotations

from typing import Any, Callable

from roomcast.wsgi import WSGIApp as _NativeWSGIApp


class WSGIApp(_NativeWSGIApp):
    """Serves the Socket.IO path of a compat Server and passes the rest to wsgi_app.

    ``static_files`` maps URL paths to files or directories, as roomcast.WSGIApp.
    """

    def __init__(self, socketio_app: Any, wsgi_app: Callable | None = None,
                 static_files: dict | None = None, socketio_path: str = "socket.io") -> None:
        socketio_app._bridge.set_path(socketio_path)
        super().__init__(socketio_app._bridge.io, wsgi_app, static_files=static_files)


class Middleware(WSGIApp):
    """The old name of WSGIApp (deprecated in python-socketio, kept for old apps)."""

    def __init__(self, socketio_app: Any, wsgi_app: Callable | None = None,
                 socketio_path: str = "socket.io") -> None:
        super().__init__(socketio_app, wsgi_app, socketio_path=socketio_path)

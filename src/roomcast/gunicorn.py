"""``gunicorn -k roomcast.gunicorn.Worker -w N module:app``: roomcast under gunicorn.

A gevent worker (gunicorn's GeventPyWSGIWorker) with roomcast's WebSocket handler,
that joins its sibling workers as roomcast.workers does: sids name their worker,
a request for another worker's session is handed to it (no sticky sessions), and
Servers with the default adapter get the inter-process adapter. On a graceful stop
the worker stops accepting, then closes its roomcast sessions so that they do not
hold it until gunicorn's graceful timeout.
"""
from __future__ import annotations

import os
import tempfile
from typing import Any

import gevent
from gunicorn.workers.ggevent import GeventPyWSGIWorker, PyWSGIHandler, PyWSGIServer

from roomcast import workers
from roomcast.wsgi import WebSocketHandler


def rundir_of(master_pid: int) -> str:
    """The directory the workers of one gunicorn master share (private to the user)."""
    path = os.path.join(tempfile.gettempdir(), f"roomcast-gunicorn-{os.getuid()}-{master_pid}")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


class Handler(WebSocketHandler, PyWSGIHandler):
    """roomcast's WebSocket handler with gunicorn's access log and environ."""


class Server(PyWSGIServer):
    """Tells the worker about itself, and drains roomcast's sessions when it stops accepting."""

    worker: "Worker | None" = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if Server.worker is not None:
            Server.worker.server_started(self)

    def close(self) -> None:
        super().close()
        from roomcast.server import live_servers

        for io in live_servers():
            gevent.spawn(io.close)
        context = workers.current()
        workers.stop_worker()
        if context is not None:
            try:
                os.rmdir(context.rundir)   # the last worker out removes the directory
            except OSError:
                pass


class Worker(GeventPyWSGIWorker):
    server_class = Server
    wsgi_handler = Handler

    def init_process(self) -> None:
        Server.worker = self
        super().init_process()

    def server_started(self, server: Server) -> None:
        if workers.current() is None:
            workers.start_worker(rundir_of(self.ppid), server)

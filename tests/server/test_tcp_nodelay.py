"""TCP_NODELAY on every socket that carries a session (Nagle would hold small writes ~40 ms)."""
import os
import socket as stdsocket

import geventwebsocket.handler
import pytest
from gevent.pywsgi import WSGIServer

import roomcast
from roomcast.wsgi import WebSocketHandler


def _recording(base: type, fds: list) -> type:
    class Recording(base):
        def handle(self):
            fds.append(self.socket.fileno())   # the engine may take a WebSocket's fd over
            return super().handle()
    return Recording


def _nodelay(fd: int) -> int | None:
    """TCP_NODELAY of an open fd (through a duplicate), None when it is closed by now."""
    try:
        dup = os.dup(fd)
    except OSError:
        return None
    with stdsocket.socket(fileno=dup) as sock:
        try:
            return sock.getsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_NODELAY)
        except OSError:
            return None


@pytest.mark.parametrize("handler", [WebSocketHandler, geventwebsocket.handler.WebSocketHandler],
                         ids=["roomcast-handler", "gevent-websocket-handler"])
@pytest.mark.parametrize("transport", ["polling", "websocket"])
def test_accepted_sockets_have_nodelay(run_js, handler, transport):
    fds: list = []
    io = roomcast.Server()

    def nodelay_of_open_sockets(ack):
        ack([flag for flag in map(_nodelay, fds) if flag is not None])

    io.on("connection", lambda s: s.on("check", nodelay_of_open_sockets))
    server = WSGIServer(("127.0.0.1", 0), roomcast.WSGIApp(io), log=None,
                        handler_class=_recording(handler, fds))
    server.start()
    try:
        flags = run_js(f"""
            const s = io(URL, {{transports: ["{transport}"]}});
            done(await s.emitWithAck("check"));
        """, f"http://127.0.0.1:{server.server_port}")
    finally:
        io.close()
        server.stop(timeout=1)
    assert flags and all(flags), flags

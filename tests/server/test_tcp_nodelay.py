"""TCP_NODELAY on every socket that carries a session (Nagle would hold small writes ~40 ms)."""
import socket as stdsocket

import geventwebsocket.handler
import pytest
from gevent.pywsgi import WSGIServer

import roomcast
from roomcast.wsgi import WebSocketHandler


def _recording(base: type, sockets: list) -> type:
    class Recording(base):
        def handle(self):
            sockets.append(self.socket)
            return super().handle()
    return Recording


@pytest.mark.parametrize("handler", [WebSocketHandler, geventwebsocket.handler.WebSocketHandler],
                         ids=["roomcast-handler", "gevent-websocket-handler"])
@pytest.mark.parametrize("transport", ["polling", "websocket"])
def test_accepted_sockets_have_nodelay(run_js, handler, transport):
    sockets: list = []
    io = roomcast.Server()

    def nodelay_of_open_sockets(ack):
        flags = [s.getsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_NODELAY)
                 for s in sockets if s.fileno() != -1]
        ack(flags)

    io.on("connection", lambda s: s.on("check", nodelay_of_open_sockets))
    server = WSGIServer(("127.0.0.1", 0), roomcast.WSGIApp(io), log=None,
                        handler_class=_recording(handler, sockets))
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

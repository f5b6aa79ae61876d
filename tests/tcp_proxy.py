"""TcpProxy: a TCP relay in front of one or more servers, to cut connections the way a
network does (tests of connection state recovery).

    proxy = TcpProxy("127.0.0.1", port)      # proxy.url: http://127.0.0.1:<its port>
    proxy.cut()                              # every relayed connection: both sides shut down
    proxy.target = ("127.0.0.1", other)      # later connections go to another server

``cut()`` shuts both TCP connections down (the server sees its side closed, the client
its own); connections made afterwards are relayed again, to ``target``.
"""
from __future__ import annotations

import socket as stdsocket

import gevent
from gevent import socket as gsocket
from gevent.server import StreamServer


class TcpProxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self._pairs: list[tuple[gsocket.socket, gsocket.socket]] = []
        self._server = StreamServer(("127.0.0.1", 0), self._relay)
        self._server.start()
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    def _relay(self, client: gsocket.socket, address) -> None:
        try:
            upstream = gsocket.create_connection(self.target)
        except OSError:
            client.close()
            return
        pair = (client, upstream)
        self._pairs.append(pair)
        pumps = [gevent.spawn(self._pump, client, upstream), gevent.spawn(self._pump, upstream, client)]
        gevent.joinall(pumps, count=1)
        self._close(pair)
        gevent.joinall(pumps, timeout=1)

    @staticmethod
    def _pump(src: gsocket.socket, dst: gsocket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    return
                dst.sendall(data)
        except OSError:
            return

    def _close(self, pair: tuple) -> None:
        if pair in self._pairs:
            self._pairs.remove(pair)
        for sock in pair:
            try:
                sock.shutdown(stdsocket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def cut(self) -> int:
        """Close every relayed connection abruptly; how many there were."""
        pairs = list(self._pairs)
        for pair in pairs:
            self._close(pair)
        return len(pairs)

    def close(self) -> None:
        self.cut()
        self._server.stop(timeout=1)

"""Client: one Engine.IO connection seen from Socket.IO (Node's socket.io Client).

It decodes the connection's packets, routes them to its Socket in each joined
namespace, handles CONNECT, and closes the connection for protocol violations
(Node's client.ts): a decoding error ("parse error"), a packet for a namespace
it has not joined or a second CONNECT ("forced server close"), and no
namespace joined within ``connect_timeout``.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import gevent

from roomcast.sio_packet import CONNECT, CONNECT_ERROR, ParseError

if TYPE_CHECKING:
    from roomcast.engine import EngineSocket
    from roomcast.server import Server
    from roomcast.socket import Socket

log = logging.getLogger("roomcast")


class Client:
    def __init__(self, server: "Server", conn: "EngineSocket") -> None:
        self.server = server
        self.conn = conn
        self.id = conn.id
        self.decoder = server.new_decoder()
        self.sockets: dict[str, "Socket"] = {}   # by socket id
        self.nsps: dict[str, "Socket"] = {}      # by namespace name
        self._connecting: set[str] | tuple = ()  # CONNECTs still in middlewares (a set once used)
        self._closed = False
        self._failed = False   # a protocol violation: the close is on its way, input is ignored
        conn.on("message", self._on_data)
        conn.on("close", self._on_close)
        self._connect_timer = gevent.get_hub().loop.timer(server.connect_timeout)
        self._connect_timer.start(self._on_connect_timeout)   # None once a namespace joined

    # -- incoming ---------------------------------------------------------------
    # Called where the data was read: for WebSocket that is an event-loop callback, so
    # these only decode and route; user code and closing go to the server's dispatcher.

    def _on_data(self, data: str | bytes) -> None:
        if self._closed or self._failed:
            return
        try:
            if isinstance(data, str):
                packet = self.decoder.feed_text(data)
            else:
                packet = self.decoder.feed_binary(data)
        except ParseError as exc:
            log.debug("client %s: parse error: %s", self.id, exc)
            self._failed = True
            self.server._spawn(self._on_parse_error, exc)
            return
        if packet is not None:
            self._on_decoded(packet)

    def _on_parse_error(self, exc: ParseError) -> None:
        for socket in list(self.sockets.values()):
            socket._on_error(exc)
        self._force_close("parse error")

    def _on_decoded(self, packet) -> None:
        nsp = packet.nsp
        socket = self.nsps.get(nsp)
        if packet.type == CONNECT:
            if socket is None and nsp not in self._connecting:
                if not self._connecting:
                    self._connecting = set()
                self._connecting.add(nsp)
                auth = packet.data if isinstance(packet.data, dict) else {}
                self.server._spawn(self._connect, nsp, auth)
                return
        elif socket is not None and packet.type != CONNECT_ERROR:
            socket._on_packet(packet)
            return
        log.debug("client %s: invalid state (packet type %s for %r)", self.id, packet.type, nsp)
        self._failed = True
        self.server._spawn(self._force_close, "forced server close")

    def _connect(self, name: str, auth: dict) -> None:
        try:
            nsp = self.server._nsps.get(name) or self.server._check_namespace(name, auth)
        except BaseException:
            self._not_connecting(name)
            raise
        if nsp is None:
            self._not_connecting(name)
            self._send(self.server.encode_packet(CONNECT_ERROR, name,
                                                 {"message": "Invalid namespace"}))
            return
        if self._closed:
            self._not_connecting(name)
            return

        def on_done(socket: "Socket | None") -> None:
            self._not_connecting(name)
            if socket is not None:
                self.sockets[socket.id] = socket
                self.nsps[nsp.name] = socket
                self._drop_connect_timer()

        nsp._add(self, auth, on_done)

    def _not_connecting(self, name: str) -> None:
        self._connecting.discard(name)
        if not self._connecting:
            self._connecting = ()   # a connected client keeps no empty set

    def _drop_connect_timer(self) -> None:
        # closed rather than stopped: the connection does not keep it (nor this bound method)
        timer, self._connect_timer = self._connect_timer, None
        if timer is not None:
            timer.stop()
            timer.close()

    def _on_connect_timeout(self) -> None:
        # runs in the hub: only schedule the close
        if not self.nsps and not self._closed:
            log.debug("client %s joined no namespace in time", self.id)
            gevent.spawn(self._force_close, "forced server close")

    # -- outgoing ---------------------------------------------------------------

    def _send(self, encoded: Any, volatile: bool = False) -> None:
        if not self._closed:
            self.conn.push(encoded, volatile)

    # -- closing ----------------------------------------------------------------

    def _remove(self, socket: "Socket") -> None:
        if self.sockets.get(socket.id) is socket:
            del self.sockets[socket.id]
            if self.nsps.get(socket.nsp.name) is socket:
                del self.nsps[socket.nsp.name]

    def _disconnect_all(self) -> None:
        """socket.disconnect(close=True): every namespace, then the connection."""
        for socket in list(self.sockets.values()):
            socket.disconnect()
        self._force_close("forced server close")

    def _force_close(self, reason: str) -> None:
        """Close from the server side: the sockets see ``reason``."""
        if self._closed:
            return
        self._on_close(reason)
        self.conn.close(reason if reason == "parse error" else "forced close")

    def _on_close(self, reason: str, description: Any = None) -> None:
        if self._closed:
            return
        self._closed = True
        # The disconnect handlers below may yield while the socket is still in its rooms;
        # meanwhile the fd may be closed and reused, so no broadcast may write to it directly.
        table = self.server.engine.table
        try:
            if table.conn(self.conn.slot) is self.conn:
                table.set_fd(self.conn.slot, -1)
        except KeyError:
            pass   # the engine already freed the slot
        self._drop_connect_timer()
        for socket in list(self.sockets.values()):
            socket._on_close(reason, description)
        self.sockets.clear()
        self.nsps.clear()
        self.decoder = None

    def __repr__(self) -> str:
        return f"<Client {self.id} namespaces={list(self.nsps)}>"

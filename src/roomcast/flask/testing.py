"""``socketio.test_client(app)``: Flask-SocketIO's test client, on roomcast.

The client is an in-process Engine.IO connection: it takes a slot in the
server's connection table like a polling client, so the server's ordinary
paths (handshake, middlewares, rooms, the encode-once fan-out, acks) run
unchanged. What the server sends is decoded with roomcast's own Socket.IO
decoder and kept for ``get_received()``. As in Flask-SocketIO, creating a test
client makes the server run event handlers synchronously (``async_handlers``
off), so a handler has finished when ``emit()`` returns; and a server on a
message queue is refused.
"""
from __future__ import annotations

import uuid
from types import MappingProxyType
from typing import Any, Callable, Mapping

from flask.testing import EnvironBuilder

from roomcast import _speedups
from roomcast.client import Client
from roomcast.events import EventEmitter
from roomcast.sio_packet import (ACK, BINARY_ACK, BINARY_EVENT, CONNECT, CONNECT_ERROR,
                                 DISCONNECT, EVENT, Decoder)


class _LoopbackConnection(EventEmitter):
    """The Engine.IO connection of a test client (what roomcast.Client talks to)."""

    transport = "polling"
    protocol = 4

    def __init__(self, server: Any, environ: dict, receive: Callable[[Any], None]) -> None:
        self.id = uuid.uuid4().hex
        self.environ = environ
        self.remote_address = environ.get("REMOTE_ADDR")
        self.ready_state = "open"
        self.upgraded = False
        EventEmitter.__init__(self)
        self._receive = receive
        self._table = server.engine.table
        self.slot = self._table.add(self)
        self._decoder = Decoder()

    def listener_failed(self, event: Any) -> None:
        raise   # the server's error reaches the test that sent the packet

    def request_environ(self) -> Mapping[str, Any]:
        return MappingProxyType(self.environ)

    # server -> client
    def push(self, packet: Any, volatile: bool = False) -> None:
        if self.ready_state != "open" or packet.text is None or not packet.text.startswith("4"):
            return   # only Socket.IO messages matter to the test client
        decoded = self._decoder.feed_text(packet.text[1:])
        for attachment in packet.attachments:
            decoded = self._decoder.feed_binary(attachment)
        if decoded is not None:
            self._receive(decoded)

    def push_raw(self, data: bytes) -> None:   # never used: a loopback has no socket fd
        raise RuntimeError("a test client connection has no WebSocket")

    def send(self, data: Any, volatile: bool = False) -> None:
        if isinstance(data, str):
            self.push(_speedups.encode_eio(4, data))

    # client -> server
    def deliver(self, ptype: int, nsp: str, data: Any = None, pid: int | None = None) -> None:
        encoded = _speedups.encode_packet(ptype, nsp, data, pid)
        self.emit("message", encoded.text[1:])
        for attachment in encoded.attachments:
            self.emit("message", attachment)

    def close(self, reason: str = "forced close") -> None:
        if self.ready_state == "closed":
            return
        self.ready_state = "closed"
        try:
            self._table.remove(self.slot)
        except KeyError:
            pass
        self.emit("close", reason, None)


class SocketIOTestClient:
    """Flask-SocketIO's ``SocketIOTestClient(app, socketio, namespace=None,
    query_string=None, headers=None, auth=None, flask_test_client=None)``.

    ``flask_test_client`` (a ``app.test_client()``) lends its cookies, so that
    the Flask session of HTTP routes is seen by the Socket.IO handlers.
    """

    def __init__(self, app: Any, socketio: Any, namespace: str | None = None,
                 query_string: str | None = None, headers: dict | None = None,
                 auth: Any = None, flask_test_client: Any = None) -> None:
        self.app = app
        self.socketio = socketio
        self.flask_test_client = flask_test_client
        self.connected: dict[str, bool] = {}
        self.queue: list[dict] = []
        self.acks: dict | None = None
        self.callback_counter = 0
        self._conn: _LoopbackConnection | None = None
        server = socketio.server
        if server.manager.uses_queue:
            raise RuntimeError("Test client cannot be used with a message queue. Disable "
                               "the queue on your test configuration.")
        # handlers run to completion inside emit(), as Flask-SocketIO's test client does
        server.async_handlers = False
        server.native.async_handlers = False
        self.connect(namespace=namespace, query_string=query_string, headers=headers, auth=auth)

    @property
    def eio_sid(self) -> str | None:
        return None if self._conn is None else self._conn.id

    def _environ(self, query_string: str | None, headers: dict | None) -> dict:
        url = "/socket.io"
        if query_string:
            url += query_string if query_string.startswith("?") else "?" + query_string
        if self.flask_test_client is not None:
            request = self.flask_test_client._request_from_builder_args(
                args=(), kwargs={"path": url, "headers": headers})
            environ = request.environ
            self.flask_test_client._add_cookies_to_wsgi(environ)
        else:
            environ = EnvironBuilder(self.app, path=url, headers=headers).get_environ()
        environ["flask.app"] = self.app
        return environ

    def _received(self, packet: Any) -> None:
        namespace = packet.nsp or "/"
        if packet.type in (EVENT, BINARY_EVENT):
            name, *args = packet.data
            # message/json carry one value, not a list (Flask-SocketIO's shape)
            self.queue.append({"name": name,
                               "args": args[0] if name in ("message", "json") else args,
                               "namespace": namespace})
        elif packet.type in (ACK, BINARY_ACK):
            self.acks = {"args": packet.data, "namespace": namespace}
        elif packet.type == CONNECT:
            self.connected[namespace] = True
        elif packet.type in (DISCONNECT, CONNECT_ERROR):
            self.connected[namespace] = False

    def is_connected(self, namespace: str | None = None) -> bool:
        return self.connected.get(namespace or "/", False)

    def connect(self, namespace: str | None = None, query_string: str | None = None,
                headers: dict | None = None, auth: Any = None) -> None:
        """Connect to a namespace (the constructor connects to the first one)."""
        namespace = namespace or "/"
        native = self.socketio.server.native
        if self._conn is None or self._conn.ready_state == "closed":
            self._conn = _LoopbackConnection(native, self._environ(query_string, headers),
                                             self._received)
            Client(native, self._conn)
        self._conn.deliver(CONNECT, namespace, auth)

    def disconnect(self, namespace: str | None = None) -> None:
        if not self.is_connected(namespace):
            raise RuntimeError("not connected")
        self._conn.deliver(DISCONNECT, namespace or "/")
        del self.connected[namespace or "/"]

    def emit(self, event: str, *args: Any, **kwargs: Any) -> Any:
        """Emit to the server; with ``callback=True`` returns what the handler acked."""
        namespace = kwargs.pop("namespace", None)
        if not self.is_connected(namespace):
            raise RuntimeError("not connected")
        pid = None
        if kwargs.pop("callback", False):
            self.callback_counter += 1
            pid = self.callback_counter
        self._conn.deliver(EVENT, namespace or "/", [event, *args], pid)
        if self.acks is not None:
            ack, self.acks = self.acks, None
            return ack["args"][0] if len(ack["args"]) == 1 else ack["args"]
        return None

    def send(self, data: Any, json: bool = False, callback: bool = False,
             namespace: str | None = None) -> Any:
        return self.emit("json" if json else "message", data, callback=callback,
                         namespace=namespace)

    def get_received(self, namespace: str | None = None) -> list[dict]:
        """The events received in namespace since the last call (and forgets them)."""
        if not self.is_connected(namespace):
            raise RuntimeError("not connected")
        namespace = namespace or "/"
        mine = [p for p in self.queue if p["namespace"] == namespace]
        self.queue = [p for p in self.queue if p["namespace"] != namespace]
        return mine

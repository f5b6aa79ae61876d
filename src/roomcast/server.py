"""Server: the Socket.IO-native API (ARCHITECTURE.md §8), on an EngineServer."""
from __future__ import annotations

import logging
import re
import weakref
from typing import Any, Callable, Iterable, overload

from gevent import get_hub, getcurrent

from roomcast import _speedups
from roomcast.adapter import InMemoryAdapter
from roomcast.dispatch import Dispatcher, run_logged
from roomcast.engine import EngineServer, EngineSocket
from roomcast.engine.sendbuffer import DEFAULT_MAX_SEND_BUFFER
from roomcast.events import Handler
from roomcast.namespace import Namespace, ParentNamespace
from roomcast.operators import BroadcastOperator
from roomcast.recovery import SessionAwareAdapter, normalize_options
from roomcast.sio_packet import Decoder, MsgpackDecoder

log = logging.getLogger("roomcast")

_live: "weakref.WeakSet[Server]" = weakref.WeakSet()


def live_servers() -> list["Server"]:
    """The Servers of this process (a worker process gives them the inter-process adapter)."""
    return list(_live)


#: parser="default": socket.io-parser (JSON text + binary attachments);
#: parser="msgpack": socket.io-msgpack-parser 3.x (one msgpack binary message a packet)
PARSERS = ("default", "msgpack")


class Server:
    """A Socket.IO v5 server. Serve it with ``io.run()`` or ``roomcast.WSGIApp(io)``."""

    def __init__(self, *, path: str = "/socket.io", connect_timeout: float = 45.0,
                 adapter: Callable[[Namespace], Any] = InMemoryAdapter,
                 ping_interval: float = 25.0, ping_timeout: float = 20.0,
                 upgrade_timeout: float = 10.0, max_http_buffer_size: int = 1_000_000,
                 transports: Iterable[str] = ("polling", "websocket"),
                 allow_upgrades: bool = True, cors: Any = None,
                 allow_request: Callable[[dict], Any] | None = None,
                 cookie: bool | dict | None = None, http_compression: bool = True,
                 compression_threshold: int = 1024, max_attachments: int = 10,
                 cleanup_empty_child_namespaces: bool = False,
                 async_handlers: bool = True,
                 max_send_buffer: int | None = DEFAULT_MAX_SEND_BUFFER,
                 connection_state_recovery: bool | dict | None = None,
                 parser: str = "default", per_message_deflate: bool | dict = False) -> None:
        if parser not in PARSERS:
            raise ValueError(f"parser must be one of {PARSERS}, not {parser!r}")
        if parser == "msgpack":
            try:
                import msgpack  # noqa: F401
            except ImportError:
                raise ImportError('parser="msgpack" needs the msgpack package: '
                                  'pip install "roomcast[msgpack]"') from None
        self.parser = parser
        # None, or the recovery options with their defaults (roomcast.recovery.DEFAULTS)
        self.connection_state_recovery = normalize_options(connection_state_recovery)
        if self.connection_state_recovery is not None and adapter is InMemoryAdapter:
            adapter = SessionAwareAdapter   # as Node: the default adapter keeps sessions
        self.connect_timeout = float(connect_timeout)
        self.max_attachments = max_attachments
        self.cleanup_empty_child_namespaces = cleanup_empty_child_namespaces
        self.async_handlers = async_handlers
        # user code runs in the dispatcher's workers, never in the event loop's reads;
        # async_handlers=False: one socket's handlers one at a time (python-socketio's option)
        self._dispatcher = Dispatcher(serial=not async_handlers)
        self._adapter_class = adapter
        self.engine = EngineServer(
            path=path, ping_interval=ping_interval, ping_timeout=ping_timeout,
            upgrade_timeout=upgrade_timeout, max_http_buffer_size=max_http_buffer_size,
            transports=transports, allow_upgrades=allow_upgrades, cors=cors,
            allow_request=allow_request, cookie=cookie, http_compression=http_compression,
            compression_threshold=compression_threshold, max_send_buffer=max_send_buffer,
            per_message_deflate=per_message_deflate)
        self.engine.on("connection", self._on_connection)
        self._nsps: dict[str, Namespace] = {}
        self._parent_nsps: list[ParentNamespace] = []
        self.sockets: Namespace = self.of("/")
        _live.add(self)

    @property
    def path(self) -> str:
        return self.engine.path

    @property
    def adapter_class(self) -> Callable[[Namespace], Any]:
        """The ``adapter`` callable each namespace's adapter is made with."""
        return self._adapter_class

    def set_adapter(self, adapter: Callable[[Namespace], Any]) -> None:
        """Use ``adapter`` for every namespace, the existing ones included (Node's
        ``io.adapter(...)``); only before any client connected. Listeners added to the
        old adapters are not carried over."""
        nsps = list(self._nsps.values()) + list(self._parent_nsps)
        if any(nsp.sockets for nsp in nsps):
            raise RuntimeError("set_adapter() after clients connected")
        self._adapter_class = adapter
        for nsp in nsps:
            nsp.reset_adapter()

    def encode_packet(self, type: int, nsp: str, data: Any = None, id: int | None = None) -> Any:
        """One Socket.IO packet in this server's parser, encoded once for every recipient
        (an EncodedPacket: JSON text + attachments, or one msgpack binary message)."""
        if self.parser == "msgpack":
            return _speedups.encode_msgpack(type, nsp, data, id)
        return _speedups.encode_packet(type, nsp, data, id)

    def new_decoder(self) -> Decoder | MsgpackDecoder:
        """The packet decoder of one new connection, for this server's parser."""
        if self.parser == "msgpack":
            return MsgpackDecoder()
        return Decoder(max_attachments=self.max_attachments)

    def _on_connection(self, conn: EngineSocket) -> None:
        from roomcast.client import Client

        Client(self, conn)

    def _spawn(self, fn: Callable, *args: Any, key: Any = None) -> None:
        """Run user code off the event loop, after what came before it (roomcast.dispatch).
        async_handlers=False: in the calling greenlet when that is not the event loop
        (a polling request, a test client), else never beside another item of ``key``."""
        if not self.async_handlers and getcurrent() is not get_hub():
            run_logged(fn, *args)
        else:
            self._dispatcher.submit(key, fn, *args)

    # -- namespaces -------------------------------------------------------------

    def of(self, name: Any, handler: Callable | None = None) -> Namespace:
        """The namespace ``name`` (created on first use); a regex or a function
        ``fn(name, auth) -> bool`` gives a ParentNamespace of dynamic namespaces."""
        if isinstance(name, re.Pattern) or callable(name):
            nsp: Namespace = ParentNamespace(self, name)
            self._parent_nsps.append(nsp)
        else:
            name = str(name)
            if not name.startswith("/"):
                name = "/" + name
            nsp = self._nsps.get(name)
            if nsp is None:
                for parent in self._parent_nsps:
                    if isinstance(parent.matcher, re.Pattern) and parent.matches(name, None):
                        nsp = parent._create_child(name)
                        break
                else:
                    nsp = Namespace(self, name)
                    self._nsps[name] = nsp
                    if name != "/":
                        self.sockets.emit_reserved("new_namespace", nsp)
        if handler is not None:
            nsp.on("connection", handler)
        return nsp

    @property
    def namespaces(self) -> list[Namespace]:
        """Every namespace that exists now (dynamic children included, parents not)."""
        return list(self._nsps.values())

    def _check_namespace(self, name: str, auth: Any) -> Namespace | None:
        """The dynamic namespace that accepts ``name`` (a new child), or None."""
        for parent in list(self._parent_nsps):
            if parent.matches(name, auth):
                existing = self._nsps.get(name)   # the matcher may have blocked meanwhile
                return existing if existing is not None else parent._create_child(name)
        return None

    # -- the main namespace's API -------------------------------------------------

    @overload
    def on(self, event: str, handler: None = None) -> Callable[[Handler], Handler]: ...
    @overload
    def on(self, event: str, handler: Handler) -> Handler: ...

    def on(self, event: str, handler: Callable | None = None) -> Any:
        """Listen on the main namespace: "connection", "new_namespace", server-side events."""
        return self.sockets.on(event, handler)

    def off(self, event: str, handler: Callable | None = None) -> None:
        self.sockets.off(event, handler)

    def use(self, fn: Callable) -> "Server":
        self.sockets.use(fn)
        return self

    def emit(self, event: Any, *args: Any, callback: Callable | None = None) -> bool:
        return self.sockets.emit(event, *args, callback=callback)

    def send(self, *args: Any, callback: Callable | None = None) -> bool:
        return self.sockets.send(*args, callback=callback)

    def emit_with_ack(self, event: Any, *args: Any) -> list:
        return self.sockets.emit_with_ack(event, *args)

    def to(self, room: Any) -> BroadcastOperator:
        return self.sockets.to(room)

    in_ = to

    def intersect(self, *rooms: Any) -> BroadcastOperator:
        """The sockets in every one of ``rooms`` (see BroadcastOperator.intersect)."""
        return self.sockets.intersect(*rooms)

    def except_(self, room: Any) -> BroadcastOperator:
        return self.sockets.except_(room)

    @property
    def volatile(self) -> BroadcastOperator:
        return self.sockets.volatile

    @property
    def local(self) -> BroadcastOperator:
        return self.sockets.local

    def compress(self, flag: bool = True) -> BroadcastOperator:
        return self.sockets.compress(flag)

    def timeout(self, seconds: float) -> BroadcastOperator:
        return self.sockets.timeout(seconds)

    def fetch_sockets(self) -> list:
        return self.sockets.fetch_sockets()

    def sockets_join(self, rooms: Any) -> None:
        self.sockets.sockets_join(rooms)

    def sockets_leave(self, rooms: Any) -> None:
        self.sockets.sockets_leave(rooms)

    def disconnect_sockets(self, close: bool = False) -> None:
        self.sockets.disconnect_sockets(close)

    def server_side_emit(self, event: str, *args: Any, callback: Callable | None = None) -> bool:
        return self.sockets.server_side_emit(event, *args, callback=callback)

    def server_side_emit_with_ack(self, event: str, *args: Any) -> list:
        return self.sockets.server_side_emit_with_ack(event, *args)

    def instrument(self, auth: Any = None, mode: str = "development", read_only: bool = False,
                   namespace: str = "/admin", server_id: str | None = None,
                   server_stats_interval: float = 2.0) -> Any:
        """Serve the Socket.IO Admin UI's namespace (roomcast.admin); nothing is
        instrumented until this is called."""
        from roomcast.admin import Instrumentation

        return Instrumentation(self, auth=auth, mode=mode, read_only=read_only,
                               namespace=namespace, server_id=server_id,
                               server_stats_interval=server_stats_interval)

    # -- serving ----------------------------------------------------------------

    def handle_request(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        """WSGI entry for requests under ``path`` (WSGIApp routes them here)."""
        return self.engine.handle_request(environ, start_response)

    def run(self, host: str = "127.0.0.1", port: int = 5000, app: Callable | None = None,
            workers: int = 1, metrics_port: int | None = None, **kwargs: Any) -> None:
        """Serve forever with gevent.pywsgi and the WebSocket handler; ``workers`` > 1:
        that many processes on the one port (roomcast.workers); ``metrics_port``: a
        Prometheus endpoint there (roomcast.metrics, off by default)."""
        from roomcast.wsgi import run

        run(self, host, port, app, workers=workers, metrics_port=metrics_port, **kwargs)

    def close(self, timeout: float = 10.0) -> None:
        """Shut down gracefully within ``timeout`` seconds: stop accepting (io.run's
        HTTP server stops listening, new handshakes get 503), disconnect every socket
        ("server shutting down"), close the adapters (a cluster adapter leaves the
        cluster), then close every connection after flushing what is queued for it, so
        that clients reconnect elsewhere. Connections that take no bytes are dropped at
        the deadline."""
        self.engine.stop_accepting()
        for nsp in list(self._nsps.values()) + list(self._parent_nsps):
            for socket in list(nsp.sockets.values()):
                socket._on_close("server shutting down")
            nsp.adapter.close()
        self.engine.close(timeout)

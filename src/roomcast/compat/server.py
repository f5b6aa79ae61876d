"""``socketio.Server`` (python-socketio 5.x, sync/gevent) translated onto roomcast.Server.

Nothing here speaks the protocol: python-socketio's calls are mapped onto the
native namespaces, sockets and broadcast operators.

Mapping in short:
- a namespace is accepted when python-socketio would accept it; accepted names
  get a native namespace (created when a handler or ``namespaces=[...]``
  names it; ``namespaces='*'`` adds a parent namespace that matches any name);
- the ``connect`` handler runs as the native connect middleware (or right
  after the connection with ``always_connect=True``), so refusing it gives the
  native CONNECT_ERROR ``{"message", "data"}`` with python-socketio's payload;
- every incoming event goes through one dispatcher that resolves handlers in
  python-socketio's order (exact, catch-all event, catch-all namespace,
  class-based namespace) and turns the return value into the ack;
- ``emit`` becomes a broadcast operator (``to``/``except_``), a direct socket
  emit for one sid, or per-socket emits when a callback is given (one ack per
  client, as python-socketio does).
"""
from __future__ import annotations

import json as _stdjson
import logging
from typing import Any, Callable, Iterable

import gevent
import gevent.event

from roomcast.dispatch import describe

from . import exceptions
from ._calls import call_flexibly
from .namespace import Namespace
from ._native import NativeBridge

default_logger = logging.getLogger("roomcast.compat")


class Reason:
    """python-engineio's disconnect reasons (``sio.reason``)."""
    SERVER_DISCONNECT = "server disconnect"
    CLIENT_DISCONNECT = "client disconnect"
    PING_TIMEOUT = "ping timeout"
    TRANSPORT_CLOSE = "transport close"
    TRANSPORT_ERROR = "transport error"


class Manager:
    """The in-memory client manager (python-socketio's ``Manager``).

    It offers the read-only queries apps use on ``sio.manager``. The message-queue
    managers (managers.py) extend it to share clients between servers.
    """

    uses_queue = False

    def __init__(self) -> None:
        self.server: Server | None = None

    def set_server(self, server: "Server") -> None:
        self.server = server

    def initialize(self) -> None:
        pass

    def close(self) -> None:
        pass

    def get_namespaces(self) -> list[str]:
        assert self.server is not None
        return [name for name, clients in self.server._clients.items() if clients]

    def get_participants(self, namespace: str, room: Any):
        """Yield (sid, eio_sid) of the local clients in room (None: everyone)."""
        assert self.server is not None
        for socket in self.server._bridge.sockets_in(namespace, room):
            yield socket.id, socket.conn.id

    def get_rooms(self, sid: str, namespace: str) -> list:
        assert self.server is not None
        return self.server.rooms(sid, namespace)

    def is_connected(self, sid: str, namespace: str) -> bool:
        assert self.server is not None
        client = self.server._clients.get(namespace, {}).get(sid)
        return client is not None and client.state == "connected"


def _check_manager(client_manager: Any) -> Manager:
    if client_manager is None:
        return Manager()
    if isinstance(client_manager, Manager):
        return client_manager
    cls = type(client_manager)
    # python-socketio's own managers: the equivalent roomcast one, same settings
    if cls.__module__ == "socketio.manager" and cls.__name__ == "Manager":
        return Manager()
    if cls.__module__ == "socketio.redis_manager" and cls.__name__ == "RedisManager":
        from .managers_redis import RedisManager
        return RedisManager(client_manager.redis_url, channel=client_manager.channel,
                            write_only=client_manager.write_only,
                            redis_options=client_manager.redis_options)
    if cls.__module__ == "socketio.kombu_manager" and cls.__name__ == "KombuManager":
        from .managers_kombu import KombuManager
        return KombuManager(client_manager.url, channel=client_manager.channel,
                            write_only=client_manager.write_only,
                            connection_options=client_manager.connection_options,
                            exchange_options=client_manager.exchange_options,
                            queue_options=client_manager.queue_options,
                            producer_options=client_manager.producer_options)
    raise ValueError(
        f"roomcast.compat supports the in-memory, Redis and Kombu client managers, not "
        f"{cls.__module__}.{cls.__name__}")


class _Client:
    """One python-socketio client (sid) in one namespace."""
    __slots__ = ("socket", "session", "state", "refused")

    def __init__(self, socket: Any) -> None:
        self.socket = socket
        self.session: dict = {}
        self.state = "pending"        # -> "connected" -> "disconnecting"
        self.refused = False          # always_connect refusal: no disconnect handler


def _as_args(data: Any) -> list:
    # python-socketio: a tuple is several arguments, None is none
    if isinstance(data, tuple):
        return list(data)
    if data is None:
        return []
    return [data]


def _is_room_list(room: Any) -> bool:
    return hasattr(room, "__len__") and not isinstance(room, (str, bytes))


def event_decorator(on: Callable[..., Any], args: tuple, kwargs: dict) -> Callable:
    """``@x.event`` / ``@x.event(namespace=...)`` (python-socketio's and Flask-SocketIO's)
    for an ``x.on(event, ...)`` that returns a decorator: the function's name is the event."""
    if len(args) == 1 and not kwargs and callable(args[0]):
        return on(args[0].__name__)(args[0])

    def set_handler(handler: Callable) -> Callable:
        return on(handler.__name__, *args, **kwargs)(handler)
    return set_handler


class _SessionContext:
    def __init__(self, server: "Server", sid: str, namespace: str | None) -> None:
        self.server, self.sid, self.namespace = server, sid, namespace
        self.session: dict | None = None

    def __enter__(self) -> dict:
        self.session = self.server.get_session(self.sid, namespace=self.namespace)
        return self.session

    def __exit__(self, *exc: Any) -> None:
        self.server.save_session(self.sid, self.session, namespace=self.namespace)


_ENGINE_OPTIONS = {
    "ping_interval", "ping_timeout", "max_http_buffer_size", "allow_upgrades",
    "http_compression", "compression_threshold", "cookie", "cors_allowed_origins",
    "cors_credentials", "transports", "monitor_clients", "engineio_logger",
    "async_mode",
    "connection_state_recovery",   # a roomcast extension (python-socketio has none)
}


class Server:
    """A python-socketio compatible Socket.IO server (``socketio.Server``)."""

    reason = Reason
    reserved_events = ["connect", "disconnect"]

    def __init__(self, client_manager: Any = None, logger: bool | logging.Logger = False,
                 serializer: Any = "default", json: Any = None, async_handlers: bool = True,
                 always_connect: bool = False, namespaces: Any = None, **kwargs: Any) -> None:
        if not isinstance(logger, bool):
            self.logger = logger
        else:
            self.logger = default_logger
            if self.logger.level == logging.NOTSET:
                self.logger.setLevel(logging.INFO if logger else logging.ERROR)
                self.logger.addHandler(logging.StreamHandler())
        async_mode = kwargs.get("async_mode")
        if async_mode not in (None, "gevent"):
            raise ValueError(f"roomcast.compat runs on gevent only; async_mode="
                             f"{async_mode!r} is not supported")
        if serializer not in ("default", "msgpack"):
            raise ValueError('roomcast.compat supports the serializers "default" (JSON) and '
                             '"msgpack" (socket.io-msgpack-parser), not custom Packet classes')
        self.serializer = serializer
        unknown = set(kwargs) - _ENGINE_OPTIONS
        if unknown:
            # python-engineio ignores unknown options; say so instead of failing
            self.logger.warning("roomcast.compat: ignoring unknown options %s",
                                ", ".join(sorted(unknown)))
        self.async_mode = "gevent"
        self.async_handlers = async_handlers
        self.always_connect = always_connect
        self.namespaces = namespaces or ["/"]
        self.handlers: dict[str, dict[str, Callable]] = {}
        self.namespace_handlers: dict[str, Any] = {}
        self.not_handled = object()
        self._json = None if json is None or json is _stdjson else json
        self.manager = _check_manager(client_manager)
        self.manager.set_server(self)
        # namespace name -> sid -> _Client (pending ones included, as python-socketio
        # lets a connect handler use its sid before the connection is accepted)
        self._clients: dict[str, dict[str, _Client]] = {}
        # the pending subset: not in the native room index yet, so broadcasts
        # reach them here (python-socketio counts them in their rooms already)
        self._pending: dict[str, dict[str, _Client]] = {}
        self._bridge = NativeBridge(self, kwargs)
        self.manager.initialize()

    # -- registration --------------------------------------------------------

    def on(self, event: str, handler: Callable | None = None,
           namespace: str | None = None) -> Callable | None:
        """Register handler for event (as a decorator when handler is omitted)."""
        namespace = namespace or "/"

        def set_handler(handler: Callable) -> Callable:
            self.handlers.setdefault(namespace, {})[event] = handler
            self._bridge.namespace_added(namespace)
            return handler

        if handler is None:
            return set_handler
        set_handler(handler)
        return None

    def event(self, *args: Any, **kwargs: Any) -> Callable:
        """``@sio.event`` / ``@sio.event(namespace=...)``: the function name is the event."""
        return event_decorator(self.on, args, kwargs)

    def register_namespace(self, namespace_handler: Any) -> None:
        """Register a class-based namespace (ours or a python-socketio one)."""
        if not (hasattr(namespace_handler, "trigger_event")
                and hasattr(namespace_handler, "_set_server")
                and hasattr(namespace_handler, "namespace")):
            raise ValueError("Not a namespace instance")
        is_async = getattr(namespace_handler, "is_asyncio_based", lambda: False)()
        if is_async:
            raise ValueError("Not a valid namespace class for this server")
        namespace_handler._set_server(self)
        self.namespace_handlers[namespace_handler.namespace] = namespace_handler
        self._bridge.namespace_added(namespace_handler.namespace)

    def _accepts(self, namespace: str) -> bool:
        return (namespace in self.handlers or namespace in self.namespace_handlers
                or self.namespaces == "*" or namespace in self.namespaces)

    # -- handler resolution (python-socketio's order) ------------------------

    def _get_event_handler(self, event: str, namespace: str, args: tuple):
        handler = None
        if namespace in self.handlers:
            if event in self.handlers[namespace]:
                handler = self.handlers[namespace][event]
            elif event not in self.reserved_events and "*" in self.handlers[namespace]:
                handler = self.handlers[namespace]["*"]
                args = (event, *args)
        if handler is None and "*" in self.handlers:
            if event in self.handlers["*"]:
                handler = self.handlers["*"][event]
                args = (namespace, *args)
            elif event not in self.reserved_events and "*" in self.handlers["*"]:
                handler = self.handlers["*"]["*"]
                args = (event, namespace, *args)
        return handler, args

    def _get_namespace_handler(self, namespace: str, args: tuple):
        if namespace in self.namespace_handlers:
            return self.namespace_handlers[namespace], args
        if "*" in self.namespace_handlers:
            return self.namespace_handlers["*"], (namespace, *args)
        return None, args

    def _trigger_event(self, event: str, namespace: str, *args: Any) -> Any:
        """Run the application's handler for event; self.not_handled if none."""
        handler, hargs = self._get_event_handler(event, namespace, args)
        if handler is not None:
            if event in self.reserved_events and hargs:
                # legacy connect(sid, environ) / disconnect(sid) forms
                return call_flexibly(handler, hargs, hargs[:-1])
            return handler(*hargs)
        ns_handler, nargs = self._get_namespace_handler(namespace, args)
        if ns_handler is None:
            return self.not_handled
        if event == "connect" and not isinstance(ns_handler, Namespace) and args[-1] is None:
            # python-socketio's own Namespace: its legacy on_connect(sid, environ)
            # is found by retrying without auth, as python-socketio does
            try:
                return ns_handler.trigger_event(event, *nargs)
            except TypeError:
                return ns_handler.trigger_event(event, *nargs[:-1])
        return ns_handler.trigger_event(event, *nargs)

    # -- connection lifecycle (called by the bridge) -------------------------

    def _run_connect(self, socket: Any, auth: Any) -> dict | None:
        """Run the connect handler; the CONNECT_ERROR payload when refused, else None."""
        namespace = socket.nsp.name
        refusal: dict = exceptions.ConnectionRefusedError().error_args
        try:
            success = self._trigger_event("connect", namespace, socket.id,
                                          socket.environ, auth or None)
        except exceptions.ConnectionRefusedError as exc:
            return exc.error_args
        except ConnectionRefusedError:
            return {"message": "Connection refused by server"}
        except Exception as exc:
            # a python-socketio ConnectionRefusedError from code that still imports socketio
            error_args = getattr(exc, "error_args", None)
            if type(exc).__name__ == "ConnectionRefusedError" and isinstance(error_args, dict):
                return error_args
            # a bug in the handler: logged here; the client is refused without details
            self.logger.exception("connect handler error")
            return refusal
        return refusal if success is False else None

    def _client_pending(self, socket: Any) -> _Client:
        client = _Client(socket)
        self._clients.setdefault(socket.nsp.name, {})[socket.id] = client
        self._pending.setdefault(socket.nsp.name, {})[socket.id] = client
        return client

    def _client_connected(self, client: _Client) -> None:
        client.state = "connected"
        self._forget(self._pending, client)

    def _client_gone(self, client: _Client) -> None:
        self._forget(self._clients, client)
        self._forget(self._pending, client)

    @staticmethod
    def _forget(table: dict, client: _Client) -> None:
        socket = client.socket
        clients = table.get(socket.nsp.name)
        if clients is not None and clients.get(socket.id) is client:
            del clients[socket.id]
            if not clients:
                del table[socket.nsp.name]

    def _pending_sockets(self, namespace: str, rooms: list | None, skip: frozenset) -> list:
        """Pending sockets (in a connect handler) that a broadcast to rooms selects."""
        pending = self._pending.get(namespace)
        if not pending:
            return []
        wanted = None if rooms is None else set(rooms)
        return [c.socket for sid, c in pending.items() if sid not in skip and (
            wanted is None or sid in wanted or not wanted.isdisjoint(c.socket.rooms))]

    def _on_disconnect(self, client: _Client, native_reason: str) -> None:
        if client.state == "connected" and not client.refused:
            client.state = "disconnecting"
            socket = client.socket
            try:
                self._trigger_event("disconnect", socket.nsp.name, socket.id,
                                    self._bridge.disconnect_reason(socket, native_reason))
            except Exception:
                self.logger.exception("disconnect handler error")

    def _handle_event(self, client: _Client, event: str, args: list,
                      ack: Callable | None) -> None:
        if client.state != "connected":
            return
        socket = client.socket
        self.logger.info('received event "%s" from %s [%s]', event, socket.id,
                         socket.nsp.name)
        try:
            result = self._trigger_event(event, socket.nsp.name, socket.id, *args)
        except Exception:   # logged with the app's function, as python-socketio's task runner does
            handler = self._get_event_handler(event, socket.nsp.name, ())[0]
            if handler is None:
                namespace = self._get_namespace_handler(socket.nsp.name, ())[0]
                handler = getattr(namespace, "on_" + event, namespace)
            self.logger.exception('error in handler %s for event "%s" of %s [%s]',
                                  describe(handler), event, socket.id, socket.nsp.name)
            return
        if ack is not None and result is not self.not_handled:
            ack(*_as_args(result))

    # -- emitting ------------------------------------------------------------

    def _prepare(self, args: list) -> list:
        if self._json is None:
            return args
        return [_through_json(self._json, a) for a in args]

    def emit(self, event: str, data: Any = None, to: Any = None, room: Any = None,
             skip_sid: Any = None, namespace: str | None = None,
             callback: Callable | None = None, ignore_queue: bool = False) -> None:
        """Emit event to one client (a sid), a room, a list of rooms or everyone.

        A tuple ``data`` is sent as several arguments. ``callback`` gets each
        recipient's ack arguments (python-socketio supports it for one client).
        """
        namespace = namespace or "/"
        room = to or room
        if self.manager.uses_queue and not ignore_queue:
            # here and on the other servers of the queue (it comes back with ignore_queue)
            self.manager.emit(event, data, namespace=namespace, room=room, skip_sid=skip_sid,
                              callback=callback)
            return
        self.logger.info('emitting event "%s" to %s [%s]', event, room or "all", namespace)
        args = self._prepare(_as_args(data))
        skip = frozenset() if skip_sid is None else (
            frozenset(skip_sid) if isinstance(skip_sid, (list, tuple, set, frozenset))
            else frozenset((skip_sid,)))
        clients = self._clients.get(namespace, {})
        if room is not None and not _is_room_list(room) and room in clients:
            # one sid: straight to its socket (pending ones too, like python-socketio)
            if room not in skip:
                clients[room].socket.emit(event, *args, callback=callback)
            return
        rooms = None if room is None else (list(room) if _is_room_list(room) else [room])
        if callback is not None:
            for socket in self._bridge.sockets_in(namespace, rooms):
                if socket.id not in skip:
                    socket.emit(event, *args, callback=callback)
            for socket in self._pending_sockets(namespace, rooms, skip):
                socket.emit(event, *args, callback=callback)
            return
        self._bridge.broadcast(namespace, rooms, skip, event, args)
        if namespace in self._pending:
            for socket in self._pending_sockets(namespace, rooms, skip):
                socket.emit(event, *args)

    def send(self, data: Any, to: Any = None, room: Any = None, skip_sid: Any = None,
             namespace: str | None = None, callback: Callable | None = None,
             ignore_queue: bool = False) -> None:
        """Emit the ``message`` event."""
        self.emit("message", data=data, to=to, room=room, skip_sid=skip_sid,
                  namespace=namespace, callback=callback, ignore_queue=ignore_queue)

    def call(self, event: str, data: Any = None, to: str | None = None,
             sid: str | None = None, namespace: str | None = None,
             timeout: float | None = 60, ignore_queue: bool = False) -> Any:
        """Emit to one client and wait for its ack; exceptions.TimeoutError after timeout."""
        if to is None and sid is None:
            raise ValueError("Cannot use call() to broadcast.")
        if not self.async_handlers:
            raise RuntimeError("Cannot use call() when async_handlers is False.")
        done = gevent.event.AsyncResult()
        self.emit(event, data=data, room=to or sid, namespace=namespace,
                  callback=lambda *args: done.set(args), ignore_queue=ignore_queue)
        try:
            args = done.get(timeout=timeout)
        except gevent.Timeout:
            raise exceptions.TimeoutError() from None
        if len(args) > 1:
            return args
        return args[0] if args else None

    # -- rooms ---------------------------------------------------------------

    def _client(self, sid: str, namespace: str | None) -> _Client | None:
        return self._clients.get(namespace or "/", {}).get(sid)

    def enter_room(self, sid: str, room: Any, namespace: str | None = None,
                   ignore_queue: bool = False) -> None:
        namespace = namespace or "/"
        client = self._client(sid, namespace)
        if client is None and self.manager.uses_queue and not ignore_queue:
            self.manager.enter_room(sid, namespace, room)   # a client of another server
            return
        if client is None:
            raise ValueError("sid is not connected to requested namespace")
        if room != sid and room in self._clients.get(namespace, {}):
            raise ValueError("cannot enter a sid room")
        self.logger.info("%s is entering room %s [%s]", sid, room, namespace)
        client.socket.join(room)

    def leave_room(self, sid: str, room: Any, namespace: str | None = None,
                   ignore_queue: bool = False) -> None:
        client = self._client(sid, namespace)
        if client is None and self.manager.uses_queue and not ignore_queue:
            self.manager.leave_room(sid, namespace, room)   # a client of another server
            return
        if client is not None:
            self.logger.info("%s is leaving room %s [%s]", sid, room, namespace or "/")
            client.socket.leave(room)

    def close_room(self, room: Any, namespace: str | None = None,
                   ignore_queue: bool = False) -> None:
        namespace = namespace or "/"
        if room in self._clients.get(namespace, {}):
            raise ValueError("cannot close a sid room")
        if self.manager.uses_queue and not ignore_queue:
            self.manager.close_room(room, namespace)   # here and on the other servers
            return
        self.logger.info("room %s is closing [%s]", room, namespace)
        for socket in self._bridge.sockets_in(namespace, [room]):
            socket.leave(room)

    def rooms(self, sid: str, namespace: str | None = None) -> list:
        """The rooms of a client, its own sid room first."""
        client = self._client(sid, namespace)
        if client is None:
            return []
        rooms = [r for r in client.socket.rooms if r != sid]
        return [sid, *rooms]

    # -- per-client state ----------------------------------------------------

    def get_session(self, sid: str, namespace: str | None = None) -> dict:
        client = self._client(sid, namespace)
        if client is None:
            raise KeyError("Session is disconnected")
        return client.session

    def save_session(self, sid: str, session: dict, namespace: str | None = None) -> None:
        client = self._client(sid, namespace)
        if client is None:
            raise KeyError("Session is disconnected")
        client.session = session

    def session(self, sid: str, namespace: str | None = None) -> _SessionContext:
        """``with sio.session(sid) as session:`` saves the changes on exit."""
        return _SessionContext(self, sid, namespace)

    def get_environ(self, sid: str, namespace: str | None = None) -> dict | None:
        client = self._client(sid, namespace)
        return None if client is None else client.socket.environ

    def transport(self, sid: str, namespace: str | None = None) -> str:
        client = self._client(sid, namespace)
        if client is None:
            raise KeyError("Session not found")
        return client.socket.conn.transport

    def disconnect(self, sid: str, namespace: str | None = None,
                   ignore_queue: bool = False) -> None:
        """Disconnect a client from a namespace (its disconnect handler runs first)."""
        client = self._client(sid, namespace)
        if client is None and self.manager.uses_queue and not ignore_queue:
            self.manager.can_disconnect(sid, namespace or "/")   # asks the other servers
            return
        if client is None or client.state != "connected":
            return
        self.logger.info("Disconnecting %s [%s]", sid, namespace or "/")
        client.socket.disconnect()

    # -- server --------------------------------------------------------------

    def handle_request(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        """The WSGI entry point for Socket.IO requests (what WSGIApp calls)."""
        return self._bridge.handle_request(environ, start_response)

    def start_background_task(self, target: Callable, *args: Any, **kwargs: Any) -> gevent.Greenlet:
        return gevent.spawn(target, *args, **kwargs)

    def sleep(self, seconds: float = 0) -> None:
        gevent.sleep(seconds)

    def shutdown(self) -> None:
        """Disconnect every client and stop the server's background work
        (python-engineio's shutdown only stops its own background task)."""
        self.logger.info("Socket.IO is shutting down")
        self.manager.close()
        self._bridge.close()

    def is_asyncio_based(self) -> bool:
        return False

    def instrument(self, auth: Any = None, mode: str = "development", read_only: bool = False,
                   server_id: str | None = None, namespace: str = "/admin",
                   server_stats_interval: float = 2) -> Any:
        """The Socket.IO Admin UI (roomcast.admin on the native server). As in
        python-socketio, ``auth`` must be given: False, a dict the UI's credentials
        must equal, a list of them, or a function."""
        if auth is None:
            raise ValueError("auth must be specified")
        return self.native.instrument(
            auth=auth, mode=mode, read_only=read_only, namespace=namespace,
            server_id=server_id or getattr(self.manager, "host_id", None),
            server_stats_interval=server_stats_interval)

    def close(self, timeout: float = 10.0) -> None:
        """shutdown() with roomcast's Server.close() signature (a graceful, bounded close)."""
        self.logger.info("Socket.IO is shutting down")
        self._bridge.close(timeout)

    @property
    def engine(self) -> Any:
        """The Engine.IO server: lets roomcast.WSGIApp / run() serve this server directly."""
        return self._bridge.io.engine

    @property
    def native(self) -> Any:
        """The underlying roomcast.Server (for features python-socketio lacks)."""
        return self._bridge.io


def _through_json(module: Any, value: Any) -> Any:
    """Apply a custom json= module's encoding to non-binary values.

    python-socketio makes json= a process-wide codec; here it only shapes what
    roomcast's own encoder sends: anything but bytes is round-tripped through
    module.dumps, so custom types serialise the way that module does.
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        return value
    if isinstance(value, (list, tuple)):
        return [_through_json(module, v) for v in value]
    if isinstance(value, dict):
        return {k: _through_json(module, v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return _stdjson.loads(module.dumps(value))

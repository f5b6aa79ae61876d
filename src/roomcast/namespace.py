"""Namespace and ParentNamespace (dynamic namespaces).

A Namespace owns its sockets, its connection middlewares, its adapter and the
ack-id counter its sockets share. A ParentNamespace (``io.of(regex)`` or
``io.of(fn)``) creates a child Namespace on the first CONNECT to a matching
name; the child copies the parent's middlewares and connection listeners, and
the parent's broadcasts reach every child.
"""
from __future__ import annotations

import itertools
import logging
import re
from typing import TYPE_CHECKING, Any, Callable

from roomcast.adapter import Adapter, BroadcastOptions
from roomcast.errors import connect_error_payload
from roomcast.events import EventEmitter
from roomcast.operators import BroadcastOperator, call_safely
from roomcast.socket import Socket, run_middlewares

if TYPE_CHECKING:
    from roomcast.client import Client
    from roomcast.server import Server

log = logging.getLogger("roomcast")

# names a namespace listener may not be emitted as (Node's namespace RESERVED_EVENTS)
NAMESPACE_RESERVED = frozenset(("connect", "connection", "new_namespace"))


class Namespace(EventEmitter):
    """A communication channel of the server (``io.of("/chat")``)."""

    def __init__(self, server: "Server", name: str) -> None:
        super().__init__()
        self.server = server
        self.name = name
        self.sockets: dict[str, Socket] = {}
        self._fns: list[Callable] = []
        self._ids = 0
        self._outgoing_listeners = 0   # sockets with on_any_outgoing listeners
        self._parent: ParentNamespace | None = None
        self.adapter: Adapter = self._make_adapter()
        self.adapter.init()

    def _make_adapter(self) -> Adapter:
        return self.server.adapter_class(self)

    def reset_adapter(self) -> None:
        """Replace the adapter with a new one from the server's adapter class."""
        old = self.adapter
        self.adapter = self._make_adapter()
        self.adapter.init()
        old.close()

    def _next_ack_id(self) -> int:
        pid = self._ids
        self._ids += 1
        return pid

    # -- middleware and connections ---------------------------------------------

    def use(self, fn: Callable) -> "Namespace":
        """``fn(socket, next)`` before ``connection``: ``next()`` accepts, ``next(exc)``
        (or raising) refuses with CONNECT_ERROR ``{message, data}``."""
        self._fns.append(fn)
        return self

    def _add(self, client: "Client", auth: Any, on_done: Callable[[Socket | None], None]) -> None:
        """Run the middlewares for a new socket, then connect or refuse it.
        ``on_done(socket)`` once connected, ``on_done(None)`` otherwise."""
        session = self._restore_session(auth)
        socket = Socket(self, client, auth, session)
        recovery = self.server.connection_state_recovery
        if session is not None and recovery["skip_middlewares"] and not client._closed:
            self._do_connect(socket, on_done)
            return

        def done(err: Any) -> None:
            if client._closed or err is not None:
                if client._closed:
                    socket._on_close("transport close")   # gone during the middlewares
                else:
                    socket._refuse(connect_error_payload(err) if isinstance(err, BaseException)
                                   else {"message": str(err)})
                self._remove(socket)   # may drop an empty child namespace, as Node does
                on_done(None)
                return
            self._do_connect(socket, on_done)

        run_middlewares(list(self._fns), socket, done)

    def _restore_session(self, auth: Any) -> dict | None:
        """Connection state recovery: the session a reconnecting client names with
        ``{pid, offset}`` in its CONNECT packet, when it can be recovered."""
        if self.server.connection_state_recovery is None or not isinstance(auth, dict):
            return None
        pid, offset = auth.get("pid"), auth.get("offset")
        if not isinstance(pid, str) or not isinstance(offset, str):
            return None
        try:
            return self.adapter.restore_session(pid, offset)
        except Exception:   # a store that fails (Redis away): a new socket, as for an unknown pid
            log.exception("could not restore session %s of namespace %s", pid, self.name)
            return None

    def _do_connect(self, socket: Socket, on_done: Callable[[Socket | None], None]) -> None:
        self.sockets[socket.id] = socket
        socket._on_connect()
        on_done(socket)
        self.emit_reserved("connect", socket)
        self.emit_reserved("connection", socket)
        socket._ready()

    def _remove(self, socket: Socket) -> None:
        if self.sockets.get(socket.id) is socket:
            del self.sockets[socket.id]
        if (not self.sockets and self._parent is not None
                and self.server.cleanup_empty_child_namespaces):
            self._parent._child_emptied(self)

    # -- namespace events ---------------------------------------------------------

    def _on_server_side_emit(self, args: list, ack: Callable | None = None) -> None:
        """An event another server sent with server_side_emit."""
        event, rest = args[0], list(args[1:])
        if ack is not None:
            rest.append(ack)
        for handler in self.listeners(event):
            self.server._spawn(call_safely, handler, *rest)

    # -- broadcasting (through a BroadcastOperator) ------------------------------

    def _operator(self) -> BroadcastOperator:
        return BroadcastOperator(self.adapter)

    def to(self, room: Any) -> BroadcastOperator:
        return self._operator().to(room)

    in_ = to

    def intersect(self, *rooms: Any) -> BroadcastOperator:
        """The sockets in every one of ``rooms`` (see BroadcastOperator.intersect)."""
        return self._operator().intersect(*rooms)

    def except_(self, room: Any) -> BroadcastOperator:
        return self._operator().except_(room)

    @property
    def volatile(self) -> BroadcastOperator:
        return self._operator().volatile

    @property
    def local(self) -> BroadcastOperator:
        return self._operator().local

    def compress(self, flag: bool = True) -> BroadcastOperator:
        return self._operator().compress(flag)

    def timeout(self, seconds: float) -> BroadcastOperator:
        return self._operator().timeout(seconds)

    def emit(self, event: Any, *args: Any, callback: Callable | None = None) -> bool:  # type: ignore[override]
        """Send to every socket of the namespace (``callback(err, responses)`` for acks)."""
        return self._operator().emit(event, *args, callback=callback)

    def send(self, *args: Any, callback: Callable | None = None) -> bool:
        return self._operator().send(*args, callback=callback)

    def emit_with_ack(self, event: Any, *args: Any) -> list:
        return self._operator().emit_with_ack(event, *args)

    def fetch_sockets(self) -> list:
        return self._operator().fetch_sockets()

    def sockets_join(self, rooms: Any) -> None:
        self._operator().sockets_join(rooms)

    def sockets_leave(self, rooms: Any) -> None:
        self._operator().sockets_leave(rooms)

    def disconnect_sockets(self, close: bool = False) -> None:
        self._operator().disconnect_sockets(close)

    def all_sockets(self) -> set[str]:
        """The ids of this server's sockets in the namespace (legacy, local only)."""
        return self.adapter.sockets(())

    # -- server-side emits --------------------------------------------------------

    def server_side_emit(self, event: str, *args: Any, callback: Callable | None = None) -> bool:
        """Send an event to the other servers of the cluster (``io.on(event)`` there);
        ``callback(err, responses)`` with their acks."""
        if event in NAMESPACE_RESERVED:
            raise ValueError(f'"{event}" is a reserved event name')
        self.adapter.server_side_emit([event, *args], callback)
        return True

    def server_side_emit_with_ack(self, event: str, *args: Any) -> list:
        from gevent.event import AsyncResult

        result = AsyncResult()

        def done(err: BaseException | None, responses: Any = None) -> None:
            if err is not None:
                result.set_exception(err)
            else:
                result.set(responses)

        self.server_side_emit(event, *args, callback=done)
        return result.get()

    def emit_reserved(self, event: str, *args: Any) -> None:
        """Call this namespace's own listeners (nothing is sent)."""
        EventEmitter.emit(self, event, *args)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} sockets={len(self.sockets)}>"


class _ParentAdapter(Adapter):
    """A ParentNamespace's adapter: every operation goes to each child's adapter."""

    def _children(self) -> list[Namespace]:
        return list(self.nsp.children)

    def broadcast(self, packet: dict, opts: BroadcastOptions) -> None:
        for child in self._children():
            child.adapter.broadcast(dict(packet, nsp=child.name), opts)

    def broadcast_with_ack(self, packet, opts, client_count_callback, ack) -> None:
        for child in self._children():
            child.adapter.broadcast_with_ack(dict(packet, nsp=child.name), opts,
                                             client_count_callback, ack)

    def server_count(self) -> int:
        # the operator waits for one client count per (child, server)
        return sum(child.adapter.server_count() for child in self._children())

    def fetch_sockets(self, opts: BroadcastOptions) -> list:
        raise NotImplementedError("fetch_sockets() is not supported on parent namespaces")

    def add_sockets(self, opts, rooms) -> None:
        for child in self._children():
            child.adapter.add_sockets(opts, rooms)

    def del_sockets(self, opts, rooms) -> None:
        for child in self._children():
            child.adapter.del_sockets(opts, rooms)

    def disconnect_sockets(self, opts, close: bool) -> None:
        for child in self._children():
            child.adapter.disconnect_sockets(opts, close)

    def sockets(self, rooms) -> set[str]:
        found: set[str] = set()
        for child in self._children():
            found |= child.adapter.sockets(rooms)
        return found

    def all_rooms(self) -> set:
        return set()

    def has_room(self, room) -> bool:
        return False

    def socket_rooms(self, sid: str) -> set | None:
        return None

    def add_all(self, sid, rooms) -> None:
        pass

    def delete(self, sid, room) -> None:
        pass

    def delete_all(self, sid) -> None:
        pass


class ParentNamespace(Namespace):
    """The namespaces whose names a regex or a function ``fn(name, auth) -> bool`` accepts."""

    _counter = itertools.count(1)

    def __init__(self, server: "Server", matcher: Any) -> None:
        self.children: set[Namespace] = set()
        self.matcher = matcher
        super().__init__(server, f"/_{next(self._counter)}")

    def _make_adapter(self) -> Adapter:
        return _ParentAdapter(self)

    def matches(self, name: str, auth: Any) -> bool:
        if isinstance(self.matcher, re.Pattern):
            return self.matcher.search(name) is not None
        try:
            return bool(self.matcher(name, auth))
        except Exception:   # a failing matcher refuses the name
            log.exception("error in dynamic namespace matcher %r", self.matcher)
            return False

    def _create_child(self, name: str) -> Namespace:
        child = Namespace(self.server, name)
        child._fns = list(self._fns)
        for event in ("connect", "connection"):
            for listener in self.listeners(event):
                child.on(event, listener)
        child._parent = self
        self.children.add(child)
        self.server._nsps[name] = child
        self.server.sockets.emit_reserved("new_namespace", child)
        return child

    def _child_emptied(self, child: Namespace) -> None:
        # cleanup_empty_child_namespaces: drop the child and close its adapter
        child.adapter.close()
        if self.server._nsps.get(child.name) is child:
            del self.server._nsps[child.name]
        self.children.discard(child)

    def fetch_sockets(self) -> list:
        raise NotImplementedError("fetch_sockets() is not supported on parent namespaces")

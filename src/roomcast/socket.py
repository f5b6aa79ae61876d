"""Socket: one client in one namespace (Node's socket.io Socket)."""
from __future__ import annotations

import base64
import logging
import os
import time
import urllib.parse
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Mapping

import gevent
from gevent.event import AsyncResult

from roomcast import metrics
from roomcast.adapter import BroadcastFlags, BroadcastOptions, _socket_rooms
from roomcast.dispatch import describe
from roomcast.engine.uncompressed import with_compress
from roomcast.errors import DisconnectedError, timeout_error
from roomcast.events import EventEmitter
from roomcast.operators import BroadcastOperator, ack_value, call_safely, check_event, room_set
from roomcast.recovery import RECOVERABLE_DISCONNECT_REASONS
from roomcast.sio_packet import ACK, BINARY_ACK, BINARY_EVENT, CONNECT, CONNECT_ERROR, \
    DISCONNECT, EVENT

if TYPE_CHECKING:
    from roomcast.client import Client
    from roomcast.namespace import Namespace

log = logging.getLogger("roomcast")

_NO_FLAGS = BroadcastFlags()
PENDING, CONNECTED, CLOSED = "pending", "connected", "closed"


def generate_id() -> str:
    """A fresh 20-character url-safe id, the shape of Node's base64id."""
    return base64.urlsafe_b64encode(os.urandom(15)).decode("ascii")


def _headers_of(environ: Mapping[str, Any]) -> dict[str, str]:
    # Node lower-cases header names; WSGI keeps two of them outside HTTP_*.
    headers = {key[5:].replace("_", "-").lower(): value
               for key, value in environ.items() if key.startswith("HTTP_")}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    return headers


def _query_of(environ: Mapping[str, Any]) -> dict[str, Any]:
    query: dict[str, Any] = {}
    for name, value in urllib.parse.parse_qsl(environ.get("QUERY_STRING", ""),
                                              keep_blank_values=True):
        if name in query:   # repeated keys become lists, as Node's querystring does
            previous = query[name]
            query[name] = (previous if isinstance(previous, list) else [previous]) + [value]
        else:
            query[name] = value
    return query


def build_handshake(environ: Mapping[str, Any], auth: Any, now: float | None = None) -> dict:
    """Node's socket.handshake, from the WSGI environ of the session's first request
    (``now``: the time of the connection, time.time(); by default the present)."""
    if now is None:
        now = time.time()
    url = environ.get("PATH_INFO", "/")
    if environ.get("QUERY_STRING"):
        url += "?" + environ["QUERY_STRING"]
    return {
        "headers": _headers_of(environ),
        # the string Node's `new Date() + ""` gives in a UTC process
        "time": time.strftime("%a %b %d %Y %H:%M:%S GMT+0000 (Coordinated Universal Time)",
                              time.gmtime(now)),
        "address": environ.get("REMOTE_ADDR"),
        "xdomain": bool(environ.get("HTTP_ORIGIN")),
        "secure": environ.get("wsgi.url_scheme") == "https",
        "issued": int(now * 1000),
        "url": url,
        "query": _query_of(environ),
        "auth": auth if auth is not None else {},
    }


def _without(items: list | tuple, fn: Callable) -> list:
    """A copy of ``items`` without the first ``fn`` (listeners are replaced, never
    changed in place: a dispatch may be iterating over the old list)."""
    kept = list(items)
    kept.remove(fn)
    return kept


def run_middlewares(fns: list[Callable], arg: Any, done: Callable[[Any], None]) -> None:
    """Call ``fn(arg, next)`` for each fn in order; ``done(err)`` at the end or at the
    first ``next(err)`` / exception. ``next`` may be called later, from any greenlet."""
    _run_middleware(fns, 0, arg, done)


def _run_middleware(fns: list[Callable], i: int, arg: Any, done: Callable[[Any], None]) -> None:
    # a function of the module rather than a closure that calls itself: such a closure
    # is a reference cycle, which only the cyclic GC frees, with ``done`` and all it
    # holds (every connect and every event through middlewares made one)
    if i == len(fns):
        done(None)
        return
    called = False

    def next_(err: Any = None) -> None:
        nonlocal called
        if called:
            return
        called = True
        if err is not None:
            done(err)
        else:
            _run_middleware(fns, i + 1, arg, done)

    try:
        fns[i](arg, next_)
    except Exception as exc:
        if called:
            raise   # from what ran after next(): not this middleware's refusal
        next_(exc)   # raising is the same as next(exc)


class _Emitting:
    """The emitting side shared by Socket and its flagged views (socket.volatile...)."""

    _flags: BroadcastFlags

    def _target(self) -> "Socket":
        raise NotImplementedError

    def emit(self, event: Any, *args: Any, callback: Callable | None = None) -> bool:
        """Send an event to this client; ``callback(*ack_args)`` when it acks
        (``callback(err, *ack_args)`` after ``timeout()``)."""
        return self._target()._emit(event, args, callback, self._flags)

    def send(self, *args: Any, callback: Callable | None = None) -> bool:
        return self.emit("message", *args, callback=callback)

    def emit_with_ack(self, event: Any, *args: Any, timeout: float | None = None) -> Any:
        """Emit and wait for the ack: its argument (a tuple when several).
        TimeoutError after ``timeout``; DisconnectedError when the socket goes first."""
        flags = self._flags if timeout is None else replace(self._flags, timeout=float(timeout))
        return self._target()._emit_and_wait(event, args, flags)

    def _view(self, **flags: Any) -> "SocketView":
        return SocketView(self._target(), replace(self._flags, **flags))

    @property
    def volatile(self) -> "SocketView":
        return self._view(volatile=True)

    def compress(self, flag: bool = True) -> "SocketView":
        return self._view(compress=bool(flag))

    def timeout(self, seconds: float) -> "SocketView":
        return self._view(timeout=float(seconds))

    # broadcasting from a socket: everyone selected (in ``rooms``, if given) but this socket
    def _operator(self, rooms: frozenset = frozenset()) -> BroadcastOperator:
        target = self._target()
        return BroadcastOperator(target.nsp.adapter, rooms, frozenset((target.id,)), self._flags)

    @property
    def broadcast(self) -> BroadcastOperator:
        return self._operator()

    @property
    def local(self) -> BroadcastOperator:
        return self._operator().local

    def to(self, room: Any) -> BroadcastOperator:
        # _operator().to(room) in one step: this is every relay's path
        return self._operator(room_set(room))

    in_ = to

    def intersect(self, *rooms: Any) -> BroadcastOperator:
        """The sockets in every one of ``rooms`` (see BroadcastOperator.intersect)."""
        return self._operator().intersect(*rooms)

    def except_(self, room: Any) -> BroadcastOperator:
        return self._operator().except_(room)


class SocketView(_Emitting):
    """A socket with emit flags (``socket.timeout(5)``); the socket itself stays unflagged."""

    __slots__ = ("_socket", "_flags")

    def __init__(self, socket: "Socket", flags: BroadcastFlags) -> None:
        self._socket = socket
        self._flags = flags

    def _target(self) -> "Socket":
        return self._socket


class Socket(_Emitting, EventEmitter):
    """One client connected to one namespace."""

    _flags = _NO_FLAGS
    # Containers most sockets never fill are shared empty tuples until first used:
    # every container a connection keeps is one more object for each of the cyclic
    # GC's full collections to walk, and they come more often the more there are.
    _pending_rooms: list | tuple = ()   # joined in a connection middleware
    _missed: list | tuple = ()          # a recovered socket's missed packets, sent on connect
    _fns: list | tuple = ()             # use()
    _any: list | tuple = ()             # on_any()
    _any_outgoing: list | tuple = ()    # on_any_outgoing()
    _waiters: set | None = None         # emit_with_ack() callers waiting
    _handshake: dict | None = None

    def __init__(self, nsp: "Namespace", client: "Client", auth: Any,
                 session: dict | None = None) -> None:
        EventEmitter.__init__(self)
        self.nsp = nsp
        self.server = nsp.server
        self.client = client
        self.conn = client.conn
        # socket.handshake is built when first read, from what the connection had now
        self._auth = auth
        self._time = time.time()
        self.recovered = session is not None
        if session is not None:   # connection state recovery: the same socket again
            self.id, self.pid = session["sid"], session["pid"]
            self.data = session["data"] if session.get("data") is not None else {}
            self._pending_rooms = [r for r in session["rooms"] if r != self.id]
            self._missed = list(session.get("missed_packets") or ())
        else:
            self.id = generate_id()
            self.pid = generate_id() if self.server.connection_state_recovery else None
            self.data = {}
        self._state = PENDING
        self._acks: dict[int, Callable] = {}
        self._early: list | None = []      # events that came before `connection` returned
        self._left: str | None = None      # the client's DISCONNECT arrived, its close is queued

    def _target(self) -> "Socket":
        return self

    # -- state ------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._state == CONNECTED

    @property
    def disconnected(self) -> bool:
        return self._state != CONNECTED

    @property
    def environ(self) -> dict:
        return self.conn.environ

    @property
    def handshake(self) -> dict:
        """Node's socket.handshake: headers, time, address, xdomain, secure, issued,
        url, query and auth of the connection."""
        handshake = self._handshake
        if handshake is None:
            handshake = self._handshake = build_handshake(self.conn.request_environ(),
                                                          self._auth, self._time)
            self._auth = None
        return handshake

    @handshake.setter
    def handshake(self, value: dict) -> None:
        self._handshake = value

    @property
    def rooms(self) -> set:
        if self._state == CONNECTED:
            return self.nsp.adapter.socket_rooms(self.id) or set()
        if self._state == PENDING:
            return set(self._pending_rooms)
        return set()

    # -- rooms ------------------------------------------------------------------

    def join(self, rooms: Any) -> None:
        rooms = _socket_rooms(rooms)
        if self._state == CONNECTED:
            self.nsp.adapter.add_all(self.id, rooms)
        elif self._state == PENDING:
            if not self._pending_rooms:
                self._pending_rooms = []
            self._pending_rooms.extend(r for r in rooms if r not in self._pending_rooms)

    def leave(self, room: Any) -> None:
        if self._state == CONNECTED:
            self.nsp.adapter.delete(self.id, room)
        elif self._state == PENDING and room in self._pending_rooms:
            self._pending_rooms.remove(room)

    # -- middleware and catch-all listeners ------------------------------------

    def use(self, fn: Callable) -> "Socket":
        """``fn([event, *args], next)`` for each incoming event, before its handlers."""
        self._fns = [*self._fns, fn]
        return self

    def on_any(self, fn: Callable) -> Callable:
        self._any = [*self._any, fn]
        return fn

    def prepend_any(self, fn: Callable) -> Callable:
        self._any = [fn, *self._any]
        return fn

    def off_any(self, fn: Callable | None = None) -> None:
        if fn is None:
            self._any = ()
        elif fn in self._any:
            self._any = _without(self._any, fn)

    def listeners_any(self) -> list[Callable]:
        return list(self._any)

    def on_any_outgoing(self, fn: Callable) -> Callable:
        if not self._any_outgoing:
            self.nsp._outgoing_listeners += 1
        self._any_outgoing = [*self._any_outgoing, fn]
        return fn

    def prepend_any_outgoing(self, fn: Callable) -> Callable:
        self.on_any_outgoing(fn)
        self._any_outgoing = [fn, *_without(self._any_outgoing, fn)]
        return fn

    def off_any_outgoing(self, fn: Callable | None = None) -> None:
        had = bool(self._any_outgoing)
        if fn is None:
            self._any_outgoing = ()
        elif fn in self._any_outgoing:
            self._any_outgoing = _without(self._any_outgoing, fn)
        if had and not self._any_outgoing:
            self.nsp._outgoing_listeners -= 1

    def listeners_any_outgoing(self) -> list[Callable]:
        return list(self._any_outgoing)

    def _notify_outgoing(self, data: list) -> None:
        for fn in list(self._any_outgoing):
            call_safely(fn, *data)

    # -- sending ----------------------------------------------------------------

    def _packet(self, ptype: int, data: Any = None, pid: int | None = None,
                volatile: bool = False) -> None:
        self.client._send(self.server.encode_packet(ptype, self.nsp.name, data, pid), volatile)

    def _emit(self, event: Any, args: tuple, callback: Callable | None,
              flags: BroadcastFlags) -> bool:
        check_event(event)
        if self._state == CLOSED:
            return False   # Node would still write it; a later reconnect would replay it
        data = [event, *args]
        if callback is None and self.pid is not None and self._state == CONNECTED:
            # recovery: through the adapter, so that the packet gets an offset and is kept
            self.nsp.adapter.broadcast({"type": EVENT, "data": data, "nsp": self.nsp.name},
                                       BroadcastOptions(frozenset((self.id,)), frozenset(), flags))
            return True
        pid = None
        if callback is not None:
            pid = self.nsp._next_ack_id()
        # encode before registering anything: unserialisable data raises TypeError here
        encoded = self.server.encode_packet(EVENT, self.nsp.name, data, pid)
        if callback is not None:
            self._register_ack(pid, callback, flags.timeout)
        if self._any_outgoing:
            self._notify_outgoing(data)
        self.client._send(with_compress(encoded, flags.compress), flags.volatile)
        if metrics.active is not None:
            metrics.active.broadcast(1, len(encoded.ws))
        return True

    def _register_ack(self, pid: int, callback: Callable, timeout: float | None) -> None:
        if timeout is None:
            self._acks[pid] = callback
            return

        def expire() -> None:
            if self._acks.pop(pid, None) is not None:
                call_safely(callback, timeout_error())

        timer = gevent.spawn_later(timeout, expire)

        def on_ack(*args: Any) -> None:
            timer.kill(block=False)
            callback(None, *args)

        self._acks[pid] = on_ack

    def _emit_and_wait(self, event: Any, args: tuple, flags: BroadcastFlags) -> Any:
        result = AsyncResult()
        if flags.timeout is None:
            def done(*values: Any) -> None:
                result.set(ack_value(values))
        else:
            def done(err: BaseException | None, *values: Any) -> None:
                if err is not None:
                    result.set_exception(err)
                else:
                    result.set(ack_value(values))
        if self._state == CLOSED:
            raise DisconnectedError("the socket is disconnected")
        waiters = self._waiters
        if waiters is None:
            waiters = self._waiters = set()
        waiters.add(result)
        try:
            self._emit(event, args, done, flags)
            return result.get()
        finally:
            waiters.discard(result)

    def _make_ack(self, pid: int) -> Callable[..., None]:
        sent = False

        def ack(*args: Any) -> None:
            nonlocal sent
            if sent:
                return   # an ack is answered once, like Node's
            sent = True
            self._packet(ACK, list(args), pid)

        return ack

    # -- receiving (called by the Client where the data was read: for WebSocket, an
    # event-loop callback, so nothing here blocks or runs user code directly) ------

    def _on_packet(self, packet) -> None:
        if self._state != CONNECTED:
            return
        ptype = packet.type
        if ptype == EVENT or ptype == BINARY_EVENT:
            if metrics.active is not None:
                metrics.active.events_in += 1
            args = list(packet.data)
            if packet.id is not None:
                args.append(self._make_ack(packet.id))
            if self._early is not None:
                self._early.append(args)
            else:
                self.server._spawn(self._dispatch, args, key=self)
        elif ptype == ACK or ptype == BINARY_ACK:
            callback = self._acks.pop(packet.id, None)
            if callback is not None:
                self.server._spawn(callback, *packet.data)
        elif ptype == DISCONNECT:
            # after the events that came before it (they run: Node handles them too); the
            # reason holds even if the connection closes before the queued close runs
            self._left = "client namespace disconnect"
            self.server._spawn(self._on_close, self._left, key=self)

    def _dispatch(self, args: list) -> None:
        if self._state != CONNECTED:
            return   # received before a disconnect, dispatched after it: Node ignores it too
        for fn in list(self._any):
            call_safely(fn, *args)
        if self._fns:
            run_middlewares(list(self._fns), args, lambda err: self._after_middlewares(err, args))
        else:
            self._call_handlers(args)

    def _after_middlewares(self, err: Any, args: list) -> None:
        if err is not None:
            self._on_error(err)
        elif self._state == CONNECTED:
            self._call_handlers(args)

    def _call_handlers(self, args: list) -> None:
        for handler in self.listeners(args[0]):
            try:
                handler(*args[1:])
            except Exception:  # logged; the connection lives on
                if metrics.active is not None:
                    metrics.active.handler_errors += 1
                log.exception("error in handler %s for event %r of socket %s",
                              describe(handler), args[0], self.id)

    def _on_error(self, err: Any) -> None:
        if self._listeners.get("error"):
            self.emit_reserved("error", err)
        else:
            log.debug("socket %s: unhandled error %r", self.id, err)

    def emit_reserved(self, event: str, *args: Any) -> None:
        """Call this socket's own listeners (no packet is sent)."""
        EventEmitter.emit(self, event, *args)

    # -- connecting and closing ---------------------------------------------------

    def _on_connect(self) -> None:
        """Accepted: into the rooms, then the CONNECT reply."""
        self._state = CONNECTED
        rooms, self._pending_rooms = [*self._pending_rooms, self.id], ()
        self.nsp.adapter.add_all(self.id, rooms)
        self._packet(CONNECT, {"sid": self.id} if self.pid is None else {"sid": self.id, "pid": self.pid})
        missed, self._missed = self._missed, ()
        for packet in missed:   # in order; each carries its offset as its last argument
            self.client._send(packet if not isinstance(packet, list)
                              else self.server.encode_packet(EVENT, self.nsp.name, packet))

    def _refuse(self, payload: dict) -> None:
        self._state = CLOSED
        self._pending_rooms = ()
        self._packet(CONNECT_ERROR, payload)

    def _ready(self) -> None:
        """The `connection` handlers returned: dispatch what arrived meanwhile."""
        early, self._early = self._early, None
        for args in early or ():
            self.server._spawn(self._dispatch, args, key=self)

    def disconnect(self, close: bool = False) -> "Socket":
        """Leave this namespace (DISCONNECT packet), or close the whole connection."""
        if self._state != CONNECTED:
            return self
        if close:
            self.client._disconnect_all()
        else:
            self._packet(DISCONNECT)
            self._on_close("server namespace disconnect")
        return self

    def _on_close(self, reason: str, description: Any = None) -> None:
        if self._state != CONNECTED:
            if self._state == PENDING:
                self._state = CLOSED
            return
        reason = self._left or reason
        if metrics.active is not None:
            metrics.active.disconnect(reason)
        # rooms are still readable in `disconnecting`
        self.emit_reserved("disconnecting", reason)
        if self.pid is not None and reason in RECOVERABLE_DISCONNECT_REASONS:
            self.nsp.adapter.persist_session({"sid": self.id, "pid": self.pid,
                                              "rooms": list(self.rooms), "data": self.data})
        self.nsp.adapter.delete_all(self.id)
        self._state = CLOSED
        self.nsp._remove(self)
        self.client._remove(self)
        if self._any_outgoing:
            self.off_any_outgoing()
        for waiter in list(self._waiters or ()):
            waiter.set_exception(DisconnectedError(reason))
        self.emit_reserved("disconnect", reason)

    def __repr__(self) -> str:
        return f"<Socket {self.id} nsp={self.nsp.name!r} {self._state}>"

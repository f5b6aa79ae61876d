"""The Socket.IO Admin UI's server side (``@socket.io/admin-ui`` 0.5's protocol).

``io.instrument(auth=None, mode="development", read_only=False, namespace="/admin",
server_id=None, server_stats_interval=2.0)`` opens the admin namespace that the UI
(https://admin.socket.io, or the ``ui/dist`` of the npm package served anywhere)
connects to, and reports what the server does:

- ``server_stats`` every ``server_stats_interval`` seconds: server id, hostname,
  pid, uptime, clients (and polling clients), namespaces with their socket
  counts, and aggregated engine events per second (connections, disconnections,
  packets and bytes in and out);
- in development mode: ``all_sockets`` to each UI that connects (from every
  namespace's ``fetch_sockets()``, so a cluster adapter's other servers are
  included), ``socket_connected``/``socket_updated``/``socket_disconnected``,
  ``room_joined``/``room_left``, ``event_received``/``event_sent``.

Unless ``read_only``, the UI may make sockets emit, join, leave and disconnect
(``emit``/``join``/``leave``/``_disconnect``, by namespace and room filter).

Admin events are broadcasts on the admin namespace, so with a cluster adapter
(Redis) every server's reports reach every UI, as with Node's instrument().

Cost: nothing is added to any path unless ``instrument()`` was called. When it
was, a broadcast is reported as ONE ``event_sent`` whose id is its target
(``"to red,blue"``, ``"to everyone"``), never one per recipient; and
``packetsOut``/``bytesOut`` count a broadcast once.

``auth``: None or False (no authentication); ``{"type": "basic", "username",
"password"}`` (the password in clear, or a bcrypt hash when the ``bcrypt``
package is installed; the UI then gets a ``session`` id it may reconnect with);
a dict the UI's ``{username, password}`` must equal, a list of such dicts, or a
function ``auth(credentials) -> bool`` (python-socketio's forms).
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import socket as _socket
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

import gevent

from roomcast.errors import ConnectError

if TYPE_CHECKING:
    from roomcast.server import Server

log = logging.getLogger("roomcast.admin")

_STARTED = time.monotonic()
_WRITE_FEATURES = ["EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT"]
#: UI sessions (basic auth) remembered per instrumented server, oldest dropped beyond
MAX_SESSIONS = 1000


def _now() -> str:
    """A timestamp as Node's Date.toJSON() writes it."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _plain(value: Any) -> Any:
    """socket.data made JSON-safe for the UI (what JSON cannot hold becomes its repr)."""
    try:
        return json.loads(json.dumps(value, default=repr))
    except (TypeError, ValueError):
        return repr(value)


def _auth_check(auth: Any) -> Callable[[dict], bool] | None:
    if auth is None or auth is False:
        return None
    if callable(auth):
        return lambda given: bool(auth(given))
    if isinstance(auth, list):
        return lambda given: given in auth
    if not isinstance(auth, dict):
        raise ValueError("auth must be None, False, a dict, a list of dicts or a function")
    if auth.get("type") != "basic":
        return lambda given: given == auth
    username, password = auth.get("username"), auth.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise ValueError('basic auth needs "username" and "password" strings')
    if password.startswith(("$2a$", "$2b$", "$2y$")):
        try:
            import bcrypt
        except ImportError:
            raise ValueError("a bcrypt password hash needs the bcrypt package") from None
        hashed = password.encode()

        def matches(given: Any) -> bool:
            return isinstance(given, str) and bcrypt.checkpw(given.encode(), hashed)
    else:
        def matches(given: Any) -> bool:
            return isinstance(given, str) and secrets.compare_digest(given, password)
    return lambda given: given.get("username") == username and matches(given.get("password"))


class _EventBuffer:
    """Counts per (second, type, subType), handed over with each server_stats."""

    def __init__(self) -> None:
        self.counts: dict[tuple, int] = {}

    def push(self, kind: str, sub: str | None = None, count: int = 1) -> None:
        key = (int(time.time()) * 1000, kind, sub)
        self.counts[key] = self.counts.get(key, 0) + count

    def take(self) -> list[dict]:
        counts, self.counts = self.counts, {}
        return [{"timestamp": ts, "type": kind, "subType": sub, "count": n}
                for (ts, kind, sub), n in counts.items()]


def _size(data: Any) -> int:
    if isinstance(data, str):
        return len(data.encode("utf-8"))
    if isinstance(data, (bytes, bytearray)):
        return len(data)
    return 0


class Instrumentation:
    """What ``Server.instrument()`` returns; ``shutdown()`` stops the stats."""

    def __init__(self, io: "Server", auth: Any = None, mode: str = "development",
                 read_only: bool = False, namespace: str = "/admin",
                 server_id: str | None = None, server_stats_interval: float = 2.0) -> None:
        if mode not in ("development", "production"):
            raise ValueError('mode must be "development" or "production"')
        self.io = io
        self.check = _auth_check(auth)
        self.basic = isinstance(auth, dict) and auth.get("type") == "basic"
        self.mode = mode
        self.development = mode == "development"
        self.read_only = read_only
        self.server_id = server_id or f"{_socket.gethostname()}#{os.getpid()}"
        self.interval = float(server_stats_interval)
        self.events = _EventBuffer()
        self.sessions: dict[str, bool] = {}
        self.features = ([] if read_only else list(_WRITE_FEATURES)) + ["AGGREGATED_EVENTS"]
        if self.development:
            self.features.append("ALL_EVENTS")
        self.admin = io.of(namespace)
        self.admin.use(self._authenticate)
        io.engine.on("connection", self._on_engine_connection)
        self._watched: set[str] = set()
        for nsp in io.namespaces:
            self._watch(nsp)
        io.on("new_namespace", self._watch)
        # after the admin namespace's own reports, so that a UI is listed complete
        self.admin.on("connection", self._on_admin_connection)
        self._stats = gevent.spawn(self._stats_loop)

    def shutdown(self) -> None:
        stats, self._stats = self._stats, None
        if stats is not None:
            stats.kill(block=False)

    # -- the admin namespace ----------------------------------------------------------

    def _authenticate(self, socket: Any, proceed: Callable) -> None:
        if self.check is None:
            proceed()
            return
        given = socket.handshake.get("auth") or {}
        session = given.get("sessionId") if isinstance(given, dict) else None
        if self.basic and isinstance(session, str) and session in self.sessions:
            proceed()
            return
        if not isinstance(given, dict) or not self.check(given):
            proceed(ConnectError("invalid credentials" if self.basic else "authentication failed"))
            return
        if self.basic:
            session = secrets.token_hex(8)
            self.sessions[session] = True
            while len(self.sessions) > MAX_SESSIONS:
                self.sessions.pop(next(iter(self.sessions)))
            socket.emit("session", session)   # sent once the connection is accepted
        proceed()

    def _on_admin_connection(self, socket: Any) -> None:
        if not self.read_only:
            socket.on("emit", self._ui_emit)
            socket.on("join", self._ui_join)
            socket.on("leave", self._ui_leave)
            socket.on("_disconnect", self._ui_disconnect)
        socket.emit("config", {"supportedFeatures": self.features})
        if self.development:
            socket.emit("all_sockets", self._all_sockets())

    def _all_sockets(self) -> list[dict]:
        found = []
        for nsp in self.io.namespaces:
            try:
                sockets = nsp.fetch_sockets()
            except Exception:   # a parent namespace, or a cluster that did not answer
                log.debug("admin: cannot fetch the sockets of %s", nsp.name, exc_info=True)
                continue
            found.extend(self._serialize(s, nsp.name) for s in sockets)
        return found

    @staticmethod
    def _serialize(socket: Any, nsp: str) -> dict:
        data = socket.data if isinstance(socket.data, dict) else {}
        admin = data.get("_admin") or {}
        handshake = socket.handshake or {}
        headers = handshake.get("headers") or {}
        return {
            "id": socket.id,
            "clientId": admin.get("clientId"),
            "transport": admin.get("transport"),
            "nsp": nsp,
            "data": _plain({k: v for k, v in data.items() if k != "_admin"}),
            "handshake": {
                "address": headers.get("cf-connecting-ip") or headers.get("x-forwarded-for")
                or handshake.get("address"),
                "headers": headers, "query": handshake.get("query"),
                "issued": handshake.get("issued"), "secure": handshake.get("secure"),
                "time": handshake.get("time"), "url": handshake.get("url"),
                "xdomain": handshake.get("xdomain"),
            },
            "rooms": list(socket.rooms),
        }

    # the UI's actions: (namespace, ..., room filter or None)
    def _target(self, name: str, room_filter: Any) -> Any:
        nsp = self.io.of(name)
        return nsp.in_(room_filter) if room_filter else nsp

    def _ui_emit(self, name: str, room_filter: Any, event: str, *args: Any) -> None:
        if args and callable(args[-1]):
            args = args[:-1]
        self._target(name, room_filter).emit(event, *args)

    def _ui_join(self, name: str, room: Any, room_filter: Any = None, *_: Any) -> None:
        self._target(name, room_filter).sockets_join(room)

    def _ui_leave(self, name: str, room: Any, room_filter: Any = None, *_: Any) -> None:
        self._target(name, room_filter).sockets_leave(room)

    def _ui_disconnect(self, name: str, close: Any = False, room_filter: Any = None,
                       *_: Any) -> None:
        self._target(name, room_filter).disconnect_sockets(bool(close))

    # -- reports -------------------------------------------------------------------------

    def _report(self, event: str, *args: Any) -> None:
        try:
            self.admin.emit(event, *args)
        except Exception:   # a report must never break what it reports on
            log.exception("admin: cannot send %s", event)

    def _stats_loop(self) -> None:
        while True:
            self._report("server_stats", self._server_stats())
            gevent.sleep(self.interval)

    def _server_stats(self) -> dict:
        clients = list(self.io.engine.clients.values())
        return {
            "serverId": self.server_id,
            "hostname": _socket.gethostname(),
            "pid": os.getpid(),
            "uptime": time.monotonic() - _STARTED,
            "clientsCount": len(clients),
            "pollingClientsCount": sum(1 for c in clients if c.transport == "polling"),
            "aggregatedEvents": self.events.take(),
            "namespaces": [{"name": nsp.name, "socketsCount": len(nsp.sockets)}
                           for nsp in self.io.namespaces],
        }

    def _on_engine_connection(self, conn: Any) -> None:
        events = self.events
        events.push("rawConnection")

        def on_packet(ptype: int, data: Any) -> None:
            if data:
                events.push("packetsIn")
                events.push("bytesIn", None, _size(data))

        conn.on("packet", on_packet)
        conn.on("close", lambda reason, description=None: events.push("rawDisconnection", reason))

    # -- one namespace (development mode adds the per-socket reports) ----------------------

    def _watch(self, nsp: Any) -> None:
        if nsp.name in self._watched:
            return
        self._watched.add(nsp.name)
        is_admin = nsp is self.admin
        if not is_admin:
            self._count_broadcasts(nsp)
        if not self.development:
            return
        nsp.on("connection", lambda socket: self._on_socket(socket, nsp.name, is_admin))
        name = nsp.name
        nsp.adapter.on("join-room",
                       lambda room, sid: self._report("room_joined", name, room, sid, _now()))
        nsp.adapter.on("leave-room",
                       lambda room, sid: self._report("room_left", name, room, sid, _now()))

    def _count_broadcasts(self, nsp: Any) -> None:
        """One report per broadcast: the adapter's broadcast() of this namespace is
        wrapped (only here, so an uninstrumented server runs the plain method)."""
        adapter = nsp.adapter
        plain = adapter.broadcast
        name = nsp.name
        development = self.development

        def broadcast(packet: dict, opts: Any) -> None:
            data = packet.get("data") or []
            self.events.push("packetsOut")
            if development:
                target = "to " + ",".join(sorted(map(str, opts.rooms))) if opts.rooms \
                    else "to everyone"
                self._report("event_sent", name, target, list(data), _now())
            plain(packet, opts)

        adapter.broadcast = broadcast

    def _on_socket(self, socket: Any, name: str, is_admin: bool) -> None:
        if not isinstance(socket.data, dict):
            socket.data = {}
        socket.data["_admin"] = {"clientId": socket.client.id[:12],
                                 "transport": socket.conn.transport}
        self._report("socket_connected", self._serialize(socket, name), _now())

        def upgraded() -> None:
            socket.data["_admin"]["transport"] = "websocket"
            self._report("socket_updated", {"id": socket.id, "nsp": name,
                                            "transport": "websocket"})

        socket.conn.on("upgrade", upgraded)
        if not is_admin:
            def received(event: Any, *args: Any) -> None:
                if args and callable(args[-1]):
                    args = args[:-1]
                self._report("event_received", name, socket.id, [event, *args], _now())

            socket.prepend_any(received)   # reported before the app's handlers run
            plain_emit = socket.emit

            def emit(event: Any, *args: Any, callback: Callable | None = None) -> bool:
                self.events.push("packetsOut")
                self._report("event_sent", name, socket.id, [event, *args], _now())
                return plain_emit(event, *args, callback=callback)

            socket.emit = emit   # this socket's own emits; broadcasts are counted above
        socket.on("disconnect", lambda reason: self._report(
            "socket_disconnected", name, socket.id, reason, _now()))


def instrument(io: "Server", **options: Any) -> Instrumentation:
    return Instrumentation(io, **options)

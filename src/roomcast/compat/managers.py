"""python-socketio's message-queue managers: their JSON wire format, on roomcast.

A ``PubSubManager`` lets several servers (roomcast.compat or python-socketio
ones) and write-only emitters (Celery workers, cron jobs) share clients through
one queue channel, in python-socketio's own format (python-socketio.md §3): one
JSON object per message with a ``method`` and the sender's ``host_id``:

- ``emit``: event, data (the argument list), binary, namespace, room, skip_sid,
  callback ``[sid, namespace, ack_id]`` or null; with ``binary`` true, data is
  ``[data with placeholders, base64 attachment, ...]``;
- ``callback``: an ack routed back to the ``host_id`` that asked for it;
- ``disconnect``, ``enter_room``, ``leave_room``, ``close_room``.

Every server receives every message and skips its own. A received emit goes
through the server's ordinary ``emit(..., ignore_queue=True)``, so it reaches
the local clients by the same encode-once fan-out as a local emit. A message
that cannot be understood (bad JSON, wrong types, unknown method) is logged and
skipped; the listener keeps going.

Backends: ``managers_redis.RedisManager`` and ``managers_kombu.KombuManager``
implement ``publish_text`` / ``listen`` below.
"""
from __future__ import annotations

import base64
import itertools
import json as _stdjson
import logging
import uuid
from collections import OrderedDict
from typing import Any, Callable

import gevent

from .server import Manager

log = logging.getLogger("roomcast.compat.queue")

#: callbacks waiting for an ack from another server; the oldest are dropped past this
MAX_PENDING_CALLBACKS = 10_000

_METHODS = ("emit", "callback", "disconnect", "enter_room", "leave_room", "close_room")


class BadMessage(ValueError):
    """A queue message that is not in python-socketio's format."""


# -- binary attachments, as python-socketio puts them in a queue message ----------

def split_binary(data: Any) -> tuple[Any, list[bytes]]:
    """(data with ``{"_placeholder": true, "num": n}`` for each bytes value, the bytes)."""
    attachments: list[bytes] = []

    def walk(value: Any) -> Any:
        if isinstance(value, (bytes, bytearray, memoryview)):
            attachments.append(bytes(value))
            return {"_placeholder": True, "num": len(attachments) - 1}
        if isinstance(value, (list, tuple)):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        return value

    return walk(data), attachments


def join_binary(data: Any, attachments: list[bytes]) -> Any:
    """The inverse of split_binary; BadMessage for a placeholder out of range."""
    def walk(value: Any) -> Any:
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            if value.get("_placeholder") is True and len(value) == 2:
                num = value.get("num")
                if not isinstance(num, int) or not 0 <= num < len(attachments):
                    raise BadMessage(f"placeholder {num!r} has no attachment")
                return attachments[num]
            return {k: walk(v) for k, v in value.items()}
        return value

    return walk(data)


def has_binary(data: Any) -> bool:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return True
    if isinstance(data, (list, tuple)):
        return any(has_binary(v) for v in data)
    if isinstance(data, dict):
        return any(has_binary(v) for v in data.values())
    return False


def _check(message: dict, key: str, types: tuple, optional: bool = True) -> Any:
    value = message.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, types) or isinstance(value, bool) and bool not in types:
        raise BadMessage(f"{key!r} is {type(value).__name__}")
    return value


def _check_room(message: dict, key: str) -> Any:
    room = message.get(key)
    if isinstance(room, list):
        if not all(isinstance(r, (str, int)) and not isinstance(r, bool) for r in room):
            raise BadMessage(f"{key!r} holds something other than names")
        return room
    return _check(message, key, (str, int))


class PubSubManager(Manager):
    """A client manager that shares a python-socketio message queue.

    ``write_only=True`` makes an emitter for processes without clients (it starts
    no listener and publishes synchronously); callbacks need a server.
    ``json`` is the codec of the messages (any module with ``dumps``/``loads``).
    """

    name = "pubsub"
    uses_queue = True

    def __init__(self, channel: str = "socketio", write_only: bool = False,
                 logger: logging.Logger | None = None, json: Any = None) -> None:
        super().__init__()
        self.channel = channel
        self.write_only = write_only
        self.host_id = uuid.uuid4().hex
        self.logger = logger or log
        self.json = json if json is not None else _stdjson
        self._ids = itertools.count(1)
        self._callbacks: OrderedDict[int, Callable] = OrderedDict()
        self._listener: gevent.Greenlet | None = None
        self._initialized = False

    # -- what a backend implements ---------------------------------------------

    def publish_text(self, text: str) -> None:
        """Send one encoded message to every server on the channel."""
        raise NotImplementedError

    def listen(self, deliver: Callable[[Any], None]) -> None:
        """Receive forever, calling deliver(raw message) for each (reconnecting
        on its own); returns only when the manager is closed."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop listening and release the connections."""
        listener, self._listener = self._listener, None
        if listener is not None and listener is not gevent.getcurrent():
            listener.kill(block=True, timeout=2.0)

    # -- lifetime ---------------------------------------------------------------

    def initialize(self) -> None:
        if self._initialized:
            return
        self._initialized = True
        if not self.write_only:
            self._listener = gevent.spawn(self.listen, self.handle_raw)
        self.logger.info("%s queue manager ready on channel %r (host %s)",
                         self.name, self.channel, self.host_id)

    # -- outgoing -----------------------------------------------------------------

    def _publish(self, message: dict) -> None:
        self.publish_text(self.json.dumps(message))

    def emit(self, event: str, data: Any = None, namespace: str | None = None,
             room: Any = None, skip_sid: Any = None, callback: Callable | None = None,
             to: Any = None, ignore_queue: bool = False, **kwargs: Any) -> None:
        """Emit here and on every server of the channel (python-socketio's Manager.emit)."""
        room = to or room
        namespace = namespace or "/"
        if ignore_queue:
            if self.server is not None:
                self.server.emit(event, data, to=room, skip_sid=skip_sid, namespace=namespace,
                                 callback=callback, ignore_queue=True)
            return
        remote_callback = None
        if callback is not None:
            if self.server is None:
                raise RuntimeError("Callbacks can only be issued from the context of a server.")
            if room is None:
                raise ValueError("Cannot use callback without a room set.")
            ack_id = self._keep_callback(callback)
            remote_callback = [room, namespace, ack_id]
        args = list(data) if isinstance(data, tuple) else [data]
        binary = has_binary(args)
        if binary:
            structure, attachments = split_binary(args)
            args = [structure, *[base64.b64encode(a).decode("ascii") for a in attachments]]
        message = {"method": "emit", "event": event, "data": args, "binary": binary,
                   "namespace": namespace, "room": room, "skip_sid": skip_sid,
                   "callback": remote_callback, "host_id": self.host_id}
        # this server first (python-socketio >= 5.9 does the same), then the others
        if self.server is not None:
            local_callback = None if remote_callback is None else \
                self._answerer(self.host_id, *remote_callback)
            self.server.emit(event, data, to=room, skip_sid=skip_sid, namespace=namespace,
                             callback=local_callback, ignore_queue=True)
        self._publish(message)

    def _keep_callback(self, callback: Callable) -> int:
        ack_id = next(self._ids)
        self._callbacks[ack_id] = callback
        while len(self._callbacks) > MAX_PENDING_CALLBACKS:
            self._callbacks.popitem(last=False)
        return ack_id

    def can_disconnect(self, sid: str, namespace: str | None) -> bool:
        """True when sid is here; otherwise asks the other servers and returns False."""
        if self.is_connected(sid, namespace or "/"):
            return True
        self._publish({"method": "disconnect", "sid": sid, "namespace": namespace or "/",
                       "host_id": self.host_id})
        return False

    def disconnect(self, sid: str, namespace: str | None = None, **kwargs: Any) -> None:
        if kwargs.get("ignore_queue"):
            if self.server is not None:
                self.server.disconnect(sid, namespace=namespace, ignore_queue=True)
            return
        message = {"method": "disconnect", "sid": sid, "namespace": namespace or "/",
                   "host_id": self.host_id}
        if self.server is not None:
            self._handle_disconnect(message)
        self._publish(message)

    def enter_room(self, sid: str, namespace: str | None, room: Any, eio_sid: Any = None) -> None:
        if self.server is not None and self.is_connected(sid, namespace or "/"):
            self.server.enter_room(sid, room, namespace=namespace, ignore_queue=True)
            return
        self._publish({"method": "enter_room", "sid": sid, "room": room,
                       "namespace": namespace or "/", "host_id": self.host_id})

    def leave_room(self, sid: str, namespace: str | None, room: Any) -> None:
        if self.server is not None and self.is_connected(sid, namespace or "/"):
            self.server.leave_room(sid, room, namespace=namespace, ignore_queue=True)
            return
        self._publish({"method": "leave_room", "sid": sid, "room": room,
                       "namespace": namespace or "/", "host_id": self.host_id})

    def close_room(self, room: Any, namespace: str | None = None) -> None:
        message = {"method": "close_room", "room": room, "namespace": namespace or "/",
                   "host_id": self.host_id}
        if self.server is not None:
            self._handle_close_room(message)
        self._publish(message)

    def is_connected(self, sid: str, namespace: str) -> bool:
        if self.server is None:
            return False
        return super().is_connected(sid, namespace)

    # -- incoming -------------------------------------------------------------------

    def handle_raw(self, raw: Any) -> None:
        """One message from the queue: decoded, checked, applied; bad ones logged."""
        try:
            if isinstance(raw, dict):
                message = raw
            else:
                if isinstance(raw, (bytes, bytearray)):
                    raw = raw.decode("utf-8")
                message = self.json.loads(raw)
            if not isinstance(message, dict):
                raise BadMessage("not a JSON object")
            method = message.get("method")
            if method not in _METHODS:
                raise BadMessage(f"unknown method {method!r}")
            if method == "callback":
                if message.get("host_id") == self.host_id:
                    self._handle_callback(message)
                return
            if message.get("host_id") == self.host_id or self.server is None:
                return   # our own message, already applied here
            getattr(self, "_handle_" + method)(message)
        except (BadMessage, ValueError, TypeError, UnicodeDecodeError, KeyError) as exc:
            self.logger.warning("%s queue: skipping a bad message on %r (%s): %.200r",
                                self.name, self.channel, exc, raw)
        except Exception:
            self.logger.exception("%s queue: error applying a message on %r",
                                  self.name, self.channel)

    def _handle_emit(self, message: dict) -> None:
        event = _check(message, "event", (str,), optional=False)
        namespace = _check(message, "namespace", (str,)) or "/"
        data = _check(message, "data", (list,), optional=False)
        room = _check_room(message, "room")
        skip_sid = _check_room(message, "skip_sid")
        if message.get("binary"):
            if not data or not all(isinstance(a, str) for a in data[1:]):
                raise BadMessage("binary data without base64 attachments")
            attachments = [base64.b64decode(a, validate=True) for a in data[1:]]
            data = join_binary(data[0], attachments)
            if not isinstance(data, list):
                raise BadMessage("binary data is not an argument list")
        callback = None
        remote = message.get("callback")
        if remote is not None:
            if not (isinstance(remote, list) and len(remote) == 3):
                raise BadMessage("callback is not [sid, namespace, id]")
            callback = self._answerer(message.get("host_id"), *remote)
        # python-socketio: one argument is the data, several a tuple
        payload = data[0] if len(data) == 1 else tuple(data)
        self.server.emit(event, payload, to=room, skip_sid=skip_sid, namespace=namespace,
                         callback=callback, ignore_queue=True)

    def _answerer(self, host_id: Any, sid: Any, namespace: Any, ack_id: Any) -> Callable:
        def answer(*args: Any) -> None:
            if host_id == self.host_id:
                self._run_callback(ack_id, list(args))
            else:
                self._publish({"method": "callback", "host_id": host_id, "sid": sid,
                               "namespace": namespace, "id": ack_id, "args": list(args)})
        return answer

    def _handle_callback(self, message: dict) -> None:
        args = _check(message, "args", (list,), optional=False)
        self._run_callback(message.get("id"), args)

    def _run_callback(self, ack_id: Any, args: list) -> None:
        callback = self._callbacks.pop(ack_id, None) if isinstance(ack_id, int) else None
        if callback is not None:
            callback(*args)

    def _handle_disconnect(self, message: dict) -> None:
        sid = _check(message, "sid", (str,), optional=False)
        namespace = _check(message, "namespace", (str,)) or "/"
        self.server.disconnect(sid, namespace=namespace, ignore_queue=True)

    def _handle_enter_room(self, message: dict) -> None:
        sid = _check(message, "sid", (str,), optional=False)
        namespace = _check(message, "namespace", (str,)) or "/"
        room = _check(message, "room", (str, int), optional=False)
        if self.is_connected(sid, namespace):
            self.server.enter_room(sid, room, namespace=namespace, ignore_queue=True)

    def _handle_leave_room(self, message: dict) -> None:
        sid = _check(message, "sid", (str,), optional=False)
        namespace = _check(message, "namespace", (str,)) or "/"
        room = _check(message, "room", (str, int), optional=False)
        if self.is_connected(sid, namespace):
            self.server.leave_room(sid, room, namespace=namespace, ignore_queue=True)

    def _handle_close_room(self, message: dict) -> None:
        room = _check(message, "room", (str, int), optional=False)
        namespace = _check(message, "namespace", (str,)) or "/"
        self.server.close_room(room, namespace=namespace, ignore_queue=True)


def retry_delays(first: float = 0.5, cap: float = 30.0):
    """Back-off between reconnection attempts: first, doubled up to cap."""
    delay = first
    while True:
        yield delay
        delay = min(delay * 2, cap)

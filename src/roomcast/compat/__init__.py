"""A python-socketio compatible server: ``import roomcast.compat as socketio``.

The server side of python-socketio 5.x (sync API, gevent) on top of roomcast's
native Socket.IO server, with python-socketio's message queues (``RedisManager``,
``KombuManager``) in their own wire format. Client classes, async servers and
the Kafka / ZeroMQ managers are not provided; asking for one says so.

Where it knowingly differs from python-socketio:

- a namespace nobody handles is refused with Node's ``{"message": "Invalid
  namespace"}`` (``"Unable to connect"`` only for ``/`` when it is not served);
- a refused Origin gets HTTP 403 at the handshake (later requests need the
  session id anyway);
- ``ping_interval=(interval, grace)`` adds the grace to the ping timeout the
  client is told; callables in a ``cookie`` dict are evaluated once;
- ``json=`` shapes what is sent (values JSON does not know go through its
  ``dumps``) and is not process-wide; incoming packets use the standard json;
- a connect handler that raises anything but ConnectionRefusedError refuses the
  connection (and the error is logged) instead of leaving the client waiting;
- emitting a reserved event name (``connect``, ``disconnect``...) raises
  ValueError;
- ``shutdown()`` also disconnects the clients (reason ``server disconnect``),
  where python-engineio only stops its background task;
- the queue managers need no monkey patching; a server publishes from a
  background greenlet; a write-only manager's ``disconnect()`` works; bad queue
  messages are logged as warnings (see managers.py);
- ``instrument()`` reports a broadcast as one ``event_sent``, not one per
  recipient (see roomcast.admin);
- a custom ``serializer`` (a Packet class) raises ValueError: ``"default"``
  (JSON) and ``"msgpack"`` are the serializers roomcast speaks;
- ``monitor_clients=False`` is ignored: clients that stop answering pings are
  always closed; options python-engineio does not know are ignored with a
  logged warning;
- the form a ``connect``/``disconnect`` handler is called with is read from its
  own signature (a ``functools.wraps`` wrapper taking ``*args`` gets
  python-socketio's retry on TypeError): the legacy ``connect(sid, environ)``
  is also used when the client sent auth (python-socketio then fails with
  TypeError), and a TypeError raised inside a handler whose signature fits is
  not retried with fewer arguments.
"""
from __future__ import annotations

from typing import Any

from . import exceptions
from .middleware import Middleware, WSGIApp
from .namespace import Namespace
from .managers import PubSubManager
from .server import Manager, Server

__all__ = ["Server", "Namespace", "WSGIApp", "Middleware", "Manager", "PubSubManager",
           "RedisManager", "KombuManager", "exceptions"]

_LAZY = {   # backends whose client library is an optional dependency
    "RedisManager": ".managers_redis",
    "KombuManager": ".managers_kombu",
}

_NOT_PROVIDED = {
    "Client": "use the python-socketio package for clients",
    "SimpleClient": "use the python-socketio package for clients",
    "ClientNamespace": "use the python-socketio package for clients",
    "AsyncClient": "use the python-socketio package for clients",
    "AsyncSimpleClient": "use the python-socketio package for clients",
    "AsyncClientNamespace": "use the python-socketio package for clients",
    "AsyncServer": "roomcast runs on gevent: use Server",
    "AsyncNamespace": "roomcast runs on gevent: use Namespace",
    "AsyncManager": "roomcast runs on gevent: use Server",
    "ASGIApp": "roomcast runs on gevent: use WSGIApp",
    "get_tornado_handler": "roomcast runs on gevent: use WSGIApp",
    "AsyncRedisManager": "roomcast runs on gevent: use RedisManager",
    "KafkaManager": "use RedisManager or KombuManager (Kafka is not supported)",
    "ZmqManager": "use RedisManager or KombuManager (ZeroMQ is not supported)",
    "AsyncAioPikaManager": "roomcast runs on gevent: use KombuManager",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        import importlib
        return getattr(importlib.import_module(module, __name__), name)
    why = _NOT_PROVIDED.get(name)
    if why is not None:
        raise AttributeError(f"roomcast.compat does not provide {name}: {why}")
    raise AttributeError(f"module 'roomcast.compat' has no attribute {name!r}")

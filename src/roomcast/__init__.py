"""roomcast: a Socket.IO v5 / Engine.IO v4 server for gevent apps.

The public names are imported lazily so that the sans-IO modules
(codecs, room index) can be imported and tested without gevent.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "Server": "roomcast.server",
    "Namespace": "roomcast.namespace",
    "ParentNamespace": "roomcast.namespace",
    "ConnectError": "roomcast.errors",
    "DisconnectedError": "roomcast.errors",
    "Socket": "roomcast.socket",
    "BroadcastOperator": "roomcast.operators",
    "RemoteSocket": "roomcast.operators",
    "Adapter": "roomcast.adapter",
    "InMemoryAdapter": "roomcast.adapter",
    "BroadcastOptions": "roomcast.adapter",
    "WSGIApp": "roomcast.wsgi",
    "EngineServer": "roomcast.engine.server",
    "Emitter": "roomcast.emitter",
    "StreamsEmitter": "roomcast.streams_emitter",
    "USING_EXTENSIONS": "roomcast._speedups",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:
    # The same names for type checkers, which do not run __getattr__ (keep in step with _LAZY).
    from roomcast._speedups import USING_EXTENSIONS as USING_EXTENSIONS
    from roomcast.adapter import Adapter as Adapter
    from roomcast.adapter import BroadcastOptions as BroadcastOptions
    from roomcast.adapter import InMemoryAdapter as InMemoryAdapter
    from roomcast.emitter import Emitter as Emitter
    from roomcast.engine.server import EngineServer as EngineServer
    from roomcast.errors import ConnectError as ConnectError
    from roomcast.errors import DisconnectedError as DisconnectedError
    from roomcast.namespace import Namespace as Namespace
    from roomcast.namespace import ParentNamespace as ParentNamespace
    from roomcast.operators import BroadcastOperator as BroadcastOperator
    from roomcast.operators import RemoteSocket as RemoteSocket
    from roomcast.server import Server as Server
    from roomcast.streams_emitter import StreamsEmitter as StreamsEmitter
    from roomcast.socket import Socket as Socket
    from roomcast.wsgi import WSGIApp as WSGIApp


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'roomcast' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)

"""roomcast: a Socket.IO v5 / Engine.IO v4 server for gevent apps.

The public names are imported lazily so that the sans-IO modules
(codecs, room index) can be imported and tested without gevent.
"""
from __future__ import annotations

import importlib
from typing import Any

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
    "USING_EXTENSIONS": "roomcast._speedups",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'roomcast' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)

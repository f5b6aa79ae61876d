"""Flask-SocketIO's class-based namespaces: ``on_<event>`` methods in the request context."""
from __future__ import annotations

from typing import Any, Callable

from roomcast.compat import Namespace as _CompatNamespace


class Namespace(_CompatNamespace):
    """Subclass it and register it with ``socketio.on_namespace(MyNamespace("/chat"))``."""

    def __init__(self, namespace: str | None = None) -> None:
        super().__init__(namespace)
        self.socketio: Any = None

    def _set_socketio(self, socketio: Any) -> None:
        self.socketio = socketio

    def trigger_event(self, event: str, *args: Any) -> Any:
        handler = getattr(self, "on_" + (event or ""), None)
        if handler is None:
            return None   # no such method: the event is ignored
        try:
            return self.socketio._handle_event(handler, event, self.namespace, *args)
        except TypeError:
            if event != "disconnect":
                raise
            # the older on_disconnect() without the reason
            return self.socketio._handle_event(handler, event, self.namespace, *args[:-1])

    def emit(self, event: str, data: Any = None, room: Any = None, include_self: bool = True,
             namespace: str | None = None, callback: Callable | None = None) -> None:
        return self.socketio.emit(event, data, room=room, include_self=include_self,
                                  namespace=namespace or self.namespace, callback=callback)

    def send(self, data: Any, room: Any = None, include_self: bool = True,
             namespace: str | None = None, callback: Callable | None = None) -> None:
        return self.socketio.send(data, room=room, include_self=include_self,
                                  namespace=namespace or self.namespace, callback=callback)

    def close_room(self, room: Any, namespace: str | None = None) -> None:
        return self.socketio.close_room(room=room, namespace=namespace or self.namespace)

"""Class-based namespaces in python-socketio's style: ``on_<event>`` methods.

A Namespace is registered with ``Server.register_namespace``; the server
then routes the namespace's events to ``trigger_event``, and the helper
methods below default their ``namespace`` argument to the class's own.
"""
from __future__ import annotations

from typing import Any, Callable

from ._calls import call_flexibly


class Namespace:
    """Base class for class-based namespaces (``socketio.Namespace``)."""

    def __init__(self, namespace: str | None = None) -> None:
        self.namespace = namespace or "/"
        self.server: Any = None

    def _set_server(self, server: Any) -> None:
        self.server = server

    def is_asyncio_based(self) -> bool:
        return False

    def trigger_event(self, event: str, *args: Any) -> Any:
        """Call ``on_<event>`` if the class has it (override for custom routing).

        ``connect`` and ``disconnect`` get their newer, longer argument lists
        only when the method accepts them, like python-socketio's legacy
        two-argument ``on_connect(sid, environ)`` and ``on_disconnect(sid)``.
        """
        handler = getattr(self, "on_" + (event or ""), None)
        if handler is None:
            return None
        if event in ("connect", "disconnect") and args:
            return call_flexibly(handler, args, args[:-1])
        return handler(*args)

    def emit(self, event: str, data: Any = None, to: Any = None, room: Any = None,
             skip_sid: Any = None, namespace: str | None = None,
             callback: Callable | None = None, ignore_queue: bool = False) -> None:
        return self.server.emit(event, data=data, to=to, room=room, skip_sid=skip_sid,
                                namespace=namespace or self.namespace,
                                callback=callback, ignore_queue=ignore_queue)

    def send(self, data: Any, to: Any = None, room: Any = None, skip_sid: Any = None,
             namespace: str | None = None, callback: Callable | None = None,
             ignore_queue: bool = False) -> None:
        return self.server.send(data, to=to, room=room, skip_sid=skip_sid,
                                namespace=namespace or self.namespace,
                                callback=callback, ignore_queue=ignore_queue)

    def call(self, event: str, data: Any = None, to: str | None = None,
             sid: str | None = None, namespace: str | None = None,
             timeout: float | None = None, ignore_queue: bool = False) -> Any:
        return self.server.call(event, data=data, to=to, sid=sid,
                                namespace=namespace or self.namespace,
                                timeout=timeout, ignore_queue=ignore_queue)

    def enter_room(self, sid: str, room: Any, namespace: str | None = None) -> None:
        return self.server.enter_room(sid, room, namespace=namespace or self.namespace)

    def leave_room(self, sid: str, room: Any, namespace: str | None = None) -> None:
        return self.server.leave_room(sid, room, namespace=namespace or self.namespace)

    def close_room(self, room: Any, namespace: str | None = None) -> None:
        return self.server.close_room(room, namespace=namespace or self.namespace)

    def rooms(self, sid: str, namespace: str | None = None) -> list:
        return self.server.rooms(sid, namespace=namespace or self.namespace)

    def get_session(self, sid: str, namespace: str | None = None) -> dict:
        return self.server.get_session(sid, namespace=namespace or self.namespace)

    def save_session(self, sid: str, session: dict, namespace: str | None = None) -> None:
        return self.server.save_session(sid, session, namespace=namespace or self.namespace)

    def session(self, sid: str, namespace: str | None = None):
        return self.server.session(sid, namespace=namespace or self.namespace)

    def disconnect(self, sid: str, namespace: str | None = None) -> None:
        return self.server.disconnect(sid, namespace=namespace or self.namespace)

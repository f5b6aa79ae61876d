"""EventEmitter: the one listener registry of roomcast (Node's EventEmitter, in small).

Engine sockets and the engine server, adapters, namespaces, Socket.IO sockets and
the Flask test client's connection all keep their listeners here. Sans-IO: no gevent.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, TypeVar, overload

from roomcast import metrics

log = logging.getLogger("roomcast")

Handler = TypeVar("Handler", bound=Callable[..., Any])   # a listener, returned as is


class EventEmitter:
    """Listeners by event, called in the order they were added.

    A subclass on a hot path may test ``self._listeners.get(event)`` before building
    the arguments of an ``emit`` nobody listens to.

    An event's only listener is kept as it is, a list only once there are several:
    every connection has a few emitters with one listener per event (the engine
    socket's "message" and "close", an app's handlers), and each list would be one
    more object for every full collection of the cyclic GC to walk.
    """

    # a slot, so that a subclass with slots (EngineSocket) can do without a __dict__
    __slots__ = ("_listeners",)

    def __init__(self) -> None:
        self._listeners: dict[Any, Callable | list[Callable]] = {}

    def _add_listener(self, event: Any, fn: Callable) -> None:
        listeners = self._listeners
        current = listeners.get(event)
        if current is None:
            listeners[event] = fn
        elif type(current) is list:
            current.append(fn)
        else:
            listeners[event] = [current, fn]

    @overload
    def on(self, event: Any, handler: None = None) -> Callable[[Handler], Handler]: ...
    @overload
    def on(self, event: Any, handler: Handler) -> Handler: ...

    def on(self, event: Any, handler: Callable | None = None) -> Any:
        """Add a listener; without a handler, a decorator."""
        if handler is not None:
            self._add_listener(event, handler)
            return handler

        def register(fn: Callable) -> Callable:
            self._add_listener(event, fn)
            return fn
        return register

    @overload
    def once(self, event: Any, handler: None = None) -> Callable[[Handler], Handler]: ...
    @overload
    def once(self, event: Any, handler: Handler) -> Handler: ...

    def once(self, event: Any, handler: Callable | None = None) -> Any:
        """Add a listener that is removed after its first call; without a handler, a decorator."""
        def register(fn: Callable) -> Callable:
            def wrapper(*args: Any) -> Any:
                self.off(event, wrapper)
                return fn(*args)
            wrapper.listener = fn   # type: ignore[attr-defined]
            self._add_listener(event, wrapper)
            return fn
        return register(handler) if handler is not None else register

    def off(self, event: Any, handler: Callable | None = None) -> None:
        """Remove the first listener equal to handler (a bound method compares equal to
        the same method bound again), or a once() of it; without a handler, all of them."""
        if handler is None:
            self._listeners.pop(event, None)
            return
        handlers = self._listeners.get(event)
        if handlers is None:
            return
        if type(handlers) is not list:
            if handlers == handler or getattr(handlers, "listener", None) == handler:
                del self._listeners[event]
            return
        for registered in handlers:
            if registered == handler or getattr(registered, "listener", None) == handler:
                handlers.remove(registered)
                break
        if not handlers:
            del self._listeners[event]

    def listeners(self, event: Any) -> list[Callable]:
        handlers = self._listeners.get(event)
        if handlers is None:
            return []
        return list(handlers) if type(handlers) is list else [handlers]

    def emit(self, event: Any, *args: Any) -> None:
        """Call every listener of event with args, each one even when another raised."""
        handlers = self._listeners.get(event)
        if handlers is None:
            return
        if type(handlers) is not list:
            try:
                handlers(*args)
            except Exception:
                self.listener_failed(event)
            return
        # a copy: a listener may add or remove listeners (once() does)
        for handler in list(handlers):
            try:
                handler(*args)
            except Exception:
                self.listener_failed(event)

    def listener_failed(self, event: Any) -> None:
        """Called in the ``except`` block of a listener that raised: counted and logged,
        so a listener's bug does not break the caller. A subclass may log it its own way,
        or ``raise`` it again to stop the emit there."""
        if metrics.active is not None:
            metrics.active.handler_errors += 1
        log.exception("error in %r listener", event)

"""Dispatcher: runs user code (event handlers, ack callbacks) off the event loop, in order.

WebSocket data is read by event-loop callbacks, which must not block; whatever may
block (user code) is handed to a Dispatcher. Work waits in one FIFO queue, so the
events of a socket start in the order they arrived.

- A worker greenlet exists only while there is work, and takes one item after the
  other: a loop pass that read 50 events costs one or two greenlets, not 50.
- An item that blocks (the worker switches away mid-item) never stalls the others:
  whenever a worker starts an item while more are waiting and no other worker will
  look at the queue, it first schedules a standby worker, which runs as soon as the
  current one yields and takes over the queue. As in Node, a handler that waits
  (an ``await`` there, blocking I/O here) lets the next events start meanwhile.
- ``serial=True`` (``async_handlers=False``): items with the same key never run at
  the same time; one that arrives while its key's previous item is still running
  (blocked) waits until that one returns. Other keys go on.
"""
from __future__ import annotations

import logging
from collections import deque
from typing import Any, Callable, Hashable

import gevent

from roomcast import metrics

log = logging.getLogger("roomcast")


def describe(fn: Any) -> str:
    """A callable's name for logs: module.qualname of the user's function."""
    fn = getattr(fn, "__func__", fn)
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if name is None:
        return repr(fn)
    module = getattr(fn, "__module__", None)
    return f"{module}.{name}" if module else name


def run_logged(fn: Callable, *args: Any) -> None:
    """Call user code; an exception is logged with the function's name, never raised."""
    try:
        fn(*args)
    except Exception:
        if metrics.active is not None:
            metrics.active.handler_errors += 1
        log.exception("error in %s", describe(fn))


class Dispatcher:
    """One per Server: see the module docstring."""

    def __init__(self, serial: bool = False) -> None:
        self._queue: deque = deque()     # (key, fn, args)
        self._looking = 0                # workers that will look at the queue before they block or end
        self._serial = serial
        self._running: dict[Hashable, deque] = {}   # serial: key -> items waiting for it

    def submit(self, key: Hashable, fn: Callable, *args: Any) -> None:
        """Run ``fn(*args)`` in a worker greenlet, after everything submitted before."""
        self._queue.append((key, fn, args))
        if not self._looking:
            self._start_worker()

    def _start_worker(self) -> None:
        self._looking += 1
        gevent.spawn_raw(self._work)

    def _work(self) -> None:
        queue = self._queue
        try:
            while queue:
                key, fn, args = queue.popleft()
                if self._serial and key is not None:
                    waiting = self._running.get(key)
                    if waiting is not None:   # its previous item still runs: after it
                        waiting.append((key, fn, args))
                        continue
                    self._running[key] = deque()
                self._looking -= 1
                if queue and not self._looking:
                    self._start_worker()      # the standby: takes over if this item blocks
                try:
                    run_logged(fn, *args)
                finally:
                    self._looking += 1
                    if self._serial and key is not None:
                        queue.extendleft(reversed(self._running.pop(key)))
        finally:
            self._looking -= 1
            if queue and not self._looking:   # left by an exception that is not an Exception
                self._start_worker()

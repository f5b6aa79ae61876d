"""Dispatcher: runs user code (event handlers, ack callbacks) off the event loop, in order.

WebSocket data is read by event-loop callbacks, which must not block; whatever may
block (user code) is handed to a Dispatcher, and items start in the order they
were submitted.

- From the event loop (the common case: a WebSocket event was just decoded), an
  item runs at once in an idle worker greenlet: the loop switches to the worker,
  which hands control back when the item returns or blocks. Nothing waits in a
  queue, so what an event allocates dies young instead of piling up through a
  whole loop pass (a backlog of thousands of live events is what made the cyclic
  GC's full collections the largest cost of a chat relay), and the worker is
  reused for the next item. A worker whose item blocks is resumed by the loop as
  usual and returns to the idle pool when done; meanwhile the next items run in
  other workers, so a blocked handler never stalls other sockets, heartbeats, or
  its own socket's next events (as in Node, where a handler that awaits lets the
  next events start).
- From any other greenlet (a long-polling request), or while earlier items still
  wait in the queue, an item is queued; queue workers exist only while there is
  work and take one item after the other. Whenever a queue worker starts an item
  while more are waiting and no other worker will look at the queue, it first
  schedules a standby worker, which takes over the queue if the item blocks.
- ``serial=True`` (``async_handlers=False``): items with the same key never run at
  the same time; one that arrives while its key's previous item is still running
  (blocked) waits until that one returns. Other keys go on.
"""
from __future__ import annotations

import logging
import sys
from collections import deque
from typing import Any, Callable, Hashable

import gevent
from greenlet import getcurrent, greenlet

from roomcast import metrics

log = logging.getLogger("roomcast")

MAX_IDLE_WORKERS = 32   # idle direct workers kept for reuse; more end when they finish


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
        self._looking = 0                # queue workers that will look at the queue before they block or end
        self._serial = serial
        self._running: dict[Hashable, deque] = {}   # serial: key -> items waiting for it
        self._idle: list = []            # direct workers waiting for an item
        self._hub: Any = None            # the event loop's greenlet, known at first use

    def submit(self, key: Hashable, fn: Callable, *args: Any) -> None:
        """Run ``fn(*args)`` in a worker greenlet, after everything submitted before."""
        hub = self._hub
        if hub is None:
            hub = self._hub = gevent.get_hub()
        if self._queue or getcurrent() is not hub:
            self._queue.append((key, fn, args))
            if not self._looking:
                self._start_worker()
            return
        if self._serial and key is not None:
            waiting = self._running.get(key)
            if waiting is not None:   # its previous item still runs: after it
                waiting.append((key, fn, args))
                return
        idle = self._idle
        worker = idle.pop() if idle else greenlet(self._direct, parent=hub)
        worker.switch(key, fn, args)   # back here when the item returned or blocked

    # -- direct workers (items submitted from the event loop) ---------------------

    def _direct(self, key: Hashable, fn: Callable, args: tuple) -> None:
        hub = self._hub
        me = getcurrent()
        idle = self._idle
        while True:
            self._run(key, fn, args)
            if len(idle) >= MAX_IDLE_WORKERS:
                return   # ends: switches to the hub, like an idle worker would
            idle.append(me)
            item = hub.switch()   # parked until submit() switches here with an item
            if type(item) is not tuple or len(item) != 3:
                # woken by something else (nothing of roomcast's does): stay unusable
                if me in idle:
                    idle.remove(me)
                return
            key, fn, args = item

    def _run(self, key: Hashable, fn: Callable, args: tuple) -> None:
        serial = self._serial and key is not None
        if serial:
            self._running[key] = deque()
        try:
            run_logged(fn, *args)
        except BaseException:   # SystemExit, a gevent.Timeout nobody caught...: as gevent does
            self._hub.handle_error(getcurrent(), *sys.exc_info())
        finally:
            if serial:
                waiting = self._running.pop(key)
                if waiting:   # the key's next items go first, through the queue
                    self._queue.extendleft(reversed(waiting))
                    if not self._looking:
                        self._start_worker()

    # -- queue workers --------------------------------------------------------------

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

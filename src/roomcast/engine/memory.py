"""Giving the heap memory of closed connections back to the OS.

Under connection churn the server's Python objects return to baseline, but glibc's
malloc keeps the freed pages (greenlet stacks and socket buffers of a thousand
connections, in many sizes) and RSS creeps up round after round. ``malloc_trim(0)``
hands them back; it takes about 1-15 ms, so it runs at most once per
``MIN_INTERVAL`` seconds, ``DELAY`` seconds after connections closed (closes that
come together share one trim). Elsewhere than glibc this does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import time

import gevent

DELAY = 1.0
MIN_INTERVAL = 2.0


def _load_malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_malloc_trim = _load_malloc_trim()


def release_free_memory() -> bool:
    """Return freed heap pages to the OS now; False where malloc_trim is missing."""
    if _malloc_trim is None:
        return False
    _malloc_trim(0)
    return True


class Trimmer:
    """Schedules release_free_memory() after connections close (see the module doc)."""

    def __init__(self) -> None:
        self._timer = None
        self._last = 0.0

    def connection_closed(self) -> None:
        if self._timer is not None or _malloc_trim is None:
            return
        wait = max(DELAY, MIN_INTERVAL - (time.monotonic() - self._last))
        self._timer = gevent.get_hub().loop.timer(wait)
        self._timer.start(self._run)

    def _run(self) -> None:
        # runs in the hub: one C call, no switch
        self._timer.close()
        self._timer = None
        self._last = time.monotonic()
        release_free_memory()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer.close()
            self._timer = None

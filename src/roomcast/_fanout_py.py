"""The fan-out loop, pure-Python twin of ext/_fanout_c.pyx (same calls, same results).

ConnTable gives every Engine.IO connection a slot (lowest free first, so the
room bitmaps stay short) and keeps, per slot, what the loop needs: the plain
WebSocket fd (-1 when writes must go through the connection object) and the
busy flag (something is queued or being written, so a direct write would
overtake it). fanout() writes a broadcast's finished frames straight to every
idle WebSocket and hands the rest to the connection objects, which only queue.
"""
from __future__ import annotations

import os
from heapq import heappop, heappush
from collections.abc import Iterable
from typing import Any

_FD_MAX = (1 << 31) - 1  # a C int, as in the compiled table


def _check_slot_arg(slot: object) -> None:
    if not isinstance(slot, int):
        raise TypeError(f"slot must be an int, not {type(slot).__name__}")


class ConnTable:
    """slot -> (connection, fd, busy); one per EngineServer."""

    __slots__ = ("_conns", "_fds", "_busy", "_free", "_used")

    def __init__(self) -> None:
        self._conns: list = []       # slot -> connection object, None when free
        self._fds: list[int] = []
        self._busy: list[bool] = []
        self._free: list[int] = []   # min-heap of freed slots below len(_conns)
        self._used = 0

    def _index(self, slot: object) -> int:
        _check_slot_arg(slot)
        if slot < 0 or slot >= len(self._conns) or self._conns[slot] is None:
            raise KeyError(slot)
        return slot

    def add(self, conn: Any) -> int:
        """Store ``conn`` in the lowest free slot (fd -1, not busy) and return the slot."""
        if conn is None:
            raise ValueError("conn must not be None")
        if self._free:
            slot = heappop(self._free)
            self._conns[slot] = conn
        else:
            slot = len(self._conns)
            self._conns.append(conn)
            self._fds.append(-1)
            self._busy.append(False)
        self._used += 1
        return slot

    def remove(self, slot: int) -> None:
        self._index(slot)
        self._conns[slot] = None
        self._fds[slot] = -1
        self._busy[slot] = False
        heappush(self._free, slot)
        self._used -= 1

    def conn(self, slot: int) -> Any:
        return self._conns[self._index(slot)]

    def set_fd(self, slot: int, fd: int) -> None:
        """fd >= 0: a plain WebSocket that fanout() may write to directly (the socket
        must be non-blocking, as gevent's are); -1: it may not."""
        self._index(slot)
        if not isinstance(fd, int) or fd < -1 or fd > _FD_MAX:
            raise ValueError(f"fd must be an int from -1 to {_FD_MAX}, not {fd!r}")
        self._fds[slot] = fd

    def set_busy(self, slot: int, busy: bool) -> None:
        self._busy[self._index(slot)] = bool(busy)

    def is_busy(self, slot: int) -> bool:
        return self._busy[self._index(slot)]

    def __len__(self) -> int:
        return self._used


def fanout(selection: Iterable[int], table: ConnTable, packet: Any, volatile: bool = False) -> int:
    """Deliver ``packet`` to every connection in ``selection``, in slot order.

    Busy connections get ``conn.push(packet)`` (dropped when volatile); idle plain
    WebSockets get ``packet.ws`` written to their fd without blocking, and whatever
    did not fit (partial write, EAGAIN, any error) goes to ``conn.push_raw(rest)``,
    whose writer reports errors; the others get ``conn.push(packet, volatile)``.
    Returns the number of connections that were sent or queued the packet.
    """
    ws = packet.ws
    if not isinstance(ws, bytes):
        raise TypeError(f"packet.ws must be bytes, not {type(ws).__name__}")
    volatile = bool(volatile)
    size = len(ws)
    conns, fds, busy = table._conns, table._fds, table._busy
    delivered = 0
    for slot in selection:
        if slot < 0 or slot >= len(conns):
            continue
        conn = conns[slot]
        if conn is None:
            continue
        if busy[slot]:
            if volatile:
                continue
            conn.push(packet)
        elif fds[slot] >= 0:
            try:
                written = os.write(fds[slot], ws)
            except OSError:  # BlockingIOError (EAGAIN) included: the writer retries
                written = 0
            if written != size:
                conn.push_raw(ws[written:] if written else ws)
        else:
            conn.push(packet, volatile)
        delivered += 1
    return delivered

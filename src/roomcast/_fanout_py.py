"""The fan-out loop, pure-Python twin of ext/_fanout_c.pyx (same calls, same results).

ConnTable gives every Engine.IO connection a slot (lowest free first, so the
room bitmaps stay short) and keeps, per slot, what the loop needs: the plain
WebSocket fd (-1 when writes must go through the connection object) and the
busy flag (something is queued or being written, so a direct write would
overtake it). fanout() writes a broadcast's finished frames straight to every
idle WebSocket and hands the rest to the connection objects, which only queue.

Coalescing: everything written to one connection in one pass of the event loop
should leave in one send(). A *pass* runs from one flush() to the next; at the
first write of a pass the table tells its owner (the engine), through the flush
hook, that flush() must run before the loop waits, so a pass is one turn of the
loop. The first write of a pass to an idle slot is sent at once (at low load
nothing waits); a second write to the same slot in the same pass is held back,
and from then on the rest of the pass holds back every write (a second write
means the loop is busy). Held-back bytes go out at flush(), one send() per slot.
If some slot was written more than once in a pass (sent at once and then held
back, or held back twice), the next pass holds back from its first write
(coalescing pays); otherwise it starts with direct writes again. A slot holding
HOLD_MAX bytes sends them at once.
"""
from __future__ import annotations

import os
from heapq import heappop, heappush
from collections.abc import Callable, Iterable
from typing import Any

_FD_MAX = (1 << 31) - 1  # a C int, as in the compiled table
HOLD_MAX = 65536         # bytes a slot holds back before they are sent at once


def _check_slot_arg(slot: object) -> None:
    if not isinstance(slot, int):
        raise TypeError(f"slot must be an int, not {type(slot).__name__}")


class ConnTable:
    """slot -> (connection, fd, busy, held-back bytes); one per EngineServer."""

    __slots__ = ("_conns", "_fds", "_busy", "_free", "_used", "_held", "_stamp", "_listed",
                 "_holding", "_pass", "_coalescing", "_repeated", "_flush_hook",
                 "_flush_scheduled")

    def __init__(self) -> None:
        self._conns: list = []       # slot -> connection object, None when free
        self._fds: list[int] = []
        self._busy: list[bool] = []
        self._held: list[bytearray | None] = []   # bytes held back until flush()
        self._stamp: list[int] = []  # the pass of the slot's last direct write
        self._listed: list[bool] = []
        self._holding: list[int] = []   # slots holding bytes, in the order they started
        self._free: list[int] = []   # min-heap of freed slots below len(_conns)
        self._used = 0
        self._pass = 1
        self._coalescing = False
        self._repeated = False      # this pass wrote some slot more than once
        self._flush_hook: Callable[[], None] | None = None
        self._flush_scheduled = False

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
            self._held.append(None)
            self._stamp.append(0)
            self._listed.append(False)
        self._used += 1
        return slot

    def remove(self, slot: int) -> None:
        self._index(slot)
        self._conns[slot] = None
        self._fds[slot] = -1
        self._busy[slot] = False
        self._held[slot] = None
        heappush(self._free, slot)
        self._used -= 1

    def conn(self, slot: int) -> Any:
        return self._conns[self._index(slot)]

    def set_fd(self, slot: int, fd: int) -> None:
        """fd >= 0: a plain WebSocket that fanout() may write to directly (the socket
        must be non-blocking, as gevent's are); -1: it may not. Bytes held back for the
        previous fd go to ``conn.push_raw()``."""
        self._index(slot)
        if not isinstance(fd, int) or fd < -1 or fd > _FD_MAX:
            raise ValueError(f"fd must be an int from -1 to {_FD_MAX}, not {fd!r}")
        held = None
        if self._fds[slot] != fd and self._held[slot]:
            # bytes held back for the old fd now take the connection's queued path
            held, self._held[slot] = bytes(self._held[slot]), None
        self._fds[slot] = fd
        if held is not None:
            self._conns[slot].push_raw(held)

    def set_busy(self, slot: int, busy: bool) -> None:
        self._busy[self._index(slot)] = bool(busy)

    def is_busy(self, slot: int) -> bool:
        return self._busy[self._index(slot)]

    def __len__(self) -> int:
        return self._used

    # -- coalescing (see the module docstring) -------------------------------------

    def set_flush_hook(self, hook: Callable[[], None] | None) -> None:
        """``hook()`` is called once a pass, at its first write; it must
        arrange for flush() to run before the event loop waits (and not call it itself)."""
        self._flush_hook = hook

    def send(self, slot: int, data: bytes) -> bool:
        """Write ``data`` to a plain, idle WebSocket slot now, or hold it back until
        flush(); what the kernel does not take goes to ``conn.push_raw(rest)``.
        False, and nothing done, when the slot is busy or has no fd."""
        self._index(slot)
        if not isinstance(data, bytes):
            raise TypeError(f"data must be bytes, not {type(data).__name__}")
        if self._busy[slot] or self._fds[slot] < 0:
            return False
        self._write(slot, self._conns[slot], data)
        return True

    def take_held(self, slot: int) -> bytes | None:
        """The slot's held-back bytes, which the caller now owns (None when none)."""
        self._index(slot)
        held = self._held[slot]
        if not held:
            return None
        self._held[slot] = None
        return bytes(held)

    def flush(self) -> int:
        """Send every slot's held-back bytes, one send() each, and start the next pass.
        Returns the number of slots written."""
        self._flush_scheduled = False
        written = 0
        i = 0
        holding = self._holding
        while i < len(holding):   # push_raw() below only queues, but re-read the length anyway
            slot = holding[i]
            i += 1
            self._listed[slot] = False
            if self._held[slot]:
                written += 1
                self._send_held(slot)
        holding.clear()
        # coalesce the next pass from its first write while it pays: some slot was
        # written more than once in this one (sent at once and held, or held twice)
        self._coalescing = self._repeated
        self._repeated = False
        self._pass += 1
        return written

    def _send_held(self, slot: int) -> None:
        """Send a slot's held-back bytes now (busy: hand them to its connection's queue)."""
        held = self._held[slot]
        if not held:
            return
        conn = self._conns[slot]
        self._held[slot] = None
        if conn is None or self._fds[slot] < 0:
            return
        data = bytes(held)
        if self._busy[slot]:
            conn.push_raw(data)
            return
        try:
            written = os.write(self._fds[slot], data)
        except OSError:  # EAGAIN included: the connection's writer retries or reports it
            written = 0
        self._stamp[slot] = self._pass
        if written != len(data):
            conn.push_raw(data[written:] if written else data)

    def _end_pass_with_flush(self) -> None:
        """Ask the owner, once a pass, to run flush() before the event loop waits."""
        if not self._flush_scheduled and self._flush_hook is not None:
            self._flush_scheduled = True
            self._flush_hook()

    def _hold(self, slot: int, data: bytes) -> None:
        held = self._held[slot]
        if held is None:
            held = self._held[slot] = bytearray()
        held += data
        if not self._listed[slot]:
            self._listed[slot] = True
            self._holding.append(slot)
        self._end_pass_with_flush()
        if len(held) >= HOLD_MAX:
            self._send_held(slot)

    def _write(self, slot: int, conn: Any, ws: bytes) -> None:
        """A plain, idle WebSocket slot: send now, or hold back until flush()."""
        if self._held[slot] or self._stamp[slot] == self._pass:
            # a second write to this slot in one pass: from now on this pass coalesces
            self._coalescing = True
            self._repeated = True
            self._hold(slot, ws)
            return
        if self._coalescing:
            self._hold(slot, ws)
            return
        self._stamp[slot] = self._pass
        self._end_pass_with_flush()   # every pass that writes ends with flush(): passes are loop passes
        try:
            written = os.write(self._fds[slot], ws)
        except OSError:  # BlockingIOError (EAGAIN) included: the writer retries
            written = 0
        if written != len(ws):
            conn.push_raw(ws[written:] if written else ws)


def fanout(selection: Iterable[int], table: ConnTable, packet: Any, volatile: bool = False) -> int:
    """Deliver ``packet`` to every connection in ``selection``, in slot order.

    Busy connections get ``conn.push(packet)`` (dropped when volatile); idle plain
    WebSockets get ``packet.ws`` written to their fd without blocking, or held back
    for flush() while writes are being coalesced, and whatever did not fit (partial
    write, EAGAIN, any error) goes to ``conn.push_raw(rest)``, whose writer reports
    errors; the others get ``conn.push(packet, volatile)``.
    Returns the number of connections that were sent or queued the packet.
    """
    ws = packet.ws
    if not isinstance(ws, bytes):
        raise TypeError(f"packet.ws must be bytes, not {type(ws).__name__}")
    volatile = bool(volatile)
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
            table._write(slot, conn, ws)
        else:
            conn.push(packet, volatile)
        delivered += 1
    return delivered

"""Per-connection send accounting: the bytes queued for one connection and not yet
taken by its socket (``max_send_buffer``), and when its socket last took any
(the write stall). Sans-IO: the session feeds it and asks it."""
from __future__ import annotations

from time import monotonic

SEND_BUFFER_FULL = "send buffer full"   # close reason: max_send_buffer passed
WRITE_TIMEOUT = "write timeout"         # close reason: no byte taken for the stall limit
DEFAULT_MAX_SEND_BUFFER = 4 * 1024 * 1024


class SendBuffer:
    __slots__ = ("limit", "queued", "last_progress")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.queued = 0
        self.last_progress = monotonic()

    def add(self, size: int) -> bool:
        """Count ``size`` more queued bytes; False once past the limit."""
        self.queued += size
        return self.limit is None or self.queued <= self.limit

    def written(self, size: int) -> None:
        """The socket took ``size`` bytes."""
        self.queued = max(0, self.queued - size)
        if size:
            self.last_progress = monotonic()

    def busy_from_now(self) -> None:
        """Something was queued on an idle connection: the stall clock starts."""
        self.last_progress = monotonic()

    def stalled_for(self) -> float:
        return monotonic() - self.last_progress

    def clear(self) -> None:
        self.queued = 0

"""Connection state recovery (Node's ``connectionStateRecovery``) on one server.

With ``roomcast.Server(connection_state_recovery=True)`` (or a dict of the options
below), every socket gets a private session id (``pid``, sent in the CONNECT answer),
and every recoverable packet (an EVENT without ack id, not volatile, sent to a room,
to everyone, or to one socket) carries an offset as its last argument. A client that
loses its connection comes back with ``{pid, offset}`` in its CONNECT packet; within
``max_disconnection_duration`` it gets back its socket id, rooms and ``data``, then
every packet it missed since that offset, in order, and ``socket.recovered`` is True.

:class:`SessionAwareAdapter` is the in-memory store (the default adapter when recovery
is on). Its memory is bounded twice: packets older than ``max_disconnection_duration``
are dropped, and so are the oldest ones beyond ``max_stored_bytes`` (encoded size,
default 64 MiB per namespace). A session whose offset was dropped is not recovered:
the client gets a new socket, as in Node when the offset is unknown.
"""
from __future__ import annotations

import collections
import itertools
import time
from typing import TYPE_CHECKING, Any

from roomcast import _speedups
from roomcast.adapter import BroadcastOptions, InMemoryAdapter

if TYPE_CHECKING:
    from roomcast.namespace import Namespace

__all__ = ["DEFAULTS", "RECOVERABLE_DISCONNECT_REASONS", "SessionAwareAdapter", "normalize_options",
           "offset_clock"]

EVENT = 2

DEFAULTS: dict[str, Any] = {
    "max_disconnection_duration": 120.0,   # seconds (Node: maxDisconnectionDuration, 2 min)
    "skip_middlewares": True,              # recovered sockets skip the connection middlewares
    "max_stored_bytes": 64 * 1024 * 1024,  # roomcast: cap of the packets kept per namespace
}

# Node's socket.ts: a session is kept for these reasons only
RECOVERABLE_DISCONNECT_REASONS = frozenset({
    "transport error", "transport close", "forced close", "ping timeout",
    "server shutting down", "forced server close"})

_PER_PACKET_OVERHEAD = 200   # bytes held per stored packet besides its encoded form (estimate)


def normalize_options(value: Any) -> dict | None:
    """``connection_state_recovery=`` as given (None/False, True or a dict) -> options or None."""
    if value is None or value is False:
        return None
    if value is True:
        return dict(DEFAULTS)
    if not isinstance(value, dict):
        raise TypeError("connection_state_recovery must be True, False or a dict")
    unknown = set(value) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown connection_state_recovery options: {', '.join(sorted(unknown))}")
    options = {**DEFAULTS, **value}
    options["max_disconnection_duration"] = float(options["max_disconnection_duration"])
    options["skip_middlewares"] = bool(options["skip_middlewares"])
    options["max_stored_bytes"] = int(options["max_stored_bytes"])
    if options["max_disconnection_duration"] <= 0 or options["max_stored_bytes"] <= 0:
        raise ValueError("max_disconnection_duration and max_stored_bytes must be positive")
    return options


# -- offsets ------------------------------------------------------------------------------

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_"


def _base64_number(n: int) -> str:
    digits = []
    while True:
        n, r = divmod(n, 64)
        digits.append(_ALPHABET[r])
        if not n:
            return "".join(reversed(digits))


class _OffsetClock:
    """Offsets in the format of Node's in-memory adapter (``yeast``): the time in ms in
    a 64-character alphabet, plus ``.<n>`` for the 2nd, 3rd... offset of the same ms.
    Unique per process (the clock never goes back here)."""

    def __init__(self) -> None:
        self._ms = 0
        self._stamp = ""
        self._seq = 0

    def __call__(self) -> str:
        ms = int(time.time() * 1000)
        if ms > self._ms:
            self._ms, self._stamp, self._seq = ms, _base64_number(ms), 0
            return self._stamp
        seq, self._seq = self._seq, self._seq + 1
        return f"{self._stamp}.{_base64_number(seq)}"


offset_clock = _OffsetClock()


# -- the in-memory store ------------------------------------------------------------------

class _Stored:
    __slots__ = ("offset", "rooms", "except_", "encoded", "size", "at", "intersect")

    def __init__(self, offset: str, rooms: frozenset, except_: frozenset, encoded: Any,
                 size: int, at: float, intersect: frozenset = frozenset()) -> None:
        self.offset = offset
        self.rooms = rooms
        self.except_ = except_
        self.intersect = intersect
        self.encoded = encoded
        self.size = size
        self.at = at


def reached(session_rooms: set, rooms: frozenset, except_: frozenset,
            intersect: frozenset = frozenset()) -> bool:
    """Whether a broadcast to ``rooms`` (and every room of ``intersect``) minus ``except_``
    reached a socket in these rooms."""
    return ((not rooms or not rooms.isdisjoint(session_rooms)) and except_.isdisjoint(session_rooms)
            and intersect.issubset(session_rooms))


class SessionAwareAdapter(InMemoryAdapter):
    """The in-memory adapter that keeps sessions and recent broadcasts for recovery
    (Node's SessionAwareAdapter), bounded by age and by ``max_stored_bytes``."""

    def __init__(self, nsp: "Namespace") -> None:
        super().__init__(nsp)
        options = nsp.server.connection_state_recovery or DEFAULTS
        self.max_duration: float = options["max_disconnection_duration"]
        self.max_bytes: int = options["max_stored_bytes"]
        self._sessions: dict[str, tuple[dict, float]] = {}   # pid -> (session, disconnected at)
        self._packets: collections.deque[_Stored] = collections.deque()
        self._position: dict[str, int] = {}    # offset -> sequence number
        self._first = 0                        # sequence number of _packets[0]
        self.stored_bytes = 0

    # -- sessions -----------------------------------------------------------------------

    def persist_session(self, session: dict) -> None:
        now = time.monotonic()
        self._sessions.pop(session["pid"], None)
        self._sessions[session["pid"]] = (session, now)
        self._purge(now)

    def restore_session(self, pid: str, offset: str) -> dict | None:
        now = time.monotonic()
        self._purge(now)
        entry = self._sessions.pop(pid, None)
        if entry is None:
            return None
        session, _ = entry
        seq = self._position.get(offset)
        if seq is None:
            return None
        rooms = set(session["rooms"])
        missed = [_speedups.encode_eio(4, p.encoded[1:]) if isinstance(p.encoded, str) else p.encoded
                  for p in itertools.islice(self._packets, seq - self._first + 1, None)
                  if reached(rooms, p.rooms, p.except_, p.intersect)]
        return dict(session, missed_packets=missed)

    # -- broadcasting -------------------------------------------------------------------

    def broadcast(self, packet: dict, opts: BroadcastOptions) -> None:
        if packet.get("type", EVENT) != EVENT or packet.get("id") is not None or opts.flags.volatile:
            InMemoryAdapter.broadcast(self, packet, opts)
            return
        offset = offset_clock()
        packet = dict(packet, data=[*packet["data"], offset])
        # encoded once, for the recipients now and for a recovered socket later; it is
        # kept even without recipients: the disconnected sockets are in no room now
        encoded = self.nsp.server.encode_packet(EVENT, self.nsp.name, packet["data"])
        if encoded.text is not None and not encoded.attachments:
            kept: Any = encoded.text   # a text packet keeps its Engine.IO text only (smaller)
            size = len(kept) + _PER_PACKET_OVERHEAD
        else:
            kept = encoded
            size = len(encoded.ws) + sum(len(r) for r in encoded.polling) + _PER_PACKET_OVERHEAD
        now = time.monotonic()
        self._position[offset] = self._first + len(self._packets)
        rooms, except_, intersect = opts.rooms, opts.except_, opts.intersect
        if self._packets:   # a run of broadcasts to the same rooms shares one set of each
            last = self._packets[-1]
            rooms = last.rooms if rooms == last.rooms else rooms
            except_ = last.except_ if except_ == last.except_ else except_
            intersect = last.intersect if intersect == last.intersect else intersect
        self._packets.append(_Stored(offset, rooms, except_, kept, size, now, intersect))
        self.stored_bytes += size
        self._purge(now)
        selection = self._select(opts)
        if len(selection):
            self._deliver(packet, selection, opts.flags, encoded)

    def _purge(self, now: float) -> None:
        packets, oldest = self._packets, now - self.max_duration
        while packets and (packets[0].at < oldest or self.stored_bytes > self.max_bytes):
            gone = packets.popleft()
            self.stored_bytes -= gone.size
            del self._position[gone.offset]
            self._first += 1
        sessions = self._sessions
        while sessions:   # in disconnection order: the first one is the oldest
            pid, (_, at) = next(iter(sessions.items()))
            if at >= oldest:
                break
            del sessions[pid]

    @property
    def stored_packets(self) -> int:
        return len(self._packets)

    def close(self) -> None:
        self._sessions.clear()
        self._packets.clear()
        self._position.clear()
        self.stored_bytes = 0
        super().close()

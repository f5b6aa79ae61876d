"""One Engine.IO v4 session: its state, heartbeats, upgrade and writer.

Rules that everything here keeps:
- A session is reached through one transport at a time. Outgoing packets go
  to ``_queue``; for long-polling the pending GET takes the whole queue.
- A plain TCP WebSocket is served by the event loop itself (``start_websocket``):
  the WSGI server's request greenlet ends after the upgrade, a libev watcher
  reads the socket when data arrives and feeds the frame parser, and "message"
  and "packet" listeners run right there, in the loop: they must not block
  (the Socket.IO layer hands user code to its dispatcher). TLS WebSockets keep
  their request greenlet as reader (``run_websocket``).
- While a WebSocket session has nothing queued (not *busy*), a packet goes to
  the ConnTable, which writes it at once or holds it back until the end of the
  loop pass (coalescing, see roomcast._fanout_py); only what the kernel does
  not take goes to the queue, which a write watcher (plain TCP) or a writer
  greenlet (TLS) sends when the socket is writable. The ConnTable mirrors the
  busy flag and the fd so that the compiled fan-out makes the same choice.
- ``push``/``push_raw`` only queue and wake: the fan-out calls them in the
  middle of a loop, so they never close a session or run user code.
- Closing from the event loop is deferred to a greenlet (``_close_soon``):
  close handlers are user code. They run synchronously there and must release
  the session's slot memberships before they yield; the slot is freed right
  after them. The engine owns a plain WebSocket's socket and closes it when
  the session ends, before the close handlers run.
"""
from __future__ import annotations

import fcntl
import logging
import socket as stdsocket
import sys
import termios
import time
from types import MappingProxyType
from typing import Any, Callable, Mapping

import gevent
from gevent import get_hub, getcurrent
from gevent.event import Event

from roomcast import _speedups
from roomcast.eio_packet import (CLOSE, MESSAGE, PING, PONG, UPGRADE, EngineParseError,
                                 decode_polling_payload, decode_text)
from roomcast.engine.uncompressed import wants_compression
from roomcast.engine.sendbuffer import SEND_BUFFER_FULL, WRITE_TIMEOUT, SendBuffer
from roomcast.events import EventEmitter
from roomcast.ws_deflate import Inflater
from roomcast.ws_frames import WSProtocolError, close_frame

log = logging.getLogger("roomcast.engine")

WS_TEXT, WS_BINARY, WS_CLOSE, WS_PING, WS_PONG = 1, 2, 8, 9, 10
UPGRADE_CHECK_INTERVAL = 0.1   # noop to the pending GET while upgrading, as Node does
CLOSE_SETTLE_TIMEOUT = 0.05     # at most this long a client's close waits for its GET
POLLING_CLOSE_TIMEOUT = 30.0   # how long a closing polling session waits for its last GET
READ_SIZE = 65536
_READ, _WRITE = 1, 2   # libev io watcher events


def _unread_bytes(sock) -> int:
    """Bytes received on a socket that nobody has read yet (kernel and TLS buffers)."""
    pending = getattr(sock, "pending", None)   # decrypted TLS bytes
    count = pending() if pending is not None else 0
    try:
        buf = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except (OSError, ValueError):   # ValueError: closed (fileno -1)
        return count
    return count + int.from_bytes(buf, sys.byteorder)



class _Reader:
    """The reading side of one WebSocket connection: its socket, its frame parser and,
    for a plain TCP socket served by the event loop, the watcher that reads it."""

    __slots__ = ("sock", "parser", "watcher", "on_release", "deflate_threshold", "session")

    def __init__(self, sock, max_message_size: int, inflater=None,
                 deflate_threshold: int | None = None) -> None:
        self.sock = sock
        self.parser = _speedups.FrameParser(max_message_size, inflater)
        self.watcher = None   # None: TLS, read by the request greenlet
        # permessage-deflate agreed: the threshold of the compressed frames, else None
        self.deflate_threshold = deflate_threshold
        self.on_release: Callable[[], None] | None = None   # the server's count of connections
        self.session: EngineSocket | None = None   # plain TCP: whom the watcher tells

    def __call__(self) -> None:
        """The read watcher's callback (the reader itself, rather than a bound method and
        an argument tuple that the connection would keep): the socket is readable."""
        session = self.session
        if session is not None:
            session._on_readable(self)

    def send_now(self, data: bytes) -> None:
        """Best effort, for the few control frames written outside the queue."""
        try:
            if self.watcher is not None:
                self.sock.send(data)   # non-blocking: a full buffer drops it
            else:
                self.sock.sendall(data)
        except OSError:
            pass

    def shutdown(self) -> None:
        try:
            self.sock.shutdown(stdsocket.SHUT_RDWR)
        except OSError:
            pass

    def release(self) -> None:
        """Stop reading; a socket the engine owns (plain TCP) is closed. Idempotent."""
        watcher, self.watcher = self.watcher, None
        self.session = None
        if watcher is not None:
            watcher.stop()
            watcher.close()
            self.shutdown()
            self.sock.close()
        on_release, self.on_release = self.on_release, None
        if on_release is not None:
            on_release()


class _NoBody:
    """The wsgi.input of a session's environ: its request body is long gone."""

    __slots__ = ()

    def read(self, size: int = -1) -> bytes:
        return b""

    readline = read

    def readlines(self, hint: int = -1) -> list:
        return []

    def __iter__(self):
        return iter(())


_NO_BODY = _NoBody()


class EngineSocket(EventEmitter):
    """An Engine.IO session (``socket`` in Node's engine.io).

    Events: "message" (data: str | bytes), "close" (reason, description), "upgrading",
    "upgrade", "heartbeat", "packet" (type, data) and "packet_create" (packet). A listener
    that raises is logged; the session goes on.
    """

    # Slots: a session's attributes outnumber what CPython keeps inline, so without
    # them every session would keep a separate __dict__, one more object for each
    # full collection of the cyclic GC to walk (__dict__ stays for attributes that
    # applications add).
    __slots__ = (
        "server", "id", "_environ", "_errors", "_environ_complete", "transport", "protocol", "ready_state",
        "upgrading", "upgraded", "remote_address", "_queue", "_sent",
        "_stall_timer", "_gave_up", "_table", "slot", "_ws", "_sock", "_fd",
        "_deflate_threshold", "_ws_active", "_busy", "_writer", "_write_watcher",
        "_close_when_flushed", "_close_pending", "_closing_reason", "_poll_waiter",
        "_posting", "_closed_by_client", "_close_timer", "_ping_timer", "_timeout_timer",
        "_pong_deadline", "_upgrade_timer", "_upgrade_check", "_probe", "_probe_reading",
        "_settlers", "__dict__", "__weakref__")

    def __init__(self, server, sid: str, environ: dict, transport: str,
                 errors: Any = None) -> None:
        self.server = server
        self.id = sid
        # The session keeps its first request's environ for its whole life. A dict of
        # strings and numbers only is not tracked by the cyclic GC: its two objects,
        # an empty wsgi.input and ``errors`` (wsgi.errors), are put in when the
        # environ is first read.
        self._environ = environ
        self._errors = errors
        self._environ_complete = False
        self.transport = transport
        self.protocol = 4
        self.ready_state = "opening"
        self.upgrading = False
        self.upgraded = False
        self.remote_address = environ.get("REMOTE_ADDR")
        EventEmitter.__init__(self)
        # () while empty: an idle connection keeps no list (one object less per
        # connection for the cyclic GC's full collections)
        self._queue: list | tuple = ()
        self._sent = SendBuffer(server.max_send_buffer)   # what _queue (and the writer) hold
        self._stall_timer = None
        self._gave_up = False   # closing as a slow consumer: nothing is queued any more
        self._table = server.table
        self.slot: int = self._table.add(self)
        # WebSocket transport
        self._ws: _Reader | None = None   # the active WebSocket connection
        self._sock = None
        self._fd = -1                     # >= 0: plain TCP, served by the event loop
        self._deflate_threshold: int | None = None   # permessage-deflate agreed: its threshold
        self._ws_active = False
        self._busy = False
        self._writer: gevent.Greenlet | None = None   # TLS
        self._write_watcher = None                    # plain TCP
        self._close_when_flushed = False
        self._close_pending = False       # _close_soon() deferred a close: ignore input
        # long-polling transport
        self._poll_waiter: Event | None = None
        self._posting = False
        self._closed_by_client = False   # a close packet came over polling
        self._close_timer = None
        # heartbeat (a fresh libev timer per arming: a restarted one-shot timer
        # would keep the deadline it already passed and fire at once)
        self._ping_timer = None
        self._timeout_timer = None
        self._pong_deadline: float | None = None   # monotonic time the pong is due by
        self._upgrade_timer = None
        self._upgrade_check = None
        self._probe: _Reader | None = None
        self._probe_reading = False   # the probe reader is handling a chunk
        self._settlers: list[Event] | tuple = ()   # polling requests waiting for it (settle_upgrade)

    @property
    def environ(self) -> dict:
        """The WSGI environ of the session's first request (its body excepted)."""
        environ = self._environ
        if not self._environ_complete:
            self._environ_complete = True
            environ["wsgi.input"] = _NO_BODY
            if self._errors is not None:
                environ["wsgi.errors"] = self._errors
                self._errors = None
        return environ

    @environ.setter
    def environ(self, environ: dict) -> None:
        self._environ = environ
        self._environ_complete = True

    def request_environ(self) -> Mapping[str, Any]:
        """The environ, read-only, maybe without wsgi.input and wsgi.errors: for reading
        the request's values (headers, path...) without putting them in (``environ``)."""
        return MappingProxyType(self._environ)

    @property
    def per_message_deflate(self) -> bool:
        """True while the transport is a WebSocket that agreed to permessage-deflate."""
        return self._ws_active and self._deflate_threshold is not None

    # ------------------------------------------------------------------ events
    def listener_failed(self, event: Any) -> None:
        log.exception("error in engine %r handler", event)   # the session goes on

    # ------------------------------------------------------------------ opening
    def open(self, open_packet: str) -> None:
        self.ready_state = "open"
        self.push(_speedups.encode_eio(0, open_packet))
        if self.server.initial_packet is not None:
            self.send(self.server.initial_packet)
        self._schedule_ping()

    # ------------------------------------------------------------------ sending
    def send(self, data: str | bytes, volatile: bool = False) -> None:
        """Send one message packet (text or binary)."""
        if self.ready_state not in ("opening", "open"):
            return
        self.push(_speedups.encode_eio(MESSAGE, data), volatile)

    def write(self, data: str | bytes, volatile: bool = False) -> None:
        self.send(data, volatile)

    def push(self, packet, volatile: bool = False) -> None:
        """Queue or write one encoded packet (see the module rules)."""
        if self.ready_state in ("closing", "closed"):
            return  # as in Node, nothing new is sent once closing started
        if self._listeners.get("packet_create"):
            self.emit("packet_create", packet)
        if self._ws_active:
            if self._busy:
                if not volatile:   # a busy connection drops volatile packets first
                    self._enqueue(packet, self._wire_size(packet))
                return
            # sent now, held back for the end of the loop pass, or given to push_raw()
            # (a deflate connection always queues: its frames are the packet's compressed ones)
            if self._fd >= 0 and self._deflate_threshold is None \
                    and self._table.send(self.slot, packet.ws):
                return
            self._start_writer()
            self._enqueue(packet, self._wire_size(packet))
        else:
            if volatile and self._poll_waiter is None:
                return  # Node drops a volatile packet when the transport is not writable
            self._enqueue(packet, sum(map(len, packet.polling)))
            if self._poll_waiter is not None:
                self._poll_waiter.set()

    def push_raw(self, data: bytes) -> None:
        """Queue the rest of a frame the fan-out could not write at once."""
        if self.ready_state == "closed" or self._gave_up:
            return
        self._start_writer()
        self._enqueue(data, len(data))

    @property
    def queued_bytes(self) -> int:
        """Bytes queued for this client and not yet taken by its socket (max_send_buffer)."""
        return self._sent.queued

    def _wire_size(self, packet) -> int:
        """The bytes this packet takes on this connection's socket (as _joined writes it)."""
        threshold = self._deflate_threshold
        if threshold is None or not wants_compression(packet):
            return len(packet.ws)
        return len(packet.ws_deflated(threshold))

    def _enqueue(self, item, size: int) -> None:
        """Queue one item; past max_send_buffer the queue is dropped at once and the
        session closed soon (the fan-out may be iterating: no close from here)."""
        if type(self._queue) is tuple:
            self._queue = []
        self._queue.append(item)
        if not self._sent.add(size):
            self._give_up(SEND_BUFFER_FULL)

    def _give_up(self, reason: str) -> None:
        """A slow consumer: free what is queued now, close from a greenlet of its own."""
        if self.ready_state == "closed" or self._gave_up:
            return
        log.info("session %s closed: %s (%d bytes queued)", self.id, reason, self._sent.queued)
        self._gave_up = True
        self._queue = ()
        self._sent.clear()
        self.ready_state = "closing"   # push() queues nothing more
        gevent.spawn(self.abort, reason)

    def _start_writer(self) -> None:
        if not self._busy:
            self._busy = True
            self._table.set_busy(self.slot, True)
            self._sent.busy_from_now()
            self._arm_stall_timer(self.server.ping_interval + self.server.ping_timeout)
            held = self._table.take_held(self.slot)   # older than anything queued
            if held:
                self._queue = [held, *self._queue]
                self._sent.add(len(held))
        if self._ws is None or self.ready_state == "closed":
            return   # attached later; or nothing will be written any more
        if self._fd >= 0:
            if self._write_watcher is None:
                watcher = self._write_watcher = get_hub().loop.io(self._fd, _WRITE)
                watcher.start(self._on_writable)
        elif self._writer is None:
            self._writer = gevent.spawn(self._write_loop)

    def _arm_stall_timer(self, seconds: float) -> None:
        if self._stall_timer is None:
            timer = self._stall_timer = gevent.get_hub().loop.timer(max(seconds, 0.01))
            timer.start(self._check_stall)

    def _check_stall(self) -> None:
        # runs in the hub: it may only look, arm a timer and spawn
        self._stall_timer.close()
        self._stall_timer = None
        if not self._busy or self.ready_state != "open" or not self._ws_active:
            return
        limit = self.server.ping_interval + self.server.ping_timeout
        stalled = self._sent.stalled_for()
        if stalled >= limit:
            self._give_up(WRITE_TIMEOUT)
        else:
            self._arm_stall_timer(limit - stalled)

    def _joined(self, items: list) -> bytes:
        threshold = self._deflate_threshold
        return b"".join([
            item if isinstance(item, (bytes, bytearray, memoryview))
            else item.ws if threshold is None or not wants_compression(item)
            else item.ws_deflated(threshold)
            for item in items])

    def _on_writable(self) -> None:
        """Plain TCP, in the event loop: write what the queue holds, as far as it goes."""
        data = self._joined(self._queue)
        self._queue = ()
        try:
            n = self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:
            self._stop_write_watcher()
            self._sent.clear()
            self._close_soon("transport error", exc)
            return
        self._sent.written(n)
        if n < len(data):
            self._queue = [*self._queue, data[n:]]   # the watcher calls again when there is room
            return
        self._stop_write_watcher()
        self._writer_done()

    def _stop_write_watcher(self) -> None:
        watcher, self._write_watcher = self._write_watcher, None
        if watcher is not None:
            watcher.stop()
            watcher.close()

    def _write_loop(self) -> None:
        """TLS: the writer greenlet."""
        sock = self._sock
        try:
            while self._queue:
                items, self._queue = self._queue, ()
                data = memoryview(b"".join([
                    item if isinstance(item, (bytes, bytearray, memoryview)) else item.ws
                    for item in items]))
                while data:   # send() rather than sendall(): each part taken is progress
                    n = sock.send(data)
                    self._sent.written(n)
                    data = data[n:]
                del data, items
        except OSError as exc:
            self._writer = None
            self._queue = ()
            self._sent.clear()
            self._on_close("transport error", exc)
            return
        self._writer = None
        self._writer_done()

    def _writer_done(self) -> None:
        if self.ready_state == "closed":
            return
        self._sent.clear()   # everything went out: no count may drift past a flush
        self._busy = False
        self._table.set_busy(self.slot, False)
        if self._close_when_flushed:
            self._close_websocket(1000)
            self._close_soon(self._closing_reason)

    # ------------------------------------------------------------------ heartbeat
    @staticmethod
    def _arm(old, seconds: float, callback):
        if old is not None:
            old.stop()
            old.close()
        timer = gevent.get_hub().loop.timer(seconds)
        timer.start(callback)
        return timer

    def _schedule_ping(self) -> None:
        self._ping_timer = self._arm(self._ping_timer, self.server.ping_interval, self._send_ping)

    def _send_ping(self) -> None:
        # Runs in the hub: it may only queue and arm timers.
        if self.ready_state != "open":
            return
        self.push(self.server.ping_packet)
        self._pong_deadline = time.monotonic() + self.server.ping_timeout
        self._timeout_timer = self._arm(self._timeout_timer, self.server.ping_timeout,
                                        self._ping_timed_out)

    def _ping_timed_out(self) -> None:
        if self.ready_state != "closed":
            gevent.spawn(self._on_close, "ping timeout")

    def expire_if_overdue(self) -> bool:
        """Close the session now ("ping timeout") when its pong is overdue and the
        timer has not fired yet (it fires late on a busy loop): a request that
        arrives after the deadline finds the session closed, as in Node."""
        deadline = self._pong_deadline
        if deadline is None or self.ready_state != "open" or time.monotonic() < deadline:
            return False
        self._on_close("ping timeout")
        return True

    def _on_pong(self) -> None:
        self._pong_deadline = None
        if self._timeout_timer is not None:
            self._timeout_timer.stop()
        self._schedule_ping()
        if self._listeners.get("heartbeat"):
            self.emit("heartbeat")

    # ------------------------------------------------------------------ incoming
    def _on_packet(self, ptype: int, data) -> None:
        if self.ready_state != "open" or self._close_pending:
            return
        if self._listeners.get("packet"):
            self.emit("packet", ptype, data)
        if ptype == MESSAGE:
            self.emit("message", data)
        elif ptype == PONG:
            self._on_pong()
        elif ptype == PING:
            self._on_error("transport error", "invalid heartbeat direction")
        elif ptype == CLOSE:
            self._close_soon("transport close")
        # upgrade and noop packets on the active transport are ignored, as in Node

    def _on_error(self, reason: str, description: Any = None) -> None:
        log.debug("session %s: %s (%s)", self.id, reason, description)
        self._close_soon(reason, description)

    # ------------------------------------------------------------------ long-polling
    def queued(self) -> tuple[int, int]:
        """Packets waiting to be written to this client, and their bytes (WebSocket
        frames; a polling record is about as long)."""
        items = self._queue
        return len(items), sum(len(item) if isinstance(item, (bytes, bytearray, memoryview))
                               else len(item.ws) for item in items)

    @property
    def polling_request_pending(self) -> bool:
        """A GET is waiting for packets to send (Node's polling transport is writable)."""
        return self._poll_waiter is not None

    def handle_poll(self) -> tuple[bytes, bool] | None:
        """Serve a GET: wait for packets, then return the payload and whether it may
        be compressed (None = overlap)."""
        if self._poll_waiter is not None:
            # A second concurrent GET: Node answers 400 and closes the session.
            self._on_error("transport error", "overlap from client")
            return None
        if not self._queue and self.ready_state in ("opening", "open") and not self._ws_active:
            waiter = self._poll_waiter = Event()
            try:
                waiter.wait()
            finally:
                self._poll_waiter = None
        if self._ws_active:
            items = [self.server.noop_packet]   # the session moved to WebSocket meanwhile
        else:
            items, self._queue = list(self._queue), ()
        # the transport's own noop and close packets do not ask for compression
        compress = any(wants_compression(packet) for packet in items
                       if packet is not self.server.noop_packet)
        if self._closed_by_client:
            # Node ends the pending GET with a noop (and answers any later one 400)
            items = items or [self.server.noop_packet]
        elif self.ready_state in ("closing", "closed"):
            items.append(self.server.close_packet)
        body = b"\x1e".join([rec for packet in items for rec in packet.polling])
        if self.ready_state == "closing" and not self._ws_active:
            self._on_close(self._closing_reason)
        return body, compress

    def handle_post(self, body: bytes) -> bool:
        """Serve a POST body; False when it overlapped another POST."""
        if self._posting:
            self._on_error("transport error", "data request overlap from client")
            return False
        self._posting = True
        try:
            try:
                packets = decode_polling_payload(body)
            except EngineParseError as exc:
                self._on_close("parse error", str(exc))
                return True
            for ptype, data in packets:
                if ptype == CLOSE and self.ready_state == "open":
                    if self._poll_waiter is None:
                        # A GET the client sent just before this POST may be readable
                        # already but not yet woken: let it become the pending GET
                        # (bounded: on a busy loop the idle moment may be long to come).
                        with gevent.Timeout(CLOSE_SETTLE_TIMEOUT, False):
                            gevent.idle()
                    self._closed_by_client = True
                self._on_packet(ptype, data)
        finally:
            self._posting = False
        return True

    # ------------------------------------------------------------------ WebSocket
    def _attach_websocket(self, reader: _Reader) -> None:
        self._ws = reader
        self._sock = reader.sock
        self._ws_active = True
        self.transport = "websocket"
        fd = -1
        if reader.watcher is not None:   # TLS sockets take the queued path
            fd = reader.sock.fileno()
        self._fd = fd
        self._deflate_threshold = reader.deflate_threshold
        # the fan-out writes ``packet.ws`` itself only to plain connections: a deflate
        # one goes through push(), which queues the packet's shared compressed frames
        self._table.set_fd(self.slot, fd if reader.deflate_threshold is None else -1)
        self._sent.clear()   # polling records were counted; the frames count from now
        if self._queue and fd >= 0 and not self._busy:
            self._send_queued_at_once()
        self._sent.add(sum(len(item if isinstance(item, bytes) else item.ws) for item in self._queue))
        if self._queue:
            self._start_writer()
            if self._write_watcher is not None:
                self._on_writable()   # the socket is fresh: no need to wait for the loop

    def _send_queued_at_once(self) -> None:
        """A fresh plain socket: what was queued before it came (a new session's open
        packet) is written now, without the busy state, its stall timer and a write
        watcher; only what the kernel does not take stays queued."""
        data = self._joined(self._queue)
        try:
            n = self._sock.send(data)
        except OSError:   # not writable now, or an error that the writer meets again
            n = 0
        self._queue = [data[n:]] if n < len(data) else ()

    def _open_websocket(self, sock, probing: bool, deflate=None) -> _Reader:
        limit = self.server.max_http_buffer_size
        if deflate is None:
            reader = _Reader(sock, limit)
        else:
            # a compressed message may inflate to max_http_buffer_size, no more
            reader = _Reader(sock, limit, Inflater(limit, deflate.client_no_context_takeover),
                             self.server.per_message_deflate["threshold"])
        if probing:
            self.upgrading = True
            self._probe = reader
            self._upgrade_timer = get_hub().loop.timer(self.server.upgrade_timeout)
            self._upgrade_timer.start(self._upgrade_timed_out, reader)
        return reader

    def start_websocket(self, sock, early: bytes, probing: bool,
                        on_release: Callable[[], None] | None = None, deflate=None,
                        head: bytes = b"") -> None:
        """Serve a plain TCP WebSocket from the event loop; the caller's greenlet may end.

        ``sock`` is a non-blocking socket the engine now owns (it closes it), ``early``
        the bytes the HTTP server had already read past the upgrade request.
        ``probing`` is True for an upgrade of a polling session: the socket
        becomes the session's transport only once the client sends "5".
        ``on_release()`` is called once the socket is closed.
        ``deflate``: the permessage-deflate parameters agreed in the handshake, or None.
        ``head``: bytes to write before anything else (the 101 that roomcast's handler
        did not write itself, so that it leaves in one send() with the open packet).
        """
        if head:
            self._queue = [head, *self._queue]
        reader = self._open_websocket(sock, probing, deflate)
        reader.on_release = on_release
        reader.watcher = get_hub().loop.io(sock.fileno(), _READ)
        if not probing:
            self._attach_websocket(reader)
        if early and not self._on_chunk(reader, early):
            return
        if reader.watcher is not None:
            reader.session = self
            reader.watcher.start(reader)

    def run_websocket(self, sock, rfile, probing: bool, deflate=None) -> None:
        """Read a TLS WebSocket until the connection ends; runs in the request's greenlet
        (``probing`` and ``deflate`` as in start_websocket)."""
        reader = self._open_websocket(sock, probing, deflate)
        if not probing:
            self._attach_websocket(reader)
        while True:
            try:
                chunk = rfile.read1(READ_SIZE)
            except OSError as exc:
                self._reading_ended(reader, "transport error", exc)
                return
            if not chunk:
                self._reading_ended(reader, "transport close")
                return
            if not self._on_chunk(reader, chunk):
                return

    def _on_readable(self, reader: _Reader) -> None:
        """In the event loop: the socket has data (or its end)."""
        try:
            chunk = reader.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._reading_ended(reader, "transport error", exc)
            return
        if not chunk:
            self._reading_ended(reader, "transport close")
            return
        self._on_chunk(reader, chunk)

    def _on_chunk(self, reader: _Reader, chunk: bytes) -> bool:
        """Feed bytes to the frame parser and handle the messages; False when this
        connection is done with (its socket is then released or being closed)."""
        probing = reader is self._probe
        if probing:
            self._probe_reading = True   # see settle_upgrade()
        try:
            try:
                messages = reader.parser.feed(chunk)
            except WSProtocolError as exc:
                self._ws_fail(reader, exc.code, str(exc))
                return False
            for opcode, payload in messages:
                if not self._on_ws_message(reader, opcode, payload):
                    self._stop_reading(reader)
                    return False
            return True
        finally:
            if probing:
                self._probe_reading = False
                self._wake_settlers()

    def _stop_reading(self, reader: _Reader) -> None:
        if reader is self._ws and self.ready_state != "closed":
            if reader.watcher is not None:
                reader.watcher.stop()   # the socket is released when the session closes
            return
        if reader is self._probe:
            self._cancel_upgrade()   # e.g. the client closed its probe WebSocket
        reader.release()
        self._wake_settlers()

    def _reading_ended(self, reader: _Reader, reason: str, description: Any = None) -> None:
        """The peer closed the connection or it failed."""
        if reader is self._ws:
            self._stop_reading(reader)
            self._close_soon(reason, description)
        else:
            if reader is self._probe:
                self._cancel_upgrade()
            reader.release()
        self._wake_settlers()

    def settle_upgrade(self) -> None:
        """Before a polling request of an upgrading session is looked at, let the
        probe WebSocket's reader handle everything the client already sent on it.

        A client writes "2probe" and "5" on its new WebSocket before its next
        polling request; gevent may wake the polling request first, and that
        request must see the session as Node, reading in arrival order, does.
        """
        probe = self._probe
        deadline = time.monotonic() + self.server.upgrade_timeout
        while (self.upgrading and probe is not None and self._probe is probe
               and (self._probe_reading or _unread_bytes(probe.sock))):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            settled = Event()
            self._settlers = [*self._settlers, settled]
            settled.wait(min(left, 0.1))

    def _wake_settlers(self) -> None:
        settlers, self._settlers = self._settlers, ()
        for settled in settlers:
            settled.set()

    def _ws_fail(self, reader: _Reader, code: int, reason: str) -> None:
        """A WebSocket-level error (e.g. a message over maxPayload): close this transport."""
        self._send_close_frame(reader, code)
        self._reading_ended(reader, "transport error", reason)

    def _on_ws_message(self, reader: _Reader, opcode: int, payload: bytes) -> bool:
        """Handle one WebSocket message; False ends the reading."""
        if opcode == WS_TEXT:
            try:
                ptype, data = decode_text(payload.decode("utf-8"))
            except (EngineParseError, UnicodeDecodeError) as exc:
                self._send_close_frame(reader, 1000)
                if reader is self._ws:
                    self._close_soon("parse error", str(exc))
                return False
        elif opcode == WS_BINARY:
            ptype, data = MESSAGE, payload
        elif opcode == WS_PING:
            self._write_control(reader, _speedups.ws_frame(WS_PONG, payload))
            return True
        elif opcode == WS_CLOSE:
            self._send_close_frame(reader, 1000)
            if reader is self._ws:
                self._close_soon("transport close")
            return False
        else:
            return True
        if reader is self._ws:
            self._on_packet(ptype, data)
            return self.ready_state != "closed" and not self._close_pending
        return self._on_probe_packet(reader, ptype, data)

    def _on_probe_packet(self, reader: _Reader, ptype: int, data) -> bool:
        if ptype == PING and data == "probe" and self.ready_state == "open":
            reader.send_now(_speedups.encode_eio(PONG, "probe").ws)
            if self._listeners.get("upgrading"):
                self.emit("upgrading")
            timer = self._upgrade_check = get_hub().loop.timer(
                UPGRADE_CHECK_INTERVAL, UPGRADE_CHECK_INTERVAL)
            timer.start(self._upgrade_check_tick)
            return True
        if ptype == UPGRADE and self.upgrading and self.ready_state == "open":
            self._stop_upgrade_timers()
            self.upgrading = False
            self.upgraded = True
            self._probe = None
            self._attach_websocket(reader)
            if self._poll_waiter is not None:
                self._poll_waiter.set()   # the pending GET returns a noop
            self.emit("upgrade")
            return True
        # anything else during the probe aborts the upgrade, not the session
        self._cancel_upgrade()
        self._send_close_frame(reader, 1000)
        return False

    def _upgrade_check_tick(self) -> None:
        if self._poll_waiter is not None and not self._queue:
            self._queue = [*self._queue, self.server.noop_packet]
            self._poll_waiter.set()

    def _upgrade_timed_out(self, reader: _Reader) -> None:
        if self.upgrading and not self._ws_active:
            self._cancel_upgrade()
            gevent.spawn(self._send_close_frame, reader, 1000)

    def _stop_upgrade_timers(self) -> None:
        for name in ("_upgrade_timer", "_upgrade_check"):
            timer = getattr(self, name, None)
            if timer is not None:
                timer.stop()
                timer.close()
                setattr(self, name, None)

    def _cancel_upgrade(self) -> None:
        """Give up an upgrade: the session stays on polling, the probe socket goes."""
        self._stop_upgrade_timers()
        self.upgrading = False
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.shutdown()   # its reader sees the end and releases it

    def _write_control(self, reader: _Reader, frame: bytes) -> None:
        if reader is self._ws:
            self.push_raw(frame)   # keep order with everything already queued
        else:
            reader.send_now(frame)

    @staticmethod
    def _send_close_frame(reader: _Reader, code: int) -> None:
        reader.send_now(close_frame(code, ""))
        reader.shutdown()

    def _close_websocket(self, code: int) -> None:
        if self._ws is not None:
            held = self._table.take_held(self.slot)   # what the loop pass held back goes first
            if held:
                self._ws.send_now(held)
            self._send_close_frame(self._ws, code)

    # ------------------------------------------------------------------ closing
    def close(self, reason: str = "forced close") -> None:
        """Close the session from the server side, after flushing what is queued."""
        if self.ready_state != "open":
            return
        self.ready_state = "closing"
        self._closing_reason = reason
        if self._ws_active:
            if not self._busy and self._fd >= 0:
                held = self._table.take_held(self.slot)
                if held:
                    self.push_raw(held)   # written before the close frame
            if self._busy:
                self._close_when_flushed = True
            else:
                self._close_websocket(1000)
                self._on_close(reason)
            return
        if self.upgrading:
            self._cancel_upgrade()   # close over polling; the probe socket is dropped
        if self._poll_waiter is not None:
            self._poll_waiter.set()   # that GET carries the close packet, then we close
        else:
            timer = self._close_timer = gevent.get_hub().loop.timer(POLLING_CLOSE_TIMEOUT)
            timer.start(lambda: gevent.spawn(self._on_close, reason))

    def abort(self, reason: str, description: Any = None) -> None:
        """Close at once, dropping what is queued (a client that does not read)."""
        if self.ready_state == "closed":
            return
        self._queue = ()
        # A TLS writer must be gone before the socket can be closed under it (the
        # request's handler closes the raw socket once its reader returns).
        writer, self._writer = self._writer, None
        if writer is not None and writer is not gevent.getcurrent():
            writer.kill()
        self._stop_write_watcher()
        for reader in (self._ws, self._probe):
            if reader is not None:
                reader.shutdown()
        self._on_close(reason, description)

    def _close_soon(self, reason: str, description: Any = None) -> None:
        """Close the session; from the event loop (a read or write callback), in a
        greenlet, because close handlers are user code."""
        if getcurrent() is get_hub():
            if not self._close_pending and self.ready_state != "closed":
                self._close_pending = True
                gevent.spawn(self._on_close, reason, description)
        else:
            self._on_close(reason, description)

    def _on_close(self, reason: str, description: Any = None) -> None:
        if self.ready_state == "closed":
            return
        self.ready_state = "closed"
        for timer in (self._ping_timer, self._timeout_timer, self._close_timer, self._stall_timer):
            if timer is not None:
                timer.stop()
                timer.close()
        self._cancel_upgrade()
        if self._poll_waiter is not None:
            self._poll_waiter.set()   # that GET answers with the close packet
        # The fd is closed (and may be reused) while close handlers run (they may
        # yield before the slot leaves its rooms): no direct write may reach it any more.
        self._fd = -1
        self._table.set_fd(self.slot, -1)
        self._stop_write_watcher()
        ws = self._ws
        if ws is not None:
            if reason != "forced close":
                ws.shutdown()
            ws.release()
        try:
            self.emit("close", reason, description)
        finally:
            self._table.remove(self.slot)
            self.server._forget(self)
            self._queue = ()

    def __repr__(self) -> str:
        return f"<EngineSocket {self.id} {self.transport} {self.ready_state}>"

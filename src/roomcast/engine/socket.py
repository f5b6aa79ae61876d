"""One Engine.IO v4 session: its state, heartbeats, upgrade and writer.

Rules that everything here keeps:
- A session is reached through one transport at a time. Outgoing packets go
  to ``_queue``; for long-polling the pending GET takes the whole queue, for
  WebSocket one writer greenlet writes everything queued in one ``sendall``.
- While a WebSocket session has nothing queued (not *busy*), a packet is
  written straight to the socket with a non-blocking write; only what the
  kernel does not take goes to the queue. The ConnTable mirrors the busy flag
  and the fd so that the compiled fan-out makes the same choice.
- ``push``/``push_raw`` only queue and wake: the fan-out calls them in the
  middle of a loop, so they never close a session or run user code.
- Close handlers run synchronously and must release the session's slot
  memberships before they yield; the slot is freed right after them.
"""
from __future__ import annotations

import fcntl
import logging
import os
import socket as stdsocket
import sys
import termios
import time
from typing import Any, Callable

import gevent
from gevent.event import Event

from roomcast import _speedups
from roomcast.eio_packet import (CLOSE, MESSAGE, PING, PONG, UPGRADE, EngineParseError,
                                 decode_polling_payload, decode_text)
from roomcast.engine.uncompressed import wants_compression
from roomcast.engine.sendbuffer import SEND_BUFFER_FULL, WRITE_TIMEOUT, SendBuffer
from roomcast.ws_frames import FrameParser, WSProtocolError, close_frame

log = logging.getLogger("roomcast.engine")

WS_TEXT, WS_BINARY, WS_CLOSE, WS_PING, WS_PONG = 1, 2, 8, 9, 10
UPGRADE_CHECK_INTERVAL = 0.1   # noop to the pending GET while upgrading, as Node does
CLOSE_SETTLE_TIMEOUT = 0.05     # at most this long a client's close waits for its GET
POLLING_CLOSE_TIMEOUT = 30.0   # how long a closing polling session waits for its last GET
READ_SIZE = 65536


def _unread_bytes(sock) -> int:
    """Bytes received on a socket that nobody has read yet (kernel and TLS buffers)."""
    pending = getattr(sock, "pending", None)   # decrypted TLS bytes
    count = pending() if pending is not None else 0
    try:
        buf = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return count
    return count + int.from_bytes(buf, sys.byteorder)


def _write_nonblocking(fd: int, data) -> int:
    """Write what the kernel takes now; errors are left for the writer to meet."""
    try:
        return os.write(fd, data)
    except (BlockingIOError, InterruptedError):
        return 0
    except OSError:
        return 0


class EngineSocket:
    """An Engine.IO session (``socket`` in Node's engine.io)."""

    def __init__(self, server, sid: str, environ: dict, transport: str) -> None:
        self.server = server
        self.id = sid
        self.environ = environ
        self.transport = transport
        self.protocol = 4
        self.ready_state = "opening"
        self.upgrading = False
        self.upgraded = False
        self.remote_address = environ.get("REMOTE_ADDR")
        self._handlers: dict[str, list[Callable]] = {}
        self._queue: list = []
        self._sent = SendBuffer(server.max_send_buffer)   # what _queue (and the writer) hold
        self._stall_timer = None
        self._gave_up = False   # closing as a slow consumer: nothing is queued any more
        self._table = server.table
        self.slot: int = self._table.add(self)
        # WebSocket transport
        self._sock = None
        self._fd = -1
        self._ws_active = False
        self._busy = False
        self._writer: gevent.Greenlet | None = None
        self._close_when_flushed = False
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
        self._probe_sock = None
        self._probe_reading = False   # the probe reader is handling a chunk
        self._settlers: list[Event] = []   # polling requests waiting for it (settle_upgrade)

    # ------------------------------------------------------------------ events
    def on(self, event: str, handler: Callable) -> Callable:
        self._handlers.setdefault(event, []).append(handler)
        return handler

    def off(self, event: str, handler: Callable | None = None) -> None:
        if handler is None:
            self._handlers.pop(event, None)
        elif handler in self._handlers.get(event, ()):
            self._handlers[event].remove(handler)

    def _emit(self, event: str, *args: Any) -> None:
        for handler in list(self._handlers.get(event, ())):
            try:
                handler(*args)
            except Exception:  # a listener's bug must not break the session
                log.exception("error in engine %r handler", event)

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
        if self._handlers.get("packet_create"):
            self._emit("packet_create", packet)
        if self._ws_active:
            if self._busy:
                if not volatile:   # a busy connection drops volatile packets first
                    self._enqueue(packet, len(packet.ws))
                return
            data = packet.ws
            if self._fd >= 0:
                n = _write_nonblocking(self._fd, data)
                if n == len(data):
                    return
                self._start_writer()
                self._enqueue(data[n:], len(data) - n)
            else:
                self._start_writer()
                self._enqueue(packet, len(data))
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

    def _enqueue(self, item, size: int) -> None:
        """Queue one item; past max_send_buffer the queue is dropped at once and the
        session closed soon (the fan-out may be iterating: no close from here)."""
        self._queue.append(item)
        if not self._sent.add(size):
            self._give_up(SEND_BUFFER_FULL)

    def _give_up(self, reason: str) -> None:
        """A slow consumer: free what is queued now, close from a greenlet of its own."""
        if self.ready_state == "closed" or self._gave_up:
            return
        log.info("session %s closed: %s (%d bytes queued)", self.id, reason, self._sent.queued)
        self._gave_up = True
        self._queue = []
        self._sent.clear()
        self.ready_state = "closing"   # push() queues nothing more
        gevent.spawn(self.abort, reason)

    def _start_writer(self) -> None:
        if not self._busy:
            self._busy = True
            self._table.set_busy(self.slot, True)
            self._sent.busy_from_now()
            self._arm_stall_timer(self.server.ping_interval + self.server.ping_timeout)
        if self._writer is None:
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

    def _write_loop(self) -> None:
        sock = self._sock
        try:
            while self._queue:
                items, self._queue = self._queue, []
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
            self._queue = []
            self._sent.clear()
            self._on_close("transport error", exc)
            return
        self._writer = None
        if self.ready_state == "closed":
            return
        self._busy = False
        self._table.set_busy(self.slot, False)
        if self._close_when_flushed:
            self._close_websocket(1000)
            self._on_close(self._closing_reason)

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
        if self._handlers.get("heartbeat"):
            self._emit("heartbeat")

    # ------------------------------------------------------------------ incoming
    def _on_packet(self, ptype: int, data) -> None:
        if self.ready_state != "open":
            return
        if self._handlers.get("packet"):
            self._emit("packet", ptype, data)
        if ptype == MESSAGE:
            self._emit("message", data)
        elif ptype == PONG:
            self._on_pong()
        elif ptype == PING:
            self._on_error("transport error", "invalid heartbeat direction")
        elif ptype == CLOSE:
            self._on_close("transport close")
        # upgrade and noop packets on the active transport are ignored, as in Node

    def _on_error(self, reason: str, description: Any = None) -> None:
        log.debug("session %s: %s (%s)", self.id, reason, description)
        self._on_close(reason, description)

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
            items, self._queue = self._queue, []
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
    def _attach_websocket(self, sock) -> None:
        self._sock = sock
        self._ws_active = True
        self.transport = "websocket"
        fd = -1
        if not hasattr(sock, "cipher"):  # TLS sockets take the buffered path
            try:
                fd = sock.fileno()
            except OSError:
                fd = -1
        self._fd = fd
        self._table.set_fd(self.slot, fd)
        self._sent.clear()   # polling records were counted; the frames count from now
        self._sent.add(sum(len(item if isinstance(item, bytes) else item.ws) for item in self._queue))
        if self._queue:
            self._start_writer()

    def run_websocket(self, sock, rfile, probing: bool) -> None:
        """Read frames until the connection ends; runs in the request's greenlet.

        ``probing`` is True for an upgrade of a polling session: the socket
        becomes the session's transport only once the client sends "5".
        """
        parser = FrameParser(self.server.max_http_buffer_size)
        if probing:
            self.upgrading = True
            self._probe_sock = sock
            self._upgrade_timer = gevent.get_hub().loop.timer(self.server.upgrade_timeout)
            self._upgrade_timer.start(self._upgrade_timed_out, sock)
        else:
            self._attach_websocket(sock)
        try:
            while True:
                try:
                    chunk = rfile.read1(READ_SIZE)
                except OSError as exc:
                    if self._ws_active and self._sock is sock:
                        self._on_close("transport error", exc)
                    return
                if not chunk:
                    if self._ws_active and self._sock is sock:
                        self._on_close("transport close")
                    return
                if probing:
                    self._probe_reading = True   # see settle_upgrade()
                try:
                    try:
                        messages = parser.feed(chunk)
                    except WSProtocolError as exc:
                        self._ws_fail(sock, exc.code, str(exc))
                        return
                    for opcode, payload in messages:
                        if not self._on_ws_message(sock, opcode, payload):
                            return
                finally:
                    if probing:
                        self._probe_reading = False
                        probing = self._probe_sock is sock
                        self._wake_settlers()
        finally:
            if self._upgrade_timer is not None and self.upgrading and not self._ws_active:
                self._cancel_upgrade()
            self._wake_settlers()

    def settle_upgrade(self) -> None:
        """Before a polling request of an upgrading session is looked at, let the
        probe WebSocket's reader handle everything the client already sent on it.

        A client writes "2probe" and "5" on its new WebSocket before its next
        polling request; gevent may wake the polling request first, and that
        request must see the session as Node, reading in arrival order, does.
        """
        sock = self._probe_sock
        deadline = time.monotonic() + self.server.upgrade_timeout
        while (self.upgrading and sock is not None and self._probe_sock is sock
               and (self._probe_reading or _unread_bytes(sock))):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            settled = Event()
            self._settlers.append(settled)
            settled.wait(min(left, 0.1))

    def _wake_settlers(self) -> None:
        settlers, self._settlers = self._settlers, []
        for settled in settlers:
            settled.set()

    def _ws_fail(self, sock, code: int, reason: str) -> None:
        """A WebSocket-level error (e.g. a message over maxPayload): close this transport."""
        self._send_close_frame(sock, code)
        if self._ws_active and self._sock is sock:
            self._on_close("transport error", reason)

    def _on_ws_message(self, sock, opcode: int, payload: bytes) -> bool:
        """Handle one WebSocket message; False ends the reader."""
        if opcode == WS_TEXT:
            try:
                ptype, data = decode_text(payload.decode("utf-8"))
            except (EngineParseError, UnicodeDecodeError) as exc:
                self._send_close_frame(sock, 1000)
                if self._ws_active:
                    self._on_close("parse error", str(exc))
                return False
        elif opcode == WS_BINARY:
            ptype, data = MESSAGE, payload
        elif opcode == WS_PING:
            self._write_control(sock, _speedups.ws_frame(WS_PONG, payload))
            return True
        elif opcode == WS_CLOSE:
            self._send_close_frame(sock, 1000)
            if self._ws_active and self._sock is sock:
                self._on_close("transport close")
            return False
        else:
            return True
        if self._ws_active and self._sock is sock:
            self._on_packet(ptype, data)
            return self.ready_state != "closed"
        return self._on_probe_packet(sock, ptype, data)

    def _on_probe_packet(self, sock, ptype: int, data) -> bool:
        if ptype == PING and data == "probe" and self.ready_state == "open":
            sock.sendall(_speedups.encode_eio(PONG, "probe").ws)
            if self._handlers.get("upgrading"):
                self._emit("upgrading")
            timer = self._upgrade_check = gevent.get_hub().loop.timer(
                UPGRADE_CHECK_INTERVAL, UPGRADE_CHECK_INTERVAL)
            timer.start(self._upgrade_check_tick)
            return True
        if ptype == UPGRADE and self.upgrading and self.ready_state == "open":
            self._stop_upgrade_timers()
            self.upgrading = False
            self.upgraded = True
            self._probe_sock = None
            self._attach_websocket(sock)
            if self._poll_waiter is not None:
                self._poll_waiter.set()   # the pending GET returns a noop
            self._emit("upgrade")
            return True
        # anything else during the probe aborts the upgrade, not the session
        self._cancel_upgrade()
        self._send_close_frame(sock, 1000)
        return False

    def _upgrade_check_tick(self) -> None:
        if self._poll_waiter is not None and not self._queue:
            self._queue.append(self.server.noop_packet)
            self._poll_waiter.set()

    def _upgrade_timed_out(self, sock) -> None:
        if self.upgrading and not self._ws_active:
            self._cancel_upgrade()
            gevent.spawn(self._send_close_frame, sock, 1000)

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
        probe, self._probe_sock = self._probe_sock, None
        if probe is not None:
            try:
                probe.shutdown(stdsocket.SHUT_RDWR)
            except OSError:
                pass

    def _write_control(self, sock, frame: bytes) -> None:
        if self._ws_active and self._sock is sock:
            self.push_raw(frame)   # keep order with everything already queued
        else:
            try:
                sock.sendall(frame)
            except OSError:
                pass

    def _send_close_frame(self, sock, code: int) -> None:
        try:
            sock.sendall(close_frame(code, ""))
        except OSError:
            pass
        try:
            sock.shutdown(stdsocket.SHUT_RDWR)
        except OSError:
            pass

    def _close_websocket(self, code: int) -> None:
        if self._sock is not None:
            self._send_close_frame(self._sock, code)

    # ------------------------------------------------------------------ closing
    def close(self, reason: str = "forced close") -> None:
        """Close the session from the server side, after flushing what is queued."""
        if self.ready_state != "open":
            return
        self.ready_state = "closing"
        self._closing_reason = reason
        if self._ws_active:
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
        """Close at once, dropping what is queued (a client that does not read):
        the socket is shut down so that a writer blocked on it ends too."""
        if self.ready_state == "closed":
            return
        self._queue = []
        # The writer must be gone before the socket can be closed under it (the
        # request's handler closes the raw socket once its reader returns).
        writer, self._writer = self._writer, None
        if writer is not None and writer is not gevent.getcurrent():
            writer.kill()
        for sock in (self._sock, self._probe_sock):
            if sock is not None:
                try:
                    sock.shutdown(stdsocket.SHUT_RDWR)
                except OSError:
                    pass
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
        if self._sock is not None and reason != "forced close":
            try:
                self._sock.shutdown(stdsocket.SHUT_RDWR)
            except OSError:
                pass
        # The fd may be closed and reused while close handlers run (they may yield
        # before the slot leaves its rooms): no direct write may reach it any more.
        self._fd = -1
        self._table.set_fd(self.slot, -1)
        try:
            self._emit("close", reason, description)
        finally:
            self._table.remove(self.slot)
            self.server._forget(self)
            self._queue = []

    def __repr__(self) -> str:
        return f"<EngineSocket {self.id} {self.transport} {self.ready_state}>"

"""Handing an accepted HTTP connection to the worker process that owns its session.

Workers share one listening socket, so a long-polling request (or the WebSocket
upgrade of a polling session) may be accepted by a worker that does not own the
session. That worker reads no further than the request's headers, then passes the
connection's file descriptor, with the bytes it has already read, to the owner over
the owner's Unix socket (SOCK_SEQPACKET, SCM_RIGHTS). The owner serves the request,
and every later one on that keep-alive connection, as if it had accepted it itself.
The sid names its owner (roomcast.worker_ids).
"""
from __future__ import annotations

import array
import io
import logging
import os
import socket as stdsocket
from typing import Any

import gevent
from gevent import socket as gsocket

from roomcast.unix_sockets import listen_unix

log = logging.getLogger("roomcast.workers")

MAX_HANDOFF_BYTES = 256 * 1024   # request headers plus what the reader had buffered
_FD_SIZE = array.array("i").itemsize


def handoff_path(rundir: str, pid: int) -> str:
    return os.path.join(rundir, f"handoff-{pid}.sock")


class _PrefixedReader(io.RawIOBase):
    """The bytes another worker had already read, then the socket itself."""

    def __init__(self, prefix: bytes, sock: Any) -> None:
        self._prefix = memoryview(prefix)
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._prefix:
            n = min(len(buffer), len(self._prefix))
            buffer[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        return self._sock.recv_into(buffer)


class Handoff:
    """One worker's end: sends connections to other workers, receives its own."""

    def __init__(self, rundir: str, pid: int | None = None) -> None:
        self.rundir = rundir
        self.pid = pid if pid is not None else os.getpid()
        self.path = handoff_path(rundir, self.pid)
        self._peers: dict[int, Any] = {}
        self._listener: Any = None
        self._acceptor: gevent.Greenlet | None = None
        self.handed_off = 0     # connections this worker passed on
        self.received = 0       # connections other workers passed to this one

    # -- receiving ----------------------------------------------------------------

    def serve(self, server: Any) -> None:
        """Accept connections handed to this worker and serve them with ``server``
        (a gevent pywsgi WSGIServer: its handler class, application and environ)."""
        listener = self._listener = listen_unix(self.path, stdsocket.SOCK_SEQPACKET)
        self._acceptor = gevent.spawn(self._accept, listener, server)

    def _accept(self, listener: Any, server: Any) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            gevent.spawn(self._receive, conn, server)

    def _receive(self, conn: Any, server: Any) -> None:
        with conn:
            while True:
                try:
                    data, ancdata, _flags, _addr = conn.recvmsg(
                        MAX_HANDOFF_BYTES, stdsocket.CMSG_SPACE(_FD_SIZE))
                except OSError:
                    return
                fds = [fd for level, kind, payload in ancdata
                       if level == stdsocket.SOL_SOCKET and kind == stdsocket.SCM_RIGHTS
                       for fd in array.array("i", payload[:len(payload) - len(payload) % _FD_SIZE])]
                if not fds:
                    if not data:
                        return          # the sending worker closed its end
                    continue
                for extra in fds[1:]:
                    os.close(extra)
                self.received += 1
                gevent.spawn(self._serve_connection, fds[0], data, server)

    @staticmethod
    def _serve_connection(fd: int, prefix: bytes, server: Any) -> None:
        sock = gsocket.socket(fileno=fd)
        try:
            try:
                address = sock.getpeername()
            except OSError:
                return
            rfile = io.BufferedReader(_PrefixedReader(prefix, sock))
            handler = server.handler_class(sock, address, server, rfile)
            handler.handle()
        except Exception:
            log.exception("serving a handed-off connection failed")
        finally:
            sock.close()

    # -- sending ------------------------------------------------------------------

    def send(self, pid: int, sock: Any, already_read: bytes) -> bool:
        """Pass ``sock`` to worker ``pid`` with the bytes read from it so far.
        False when that worker cannot take it (gone): the caller serves it."""
        if len(already_read) > MAX_HANDOFF_BYTES:
            return False
        fds = [(stdsocket.SOL_SOCKET, stdsocket.SCM_RIGHTS, array.array("i", [sock.fileno()]))]
        for attempt in (1, 2):   # a cached connection may belong to a worker that restarted
            peer = self._peer(pid)
            if peer is None:
                return False
            try:
                peer.sendmsg([already_read], fds)
            except OSError:
                self._drop(pid)
                continue
            self.handed_off += 1
            return True
        return False

    def _peer(self, pid: int) -> Any:
        peer = self._peers.get(pid)
        if peer is None:
            peer = gsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_SEQPACKET)
            try:
                peer.connect(handoff_path(self.rundir, pid))
            except OSError:
                peer.close()
                return None
            self._peers[pid] = peer
        return peer

    def _drop(self, pid: int) -> None:
        peer = self._peers.pop(pid, None)
        if peer is not None:
            peer.close()

    def owner_alive(self, pid: int) -> bool:
        return os.path.exists(handoff_path(self.rundir, pid))

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._acceptor is not None:
            self._acceptor.kill(block=False)
        for pid in list(self._peers):
            self._drop(pid)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

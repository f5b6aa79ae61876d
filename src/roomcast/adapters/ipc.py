"""The inter-process adapter: the worker processes of one server as one cluster, over
local Unix sockets, with no service to run (the role of Node's @socket.io/cluster-adapter).

Each worker listens on ``<rundir>/bus-<pid>.sock`` and connects to every other
worker's socket (a full mesh: one connection per direction and pair). A worker that
starts dials the others, and each of them dials back as soon as it hears the newcomer,
so ``server_count()`` is right at once; a directory scan every second catches anything
missed. A frame is a 4-byte length and a pickled message (every worker runs the same
code and the directory is private to the server's user). The cluster protocol itself,
requests, acks and their timeouts, is the ClusterAdapter base's.

roomcast.workers gives this adapter to every Server that kept the default in-memory one.
"""
from __future__ import annotations

import glob
import logging
import os
import pickle
import re
import socket as stdsocket
import struct
from typing import TYPE_CHECKING, Any

import gevent
from gevent import socket as gsocket
from gevent.event import Event

from roomcast import metrics
from roomcast.adapters.cluster import ClusterAdapter, MessageType
from roomcast.unix_sockets import listen_unix

if TYPE_CHECKING:
    from roomcast.namespace import Namespace

log = logging.getLogger("roomcast.workers")

_LENGTH = struct.Struct(">I")
_HELLO = "hello"
MAX_FRAME = 64 * 1024 * 1024
SCAN_INTERVAL = 1.0


def bus_path(rundir: str, pid: int) -> str:
    return os.path.join(rundir, f"bus-{pid}.sock")


def _frame(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(body)) + body


class _Peer:
    """The connection this worker writes to another worker on; one writer greenlet
    sends whatever was queued meanwhile in one write, so frames never interleave."""

    def __init__(self, bus: "IpcBus", pid: int, sock: Any) -> None:
        self.bus = bus
        self.pid = pid
        self.sock = sock
        self.queue: list[bytes] = []
        self.wake = Event()
        self.closed = False
        self.writer = gevent.spawn(self._write)

    def send(self, frame: bytes) -> None:
        if not self.closed:
            self.queue.append(frame)
            self.wake.set()

    def _write(self) -> None:
        try:
            while not self.closed:
                self.wake.wait()
                self.wake.clear()
                while self.queue:
                    data, self.queue = b"".join(self.queue), []
                    self.sock.sendall(data)
        except OSError:
            pass
        finally:
            self.bus.drop(self)

    def close(self) -> None:
        self.closed = True
        self.wake.set()
        self.sock.close()


class IpcBus:
    """This worker's end of the mesh; routes what arrives to the adapter of its namespace."""

    def __init__(self, rundir: str, pid: int | None = None) -> None:
        self.rundir = rundir
        self.pid = pid if pid is not None else os.getpid()
        self.path = bus_path(rundir, self.pid)
        self.uid = str(self.pid)
        self.peers: dict[int, _Peer] = {}
        self.adapters: dict[str, IpcAdapter] = {}
        self._dialing: set[int] = set()
        self._listener: Any = None
        self._greenlets: list[gevent.Greenlet] = []
        self.messages_sent = 0
        self.messages_received = 0

    # -- lifetime -----------------------------------------------------------------

    def start(self) -> None:
        listener = self._listener = listen_unix(self.path)
        self._greenlets = [gevent.spawn(self._accept, listener), gevent.spawn(self._scan_forever)]
        self.scan()

    def close(self) -> None:
        for greenlet in self._greenlets:
            greenlet.kill(block=False)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for peer in list(self.peers.values()):
            peer.close()
        self.peers.clear()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def adapter_factory(self) -> "IpcAdapterFactory":
        return IpcAdapterFactory(self)

    @property
    def server_count(self) -> int:
        return 1 + len(self.peers)

    # -- finding the other workers --------------------------------------------------

    def _scan_forever(self) -> None:
        while True:
            gevent.sleep(SCAN_INTERVAL)
            self.scan()

    def scan(self) -> None:
        for path in glob.glob(os.path.join(self.rundir, "bus-*.sock")):
            match = re.search(r"bus-(\d+)\.sock$", path)
            if match:
                pid = int(match.group(1))
                if pid != self.pid and pid not in self.peers:
                    self.dial(pid)

    def dial(self, pid: int) -> None:
        if pid in self._dialing or pid in self.peers:
            return
        self._dialing.add(pid)
        sock = gsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
        try:
            sock.connect(bus_path(self.rundir, pid))
            sock.sendall(_frame((_HELLO, self.pid)))
        except OSError:
            sock.close()   # gone, or not listening yet: the next scan tries again
            return
        finally:
            self._dialing.discard(pid)
        self.peers[pid] = _Peer(self, pid, sock)

    def drop(self, peer: _Peer) -> None:
        if self.peers.get(peer.pid) is peer:
            del self.peers[peer.pid]
        if not peer.closed:
            peer.close()

    # -- receiving ------------------------------------------------------------------

    def _accept(self, listener: Any) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            gevent.spawn(self._read, conn)

    def _read(self, conn: Any) -> None:
        buffer = bytearray()
        sender: int | None = None
        try:
            while True:
                chunk = conn.recv(262144)
                if not chunk:
                    return
                buffer += chunk
                while len(buffer) >= 4:
                    (length,) = _LENGTH.unpack_from(buffer)
                    if length > MAX_FRAME:
                        log.error("ipc: frame of %d bytes from worker %s; connection dropped",
                                  length, sender)
                        return
                    if len(buffer) < 4 + length:
                        break
                    message = pickle.loads(bytes(buffer[4:4 + length]))
                    del buffer[:4 + length]
                    if sender is None:
                        if isinstance(message, tuple) and message[:1] == (_HELLO,):
                            sender = int(message[1])
                            if sender not in self.peers:
                                gevent.spawn(self.dial, sender)   # answer a newcomer at once
                        continue
                    self._dispatch(message)
        except OSError:
            return
        finally:
            conn.close()
            # the sender's end closed: it exited (or was killed). Forget it now, not at
            # this worker's next write to it, so server_count() is right at once.
            peer = self.peers.get(sender) if sender is not None else None
            if peer is not None:
                self.drop(peer)

    def _dispatch(self, message: Any) -> None:
        self.messages_received += 1
        if metrics.active is not None:
            metrics.active.adapter_in += 1
        if not isinstance(message, dict):
            return
        adapter = self.adapters.get(message.get("nsp"))
        if adapter is not None:
            try:
                adapter.on_message(message)
            except Exception:
                log.exception("ipc: handling %r failed", message.get("type"))
        elif message.get("type") == MessageType.FETCH_SOCKETS:
            # a namespace this worker does not have: answer, so that nobody waits for it
            self.send(message.get("uid"), {
                "type": int(MessageType.FETCH_SOCKETS_RESPONSE), "uid": self.uid,
                "nsp": message.get("nsp"),
                "data": {"requestId": (message.get("data") or {}).get("requestId"), "sockets": []}})

    # -- sending --------------------------------------------------------------------

    def publish(self, message: dict) -> None:
        """To every other worker."""
        if self.peers:
            frame = _frame(message)
            for peer in list(self.peers.values()):
                peer.send(frame)
            self.messages_sent += 1
            if metrics.active is not None:
                metrics.active.adapter_out += 1

    def send(self, uid: Any, message: dict) -> None:
        """To one worker (its uid is its pid)."""
        try:
            peer = self.peers.get(int(uid))
        except (TypeError, ValueError):
            return
        if peer is not None:
            peer.send(_frame(message))
            self.messages_sent += 1
            if metrics.active is not None:
                metrics.active.adapter_out += 1


class IpcAdapterFactory:
    """The ``adapter=`` callable of a Server in a worker: one adapter per namespace,
    all on this worker's bus."""

    def __init__(self, bus: IpcBus) -> None:
        self.bus = bus

    def __call__(self, nsp: "Namespace") -> "IpcAdapter":
        return IpcAdapter(nsp, self.bus)


class IpcAdapter(ClusterAdapter):
    """A namespace's adapter across the worker processes of one server."""

    def __init__(self, nsp: "Namespace", bus: IpcBus, **options: Any) -> None:
        # every peer is a worker of this same roomcast server, so intersect() can travel
        options.setdefault("allow_intersections", True)
        super().__init__(nsp, uid=bus.uid, **options)
        self.bus = bus

    def init(self) -> None:
        super().init()
        self.bus.adapters[self.nsp.name] = self

    def close(self) -> None:
        if self.bus.adapters.get(self.nsp.name) is self:
            del self.bus.adapters[self.nsp.name]
        super().close()

    def server_count(self) -> int:
        return self.bus.server_count

    def do_publish(self, message: dict) -> str | None:
        self.bus.publish(message)
        return None

    def do_publish_response(self, requester_uid: str, response: dict) -> None:
        self.bus.send(requester_uid, response)

    def encode_value(self, value: Any) -> bytes:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

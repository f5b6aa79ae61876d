"""Raw Socket.IO-over-WebSocket clients on gevent sockets, for the churn and
slow-consumer benchmarks: they speak the protocol byte by byte so that a client can
misbehave on purpose (reset its connection, stop reading while it keeps ponging)."""
from __future__ import annotations

import base64
import json
import os
import socket as stdsocket
import struct

import gevent
import gevent.pool
from gevent import socket

PATH = "/socket.io/?EIO=4&transport=websocket"

def _mask(payload: bytes) -> bytes:
    key = os.urandom(4)
    n = len(payload)
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes((key * (n // 4 + 1))[:n], "big")
              ).to_bytes(n, "big") if n else b""
    return key + masked

def frame(text: str) -> bytes:
    """One masked client text frame."""
    payload = text.encode()
    n = len(payload)
    if n < 126:
        head = bytes([0x81, 0x80 | n])
    elif n < 65536:
        head = bytes([0x81, 0x80 | 126]) + struct.pack("!H", n)
    else:
        head = bytes([0x81, 0x80 | 127]) + struct.pack("!Q", n)
    return head + _mask(payload)

class Client:
    """One Socket.IO client on a WebSocket. ``recv()`` returns text messages and
    answers the server's pings ("2" -> "3") on the way."""

    def __init__(self, port: int, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(stdsocket.AF_INET, stdsocket.SOCK_STREAM)
        if rcvbuf is not None:   # a small window makes a stuck reader stall the server soon
            self.sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(30)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            self.buf += chunk
        status, _, self.buf = self.buf.partition(b"\r\n\r\n")
        if b" 101 " not in status.split(b"\r\n")[0] + b" ":
            raise ConnectionError(status.split(b"\r\n")[0].decode())
        self.ack_id = 0

    def _read_frame(self) -> tuple[int, bytes]:
        while True:
            if len(self.buf) >= 2:
                opcode, n = self.buf[0] & 0x0F, self.buf[1] & 0x7F
                start = 2
                if n == 126 and len(self.buf) >= 4:
                    n, start = struct.unpack("!H", self.buf[2:4])[0], 4
                elif n == 127 and len(self.buf) >= 10:
                    n, start = struct.unpack("!Q", self.buf[2:10])[0], 10
                if n < 126 or start > 2:
                    if len(self.buf) >= start + n:
                        payload, self.buf = self.buf[start:start + n], self.buf[start + n:]
                        return opcode, payload
            chunk = self.sock.recv(262144)
            if not chunk:
                raise ConnectionError("closed by the server")
            self.buf += chunk

    def recv_payloads(self):
        """Yield the text payloads (bytes) of every frame already received, reading once
        when none is buffered; answers pings. Cheaper than recv() for heavy readers."""
        chunk = self.sock.recv(262144)
        if not chunk:
            raise ConnectionError("closed by the server")
        buf = self.buf + chunk
        pos, end = 0, len(buf)
        while end - pos >= 2:
            opcode, n = buf[pos] & 0x0F, buf[pos + 1] & 0x7F
            start = pos + 2
            if n == 126:
                if end - pos < 4:
                    break
                n, start = int.from_bytes(buf[pos + 2:pos + 4], "big"), pos + 4
            elif n == 127:
                if end - pos < 10:
                    break
                n, start = int.from_bytes(buf[pos + 2:pos + 10], "big"), pos + 10
            if end < start + n:
                break
            payload = buf[start:start + n]
            pos = start + n
            if opcode == 8:
                raise ConnectionError("close frame")
            if opcode == 1:
                if payload == b"2":
                    self.send("3")
                else:
                    yield payload
        self.buf = buf[pos:]

    def recv(self) -> str:
        while True:
            opcode, payload = self._read_frame()
            if opcode == 8:
                raise ConnectionError("close frame")
            if opcode != 1:
                continue
            text = payload.decode()
            if text == "2":
                self.send("3")
                continue
            return text

    def send(self, text: str) -> None:
        self.sock.sendall(frame(text))

    def connect(self) -> None:
        """Open the main namespace ("40" -> "40{sid}")."""
        assert self.recv().startswith("0{")
        self.send("40")
        assert self.recv().startswith("40")

    def call(self, event: str, *args) -> list:
        """Emit with an ack and wait for it; returns the ack's arguments."""
        self.ack_id += 1
        self.send(f"42{self.ack_id}" + json.dumps([event, *args], separators=(",", ":")))
        prefix = f"43{self.ack_id}"
        while True:
            text = self.recv()
            if text.startswith(prefix + "["):
                return json.loads(text[len(prefix):])

    def reset(self) -> None:
        """Drop the connection with a TCP reset (no close handshake), as a crashed client."""
        try:
            self.sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.sock.close()

def open_clients(port: int, n: int, rooms_of=None, concurrency: int = 200) -> list[Client]:
    """n connected clients; client i joins rooms_of(i) (with an ack) when given."""
    out: list[Client | None] = [None] * n
    pool = gevent.pool.Pool(concurrency)

    def one(i: int) -> None:
        c = Client(port)
        c.connect()
        if rooms_of is not None:
            c.call("join", rooms_of(i))
        out[i] = c

    for i in range(n):
        pool.spawn(one, i)
    pool.join(raise_error=True)
    return [c for c in out if c is not None]

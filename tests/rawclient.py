"""A raw HTTP/1.1 and WebSocket client on gevent sockets, for protocol-level tests.

It speaks bytes exactly as the test writes them (malformed ones included) and
yields to the in-process server while it waits.
"""
from __future__ import annotations

import base64
import json
import os
import struct
from urllib.parse import urlsplit

import gevent
from gevent import socket


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.body[:80]!r}>"


def _connect(url: str, rcvbuf: int | None = None):
    parts = urlsplit(url)
    if rcvbuf is None:
        return socket.create_connection((parts.hostname, parts.port), timeout=10)
    # a small receive window set before connecting: a client that stops reading
    # stalls the server's writes after a few KiB instead of megabytes
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect((parts.hostname, parts.port))
    return sock


def _read_response(f) -> Response:
    status_line = f.readline()
    if not status_line:
        raise ConnectionError("connection closed before a response")
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while True:
        line = f.readline().decode("latin-1").rstrip("\r\n")
        if not line:
            break
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size = int(f.readline().strip(), 16)
            if size == 0:
                f.readline()
                break
            body += f.read(size)
            f.readline()
    else:
        body = f.read(int(headers.get("content-length", "0")))
    return Response(status, headers, body)


def request_bytes(url: str, method: str = "GET", path: str = "/socket.io/", query: str = "",
                  body: bytes | str = b"", headers: dict[str, str] | None = None) -> bytes:
    """The bytes of one HTTP/1.1 request (Connection: close)."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    target = path + ("?" + query if query else "")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {urlsplit(url).netloc}",
             "Connection: close", f"Content-Length: {len(body)}"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Connection:
    """A connection whose request the test writes when it chooses (see ``request``)."""

    def __init__(self, url: str) -> None:
        self.sock = _connect(url)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self, timeout: float = 10.0) -> Response:
        try:
            with gevent.Timeout(timeout):
                return _read_response(self.sock.makefile("rb"))
        finally:
            self.sock.close()


def request(url: str, method: str = "GET", path: str = "/socket.io/", query: str = "",
            body: bytes | str = b"", headers: dict[str, str] | None = None,
            timeout: float = 10.0) -> Response:
    """One HTTP request on a fresh connection."""
    conn = Connection(url)
    conn.send(request_bytes(url, method, path, query, body, headers))
    return conn.response(timeout)


class KeepAliveConnection:
    """One kept-alive HTTP/1.1 connection for several requests (as browsers poll)."""

    def __init__(self, url: str) -> None:
        self.netloc = urlsplit(url).netloc
        self.sock = _connect(url)
        self.f = self.sock.makefile("rb")

    def request(self, method: str = "GET", path: str = "/socket.io/", query: str = "",
                body: bytes | str = b"", timeout: float = 10.0) -> Response:
        if isinstance(body, str):
            body = body.encode("utf-8")
        target = path + ("?" + query if query else "")
        head = (f"{method} {target} HTTP/1.1\r\nHost: {self.netloc}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")
        self.sock.sendall(head.encode("latin-1") + body)
        with gevent.Timeout(timeout):
            return _read_response(self.f)

    def close(self) -> None:
        self.f.close()
        self.sock.close()


def handshake(url: str, path: str = "/socket.io/") -> tuple[str, dict]:
    """A polling handshake; returns (sid, open packet)."""
    r = request(url, path=path, query="EIO=4&transport=polling")
    assert r.status == 200, r
    assert r.text.startswith("0"), r.text
    info = json.loads(r.text[1:].split("\x1e")[0])
    return info["sid"], info


class RawWebSocket:
    """A client WebSocket that sends masked frames and reads whole frames."""

    def __init__(self, url: str, path: str = "/socket.io/", query: str = "EIO=4&transport=websocket",
                 timeout: float = 10.0, headers: dict[str, str] | None = None,
                 rcvbuf: int | None = None) -> None:
        self.sock = _connect(url, rcvbuf)
        self.timeout = timeout
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET {path}?{query} HTTP/1.1\r\nHost: {urlsplit(url).netloc}\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
               + "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items()) + "\r\n")
        self.sock.sendall(req.encode())
        self.f = self.sock.makefile("rb")
        self.headers: dict[str, str] = {}
        with gevent.Timeout(timeout):
            status = self.f.readline()
            while True:
                line = self.f.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                self.headers[name.strip().lower()] = value.strip()
        self.status = int(status.split()[1])
        self.closed = False

    def send_frame(self, opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False) -> None:
        """One masked frame; ``rsv1``: marked compressed (permessage-deflate)."""
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if n < 4096 else \
            (int.from_bytes(payload, "big") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "big")
             ).to_bytes(n, "big")
        self.sock.sendall(head + mask + masked)

    def send(self, data: str | bytes) -> None:
        if isinstance(data, str):
            self.send_frame(1, data.encode("utf-8"))
        else:
            self.send_frame(2, data)

    def recv_frame(self, timeout: float | None = None) -> tuple[int, bytes]:
        """(opcode, payload); (8, ...) for a close frame; raises on timeout."""
        with gevent.Timeout(timeout or self.timeout):
            head = self.f.read(2)
            if len(head) < 2:
                self.closed = True
                raise ConnectionError("connection closed")
            opcode, n = head[0] & 0x0F, head[1] & 0x7F
            if n == 126:
                n = struct.unpack("!H", self.f.read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self.f.read(8))[0]
            payload = self.f.read(n)
        if opcode == 8:
            self.closed = True
        return opcode, payload

    def recv(self, timeout: float | None = None) -> str | bytes:
        """The next text (str) or binary (bytes) message, answering pings on the way."""
        while True:
            opcode, payload = self.recv_frame(timeout)
            if opcode == 1:
                text = payload.decode("utf-8")
                if text == "2":
                    self.send("3")
                    continue
                return text
            if opcode == 2:
                return payload
            if opcode == 8:
                raise ConnectionError(f"closed by server: {payload!r}")

    def wait_closed(self, timeout: float = 5.0) -> bool:
        """Read until the server closes; True when it did within the timeout."""
        try:
            with gevent.Timeout(timeout):
                while True:
                    opcode, _ = self.recv_frame(timeout)
                    if opcode == 8:
                        return True
        except ConnectionError:
            return True
        except gevent.Timeout:
            return False

    def close(self) -> None:
        """Drop the TCP connection (the file from makefile() would keep it open)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.f.close()
        self.sock.close()

"""The TCP sockets under Engine.IO: TCP_NODELAY, and taking a WebSocket's socket over.

Every Engine.IO packet is written whole, so Nagle's algorithm only delays small
writes (acks, pongs) until the peer's delayed ACK arrives, about 40 ms on Linux.
Node sets TCP_NODELAY on every socket its HTTP server accepts; so does roomcast's
WebSocketHandler, and the engine sets it on the request sockets it can reach when
served by another gevent handler (gevent-websocket's, gunicorn's workers).
"""
from __future__ import annotations

import _socket
import socket as stdsocket
from typing import Any


def set_nodelay(sock: Any) -> None:
    """Turn Nagle's algorithm off on a TCP socket; anything else is left alone."""
    if sock is None or getattr(sock, "family", None) not in (stdsocket.AF_INET, stdsocket.AF_INET6):
        return
    try:
        sock.setsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass   # closed already, or a wrapper without setsockopt


def request_socket(environ: dict) -> Any:
    """The client socket of a WSGI request, when the server exposes it.

    gunicorn's own handlers put it in the environ; gevent-websocket hangs it on the
    WebSocket's handler; gevent.pywsgi only keeps it behind the request body's reader.
    """
    sock = environ.get("gunicorn.socket") or environ.get("gunicorn.sock")
    if sock is not None:
        return sock
    ws = environ.get("wsgi.websocket")
    if ws is not None:
        return getattr(getattr(ws, "handler", None), "socket", None)
    reader = getattr(environ.get("wsgi.input"), "rfile", None)   # pywsgi's Input
    return getattr(getattr(reader, "raw", None), "_sock", None)   # socket.SocketIO


def can_take_over(sock: Any) -> bool:
    """Whether take_over() can take this socket: plain TCP from gevent (not TLS)."""
    # asked of the class: a gevent socket answers a missing attribute by raising in __getattr__
    return (not hasattr(type(sock), "cipher") and hasattr(sock, "detach")
            and hasattr(sock, "settimeout"))


def detach(sock: Any) -> Any:
    """A non-blocking socket on the same descriptor; ``sock`` (the server's) lets go of
    it, so that the server's cleanup neither closes nor reads it. Only for
    sockets that can_take_over()."""
    raw = _socket.socket(fileno=sock.detach())
    raw.setblocking(False)
    return raw


def take_over(sock: Any, rfile: Any, read_size: int = 65536) -> tuple[Any, bytes] | None:
    """Take an upgraded connection away from its gevent WSGI server, so that its request
    greenlet can end while the connection lives on in the event loop.

    Returns a non-blocking socket the caller now owns (detach()) and the bytes the
    server had already read past the request; None when ``sock`` cannot be taken over
    (TLS, or not a gevent socket), and then nothing was changed.
    """
    if not can_take_over(sock):
        return None
    sock.settimeout(0.0)   # from here on, reads never wait
    early = b""
    if rfile is not None:
        try:
            early = rfile.read1(read_size) or b""   # what the reader buffered, or b""
        except OSError:
            early = b""
    return detach(sock), early

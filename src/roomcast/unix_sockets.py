"""Unix-socket listeners of the worker processes (the connection handoff, the
inter-process adapter's bus)."""
from __future__ import annotations

import os
import socket as stdsocket

from gevent import socket as gsocket


def listen_unix(path: str, kind: int = stdsocket.SOCK_STREAM, backlog: int = 128) -> gsocket.socket:
    """A gevent socket listening at path (kind: SOCK_STREAM or SOCK_SEQPACKET); a file
    already there (left by an earlier process) is replaced."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    listener = gsocket.socket(stdsocket.AF_UNIX, kind)
    listener.bind(path)
    listener.listen(backlog)
    return listener

"""Session ids that name their worker process (sans-IO).

With several worker processes on one port, a long-polling request may reach any of
them; the Engine.IO sid says which one owns the session. A worker's sids start with
its pid in 4 url-safe base64 characters (Linux pids stay below 2**22), followed by
16 random ones (96 bits), so they keep Node's 20-character shape.
"""
from __future__ import annotations

import base64
import os

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_VALUE = {c: i for i, c in enumerate(_ALPHABET)}
TAG_LENGTH = 4
MAX_PID = 64 ** TAG_LENGTH - 1


def tag_of_pid(pid: int) -> str:
    """The 4-character sid prefix of worker ``pid``."""
    if not 0 < pid <= MAX_PID:
        raise ValueError(f"pid {pid} does not fit a sid tag")
    return "".join(_ALPHABET[(pid >> shift) & 63] for shift in (18, 12, 6, 0))


def pid_of_sid(sid: str) -> int | None:
    """The pid a worker-tagged sid names, or None when it is not one."""
    if len(sid) != 20:
        return None
    pid = 0
    for c in sid[:TAG_LENGTH]:
        value = _VALUE.get(c)
        if value is None:
            return None
        pid = (pid << 6) | value
    return pid or None


def tagged_id(tag: str) -> str:
    """A fresh 20-character sid starting with ``tag`` (empty tag: 20 random characters)."""
    random = base64.urlsafe_b64encode(os.urandom(15)).decode("ascii")
    return tag + random[len(tag):]

"""Exceptions of the Socket.IO layer."""
from __future__ import annotations

from typing import Any

from roomcast import metrics


class ConnectError(Exception):
    """Raised (or passed to ``next``) by a connection middleware to refuse a socket.

    The client receives CONNECT_ERROR ``{"message": message, "data": data}``
    (``data`` left out when it is None), like Node's ``next(err)`` with ``err.data``.
    """

    def __init__(self, message: str = "", data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class DisconnectedError(ConnectionError):
    """A blocking ``emit_with_ack`` whose socket disconnected before the ack came."""


def timeout_error() -> TimeoutError:
    # Node's wording, so that clients and logs read the same on both servers
    if metrics.active is not None:
        metrics.active.timeout("ack")
    return TimeoutError("operation has timed out")


def connect_error_payload(exc: BaseException) -> dict:
    """The CONNECT_ERROR data for a middleware error, as Node builds it."""
    message = getattr(exc, "message", None)
    if not isinstance(message, str) or not message:
        message = str(exc) or type(exc).__name__
    payload: dict = {"message": message}
    data = getattr(exc, "data", None)
    if data is not None:
        payload["data"] = data
    return payload

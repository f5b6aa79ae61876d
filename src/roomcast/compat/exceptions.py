"""The exception names of ``socketio.exceptions``, with the same hierarchy.

Apps written for python-socketio catch and raise these by name, so the
hierarchy (and the ``error_args`` of ConnectionRefusedError) must match.
"""
from __future__ import annotations

from typing import Any


class SocketIOError(Exception):
    pass


class ConnectionError(SocketIOError):  # noqa: A001 - the name apps import
    pass


class ConnectionRefusedError(ConnectionError):  # noqa: A001
    """Raised by a connect handler to refuse the connection.

    The positional arguments become the CONNECT_ERROR payload: the first is
    the message, a second one is sent as ``data``, further ones make ``data``
    a list.
    """

    def __init__(self, *args: Any) -> None:
        if not args:
            self.error_args: dict = {"message": "Connection rejected by server"}
        else:
            self.error_args = {"message": str(args[0])}
            if len(args) == 2:
                self.error_args["data"] = args[1]
            elif len(args) > 2:
                self.error_args["data"] = args[1:]
        super().__init__(*args)


class TimeoutError(SocketIOError):  # noqa: A001
    pass


class BadNamespaceError(SocketIOError):
    pass


class DisconnectedError(SocketIOError):
    pass


__all__ = [
    "SocketIOError", "ConnectionError", "ConnectionRefusedError",
    "TimeoutError", "BadNamespaceError", "DisconnectedError",
]

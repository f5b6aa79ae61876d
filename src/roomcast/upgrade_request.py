"""A plain WebSocket upgrade request, read straight from the first bytes received.

Most connects of a Socket.IO server are one small ``GET /socket.io/?EIO=4&
transport=websocket`` with a dozen ``Name: value`` headers, all in the first
segment. gevent.pywsgi and gevent-websocket spend about a third of a connect's
CPU reading such a request (a file object, line reads, a message object, the
environ twice over) and answering it. roomcast's WebSocketHandler reads these
requests here instead (``parse``), builds the very environ pywsgi would
(``environ_items``) and answers the 101 itself (``switching_protocols``).
Anything else (a request not yet whole, folded or odd header lines, a body, a
version or key that gevent-websocket would refuse) returns None, and the request
goes the usual pywsgi way. Sans-IO.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import NamedTuple

MAX_HEADERS = 100          # http.client's limit, as pywsgi reads headers
WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SUPPORTED_VERSIONS = ("13", "8", "7")   # gevent-websocket's

# a header name as the feed parser reads it ([\041-\071\073-\176] are its name characters)
_NAME = re.compile(r"[\041-\071\073-\176]+")
# headers that mean a body, or that pywsgi turns into something else than HTTP_*
_NOT_PLAIN = frozenset(("CONTENT_TYPE", "CONTENT_LENGTH", "HTTP_TRANSFER_ENCODING", "HTTP_EXPECT"))
# header name -> its environ key ("" for a name pywsgi drops); clients send the same few
_ENVIRON_KEYS: dict[str, str] = {}
_MAX_KEYS = 1024


def _environ_key(name: str) -> str | None:
    """The environ key of a header name; None for a name the feed parser would not read."""
    key = _ENVIRON_KEYS.get(name)
    if key is None:
        if _NAME.fullmatch(name) is None:
            return None
        if "_" in name:
            key = ""   # pywsgi (and roomcast's WebSocketHandler) drop them
        else:
            key = name.replace("-", "_").upper()
            key = key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key
        if len(_ENVIRON_KEYS) < _MAX_KEYS:
            _ENVIRON_KEYS[name] = key
    return key


class UpgradeRequest(NamedTuple):
    requestline: str      # the request line, as pywsgi logs it
    path: str             # PATH_INFO (no escapes: a path with % goes the pywsgi way)
    query: str            # QUERY_STRING
    headers: dict[str, str]   # environ items: HTTP_* as pywsgi would give them
    length: int           # bytes of the request, up to and including its empty line


def parse(data: bytes) -> UpgradeRequest | None:
    """The plain WebSocket upgrade request at the start of ``data``, or None."""
    end = data.find(b"\r\n\r\n")
    if end < 0 or not data.startswith(b"GET /"):
        return None
    text = data[:end + 2].decode("latin-1")   # the request line and header lines, CRLF each
    line_end = text.index("\r\n")
    words = text[:line_end].split()
    if len(words) != 3 or words[2] != "HTTP/1.1":
        return None
    path, _, query = words[1].partition("?")
    if "%" in path:
        return None
    headers = environ_items(text[line_end + 2:])
    if headers is None or not _is_websocket_upgrade(headers):
        return None
    return UpgradeRequest(text[:line_end], path, query, headers, end + 4)


def environ_items(block: str) -> dict[str, str] | None:
    """The HTTP_* environ items of a block of CRLF-ended header lines, merged as pywsgi
    merges repeated names; None for a line that is no plain header, for more than
    MAX_HEADERS lines, or for a header that means a body."""
    lines = block.split("\r\n")
    n = len(lines) - 1
    if lines.pop() or n > MAX_HEADERS or block.count("\n") != n or block.count("\r") != n:
        return None   # not CRLF-ended, too many lines, or a bare CR or LF in a line
    env: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        key = _environ_key(name)
        if key is None or not colon:
            return None
        if not key:
            continue
        if key in _NOT_PLAIN:
            return None
        value = value.strip()
        if key in env:
            env[key] += ("; " if "COOKIE" in key else ",") + value
        else:
            env[key] = value
    return env


def _is_websocket_upgrade(headers: dict[str, str]) -> bool:
    """What gevent-websocket checks before it answers 101 (else it answers an error,
    which the pywsgi way does)."""
    if headers.get("HTTP_UPGRADE", "").lower() != "websocket":
        return False
    if "upgrade" not in headers.get("HTTP_CONNECTION", "").lower():
        return False
    if headers.get("HTTP_SEC_WEBSOCKET_VERSION") not in SUPPORTED_VERSIONS:
        return False
    try:
        return len(base64.b64decode(headers.get("HTTP_SEC_WEBSOCKET_KEY", "").strip())) == 16
    except (binascii.Error, ValueError):
        return False


def switching_protocols(key: str, extensions: str | None = None) -> bytes:
    """The 101 answer to a request with this Sec-WebSocket-Key, byte for byte as
    gevent-websocket writes it (with the extensions the engine agreed to)."""
    accept = base64.b64encode(hashlib.sha1(key.strip().encode("latin-1") + WEBSOCKET_GUID).digest())
    head = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n")
    if extensions:
        head += b"Sec-WebSocket-Extensions: " + extensions.encode("latin-1") + b"\r\n"
    return head + b"\r\n"

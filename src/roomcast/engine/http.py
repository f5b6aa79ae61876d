"""Small WSGI helpers shared by the Engine.IO request handlers."""
from __future__ import annotations

import gzip
import json
import zlib
from functools import lru_cache
from typing import Callable, Iterable, NamedTuple
from urllib.parse import parse_qs

# Engine.IO error codes and the messages Node's engine.io answers with.
UNKNOWN_TRANSPORT = 0
UNKNOWN_SID = 1
BAD_HANDSHAKE_METHOD = 2
BAD_REQUEST = 3
FORBIDDEN = 4
UNSUPPORTED_PROTOCOL_VERSION = 5
SHUTTING_DOWN = -1   # roomcast's own: a handshake while the server closes (503)
ERROR_MESSAGES = {
    UNKNOWN_TRANSPORT: "Transport unknown",
    UNKNOWN_SID: "Session ID unknown",
    BAD_HANDSHAKE_METHOD: "Bad handshake method",
    BAD_REQUEST: "Bad request",
    FORBIDDEN: "Forbidden",
    UNSUPPORTED_PROTOCOL_VERSION: "Unsupported protocol version",
    SHUTTING_DOWN: "Server shutting down",
}

Headers = list[tuple[str, str]]

ORIGIN_NOT_ALLOWED = "Origin not allowed"


class Refusal(NamedTuple):
    """A complete HTTP answer that refuses a request before any Engine.IO work."""
    status: str
    content_type: str
    body: bytes


def origin_refusal() -> Refusal:
    """The answer to a request from an origin that ``cors`` does not name."""
    body = json.dumps({"code": FORBIDDEN, "message": ORIGIN_NOT_ALLOWED}, separators=(",", ":"))
    return Refusal("403 Forbidden", "application/json", body.encode("utf-8"))


def query_of(environ: dict) -> dict[str, str]:
    """The query string as a dict of first values (Engine.IO never repeats a key)."""
    return dict(_parsed_query(environ.get("QUERY_STRING", "")))


@lru_cache(maxsize=256)   # handshakes mostly send the same query string
def _parsed_query(query: str) -> tuple[tuple[str, str], ...]:
    return tuple((k, v[0]) for k, v in parse_qs(query, keep_blank_values=True).items())


def request_headers(environ: dict) -> dict[str, str]:
    """Request headers with lower-case, dash-separated names, as Node exposes them."""
    headers = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].replace("_", "-").lower()] = value
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    if environ.get("CONTENT_LENGTH"):
        headers["content-length"] = environ["CONTENT_LENGTH"]
    return headers


def respond(start_response: Callable, status: str, body: bytes | str = b"",
            content_type: str | None = None, headers: Headers = ()) -> Iterable[bytes]:
    if isinstance(body, str):
        body = body.encode("utf-8")
    out = list(headers)
    if content_type:
        out.append(("Content-Type", content_type))
    out.append(("Content-Length", str(len(body))))
    start_response(status, out)
    return [body]


def error_response(start_response: Callable, code: int, message: str | None = None,
                   headers: Headers = ()) -> Iterable[bytes]:
    status = ("403 Forbidden" if code == FORBIDDEN else
              "503 Service Unavailable" if code == SHUTTING_DOWN else "400 Bad Request")
    body = json.dumps({"code": code, "message": message or ERROR_MESSAGES[code]},
                      separators=(",", ":"))
    return respond(start_response, status, body, "application/json", headers)


def compress(body: bytes, accept_encoding: str, threshold: int) -> tuple[bytes, str | None]:
    """gzip or deflate a polling response as Node's httpCompression does."""
    if len(body) < threshold:
        return body, None
    encodings = [e.split(";")[0].strip() for e in accept_encoding.split(",")]
    if "gzip" in encodings:
        return gzip.compress(body, compresslevel=6), "gzip"
    if "deflate" in encodings:
        return zlib.compress(body, 6), "deflate"
    return body, None

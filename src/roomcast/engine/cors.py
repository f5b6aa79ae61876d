"""CORS for the long-polling requests, with the semantics of Node's `cors` package,
and the origin check of every Engine.IO request.

Headers: a disallowed origin gets no Access-Control-Allow-Origin header, so the
browser blocks the response (as with Node). Refusal (unlike Node): when ``origin``
*names* origins (a string other than "*", a list, or a callable), a request whose
Origin header is another one is refused with 403, WebSocket upgrades included,
since browsers apply no CORS to WebSockets (cross-site WebSocket hijacking).
Requests without an Origin header (non-browser clients) pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Union

OriginSpec = Union[str, bool, Iterable[str], Callable[[str], bool]]

DEFAULT_METHODS = "GET,HEAD,PUT,PATCH,POST,DELETE"


@dataclass
class CorsOptions:
    origin: OriginSpec = "*"
    credentials: bool = False
    methods: str = DEFAULT_METHODS
    allowed_headers: list[str] | None = None
    exposed_headers: list[str] | None = None
    max_age: int | None = None

    @classmethod
    def from_value(cls, value) -> "CorsOptions | None":
        """Accept None, a CorsOptions, a dict of its fields, or a bare origin spec."""
        if value is None or value is False:
            return None
        if isinstance(value, CorsOptions):
            return value
        if isinstance(value, dict):
            kwargs = dict(value)
            if "allowedHeaders" in kwargs:
                kwargs["allowed_headers"] = kwargs.pop("allowedHeaders")
            if "maxAge" in kwargs:
                kwargs["max_age"] = kwargs.pop("maxAge")
            if isinstance(kwargs.get("methods"), (list, tuple)):
                kwargs["methods"] = ",".join(kwargs["methods"])
            return cls(**kwargs)
        return cls(origin=value)

    @property
    def names_origins(self) -> bool:
        """True when ``origin`` restricts origins (not "*", True or False)."""
        spec = self.origin
        return not (spec is True or spec is False or spec == "*")

    def origin_allowed(self, request_origin: str) -> bool:
        """Whether a request from ``request_origin`` may be served at all."""
        if not self.names_origins:
            return True
        spec = self.origin
        if isinstance(spec, str):
            return spec == request_origin
        if callable(spec):
            return bool(spec(request_origin))
        return request_origin in set(spec)

    def allowed_origin(self, request_origin: str | None) -> str | None:
        """The Access-Control-Allow-Origin value for this request, or None."""
        spec = self.origin
        if spec == "*" and not self.credentials:
            return "*"
        if not request_origin:
            return "*" if spec == "*" else None
        if spec is True or spec == "*":
            return request_origin  # reflect, as credentials forbid "*"
        if isinstance(spec, str):
            return spec if spec == request_origin else None
        if callable(spec):
            return request_origin if spec(request_origin) else None
        return request_origin if request_origin in set(spec) else None

    def headers(self, environ: dict, preflight: bool) -> list[tuple[str, str]]:
        origin = environ.get("HTTP_ORIGIN")
        allow = self.allowed_origin(origin)
        out: list[tuple[str, str]] = []
        if allow is None:
            return [("Vary", "Origin")]
        out.append(("Access-Control-Allow-Origin", allow))
        if allow != "*":
            out.append(("Vary", "Origin"))
        if self.credentials:
            out.append(("Access-Control-Allow-Credentials", "true"))
        if self.exposed_headers and not preflight:
            out.append(("Access-Control-Expose-Headers", ",".join(self.exposed_headers)))
        if preflight:
            out.append(("Access-Control-Allow-Methods", self.methods))
            requested = environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS")
            if self.allowed_headers is not None:
                out.append(("Access-Control-Allow-Headers", ",".join(self.allowed_headers)))
            elif requested:
                out.append(("Access-Control-Allow-Headers", requested))
                out.append(("Vary", "Access-Control-Request-Headers"))
            if self.max_age is not None:
                out.append(("Access-Control-Max-Age", str(self.max_age)))
        return out

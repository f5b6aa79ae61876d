"""The ``roomcast`` command: ``roomcast serve module:app [--workers N] [--host H] [--port P]``.

``module:app`` names a roomcast Server, a roomcast WSGIApp or any WSGI app that
contains roomcast Servers (Flask, Django...), as gunicorn's app argument does; the
attribute may be a call, ``module:create_app()``. With ``--workers N`` > 1 the
module is imported in each worker process (after the fork).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any

from roomcast.workers import DEFAULT_GRACEFUL_TIMEOUT, serve


def load_app(spec: str) -> Any:
    """``module:attribute`` (``module`` alone means ``module:app``) -> the object."""
    module_name, _, attribute = spec.partition(":")
    attribute = attribute or "app"
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    call = attribute.endswith("()")
    target: Any = module
    for part in attribute.removesuffix("()").split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise SystemExit(f"roomcast: {module_name} has no attribute {attribute!r}") from None
    return target() if call else target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="roomcast", description="roomcast Socket.IO server")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="serve module:app")
    run.add_argument("app", help="module:attribute of a roomcast Server or a WSGI app")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=5000)
    run.add_argument("--workers", type=int, default=1,
                     help="worker processes on the one port (default 1)")
    run.add_argument("--graceful-timeout", type=float, default=DEFAULT_GRACEFUL_TIMEOUT,
                     help="seconds a draining worker waits for requests in flight (default 10)")
    run.add_argument("--metrics-port", type=int, default=None,
                     help="serve Prometheus metrics on this port (needs prometheus_client)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.workers == 1:
        load_app(args.app)   # fail here, before listening, when the app does not import
    print(f"roomcast: serving {args.app} on http://{args.host}:{args.port} "
          f"with {args.workers} worker(s)", file=sys.stderr, flush=True)
    try:
        serve(lambda: load_app(args.app), args.host, args.port, workers=args.workers,
              graceful_timeout=args.graceful_timeout, metrics_port=args.metrics_port)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

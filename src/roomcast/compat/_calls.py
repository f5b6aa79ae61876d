"""Calling handlers that may use an older, shorter signature.

python-socketio retries a handler with fewer arguments when the call raises
TypeError, which also swallows TypeErrors raised *inside* the handler. Here
the signature is checked first, and the retry-on-TypeError path is kept only
for callables whose signature cannot tell.

The signature checked is the callable's own, not the one ``functools.wraps``
copies onto it: a wrapper such as Flask-SocketIO's ``_handler(sid, *args)`` is
called with what python-socketio passes, and passes it on itself. A wrapper
that takes ``*args`` says nothing about what it passes on, so it gets
python-socketio's treatment (the full call, then the shorter one on TypeError).
"""
from __future__ import annotations

import inspect
from typing import Any, Callable


def _binds(fn: Callable, nargs: int) -> bool | None:
    """Whether fn accepts nargs positional arguments (None: unknown)."""
    try:
        sig = inspect.signature(fn, follow_wrapped=False)
    except (TypeError, ValueError):
        return None
    if inspect.unwrap(fn) is not fn and any(
            p.kind is inspect.Parameter.VAR_POSITIONAL for p in sig.parameters.values()):
        return None   # a pass-through wrapper: what fits is decided further in
    try:
        sig.bind(*range(nargs))
    except TypeError:
        return False
    return True


def call_flexibly(fn: Callable, args: tuple, fallback: tuple) -> Any:
    """fn(*args), or fn(*fallback) when fn only takes the shorter form."""
    fits = _binds(fn, len(args))
    if fits:
        return fn(*args)
    if fits is False and _binds(fn, len(fallback)):
        return fn(*fallback)
    if fits is None:
        try:
            return fn(*args)
        except TypeError:
            return fn(*fallback)
    return fn(*args)  # neither fits: let the natural TypeError say why

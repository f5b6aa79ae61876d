"""Calling handlers that may use an older, shorter signature.

python-socketio retries a handler with fewer arguments when the call raises
TypeError, which also swallows TypeErrors raised *inside* the handler. Here
the signature is checked first, and the retry-on-TypeError path is kept only
for callables whose signature cannot be inspected.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable


def _binds(fn: Callable, nargs: int) -> bool | None:
    """Whether fn accepts nargs positional arguments (None: unknown)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
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

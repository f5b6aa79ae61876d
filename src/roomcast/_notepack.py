"""msgpack encoding byte-identical to notepack.io 3.0.1 (what Node's Redis adapter uses).

notepack differs from a plain msgpack packer in a few ways that matter on the wire:

* JavaScript has one number type, so an integral float (``3.0``) is written as the
  smallest integer type, like the int ``3``; other numbers are float64 (never float32).
* Dates are msgpack timestamps (ext type -1): 32-bit when there is no sub-second part,
  64-bit up to 2**34 s, 96-bit otherwise. Naive datetimes are taken as UTC.
* Map keys are strings (JavaScript object keys); ints, floats, bools and None are
  turned into their JSON spelling, as ``json.dumps`` does.

Decoding accepts notepack's legacy extensions too: ``d4 00 00`` (undefined -> None),
``d7 00`` (ms since the epoch -> datetime) and ext type 0 (ArrayBuffer -> bytes).
Unknown extensions decode to ``[type, data]`` as notepack does.

The packing itself is done by msgpack's C packer; this module only normalises the few
values whose msgpack-python encoding would differ from notepack's. Sans-IO.
"""
from __future__ import annotations

import datetime as _dt
from typing import Any

import msgpack

__all__ = ["encode", "decode", "NotepackError"]

_UTC = _dt.timezone.utc
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_UTC)
_MAX_SAFE = 2**53  # beyond this, integral floats are not exact integers in JavaScript


class NotepackError(ValueError):
    """Data that cannot be decoded as notepack/msgpack."""


def _key(k: Any) -> str:
    if isinstance(k, str):
        return k
    if k is True:
        return "true"
    if k is False:
        return "false"
    if k is None:
        return "null"
    if isinstance(k, int):
        return str(k)
    if isinstance(k, float):
        return repr(int(k)) if k.is_integer() and abs(k) < _MAX_SAFE else repr(k)
    raise TypeError(f"map keys must be str, int, float, bool or None, not {type(k).__name__}")


def _timestamp(value: _dt.datetime) -> msgpack.Timestamp:
    # msgpack's Timestamp picks the 32/64/96-bit form by the same rule as notepack
    if value.tzinfo is None:
        value = value.replace(tzinfo=_UTC)
    delta = value - _EPOCH
    return msgpack.Timestamp(delta.days * 86400 + delta.seconds, delta.microseconds * 1000)


def _normalise(value: Any) -> Any:
    """Return ``value`` with notepack's spelling of floats, datetimes and keys.

    Returns the very same object when nothing needs changing, so the common payload
    (str/int/bytes in lists and str-keyed dicts) costs a walk and no copies.
    """
    t = type(value)
    if t is str or t is int or t is bytes or t is bool or value is None:
        return value
    if t is float:
        if value.is_integer() and abs(value) < _MAX_SAFE:
            return int(value)
        return value
    if t is list or t is tuple:
        out = None
        for i, item in enumerate(value):
            new = _normalise(item)
            if new is not item:
                if out is None:
                    out = list(value)
                out[i] = new
        if out is not None:
            return out
        return value
    if t is dict:
        changed = False
        items = []
        for k, v in value.items():
            nk = k if type(k) is str else _key(k)
            nv = _normalise(v)
            if nk is not k or nv is not v:
                changed = True
            items.append((nk, nv))
        return dict(items) if changed else value
    if isinstance(value, _dt.datetime):
        return _timestamp(value)
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    # subclasses of the basic types (IntEnum, str subclasses, OrderedDict, ...)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _normalise(float(value))
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, dict):
        return _normalise(dict(value))
    if isinstance(value, (list, tuple)):
        return _normalise(list(value))
    if isinstance(value, (msgpack.ExtType, msgpack.Timestamp)):
        return value
    raise TypeError(f"cannot encode {type(value).__name__} as msgpack")


def encode(value: Any) -> bytes:
    """Encode ``value`` exactly as notepack.io's ``encode`` would the equivalent JS value."""
    try:
        return msgpack.packb(_normalise(value), use_bin_type=True)
    except OverflowError as exc:  # ints beyond 64 bits
        raise TypeError(f"integer out of msgpack range: {exc}") from None


def _ext_hook(code: int, data: bytes) -> Any:
    if code == 0:
        if len(data) == 1:
            return None  # notepack's legacy 'undefined'
        if len(data) == 8:  # notepack's legacy date: int64 milliseconds
            ms = int.from_bytes(data, "big", signed=True)
            return _EPOCH + _dt.timedelta(milliseconds=ms)
        return bytes(data)  # legacy ArrayBuffer
    return [code, bytes(data)]


def decode(data: bytes | bytearray | memoryview) -> Any:
    """Decode one notepack/msgpack value; raises NotepackError on malformed input."""
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=False,
            timestamp=3,  # datetime in UTC
            ext_hook=_ext_hook,
            unicode_errors="replace",
        )
    except (ValueError, msgpack.UnpackException, TypeError, OverflowError) as exc:
        raise NotepackError(f"invalid msgpack data: {exc}") from None

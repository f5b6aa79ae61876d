"""msgpack encoding byte-identical to notepack.io 3.0.1 (what Node's Redis adapter uses).

notepack differs from a plain msgpack packer in a few ways that matter on the wire:

* JavaScript has one number type, so an integral float (``3.0``) is written as the
  smallest integer type, like the int ``3``; other numbers are float64 (never float32).
* Dates are msgpack timestamps (ext type -1): 32-bit when there is no sub-second part,
  64-bit up to 2**34 s, 96-bit otherwise. Naive datetimes are taken as UTC. A
  ``datetime.date`` is its ISO string, as the JSON sent to clients spells it.
* Map keys are strings (JavaScript object keys); ints, floats, bools and None are
  turned into their JSON spelling, as ``json.dumps`` does.
* An int outside msgpack's range (>= 2**64 or < -2**63; JSON gives Python ints of
  any size, e.g. a client's ``1e20``) is written as float64: its JavaScript value.
  (notepack itself writes such a number as a wrapped-around uint64.)

Decoding accepts notepack's legacy extensions too: ``d4 00 00`` (undefined -> None),
``d7 00`` (ms since the epoch -> datetime) and ext type 0 (ArrayBuffer -> bytes).
Unknown extensions decode to ``[type, data]`` as notepack does. A date outside
``datetime``'s years 1-9999 (JavaScript's go from -271821 to 275760, e.g. the common
"never" ``new Date(8.64e15)``) decodes to the string its ``toJSON()`` gives, which is
what Node's clients receive: ``"+275760-09-13T00:00:00.000Z"``; beyond JavaScript's
range (an Invalid Date) it decodes to None, as ``toJSON()`` gives null.

The packing itself is done by msgpack's C packer; this module only normalises the few
values whose msgpack-python encoding would differ from notepack's. Sans-IO.
"""
from __future__ import annotations

import datetime as _dt
import math
from typing import Any

import msgpack

__all__ = ["encode", "decode", "NotepackError"]

_UTC = _dt.timezone.utc
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_UTC)
_MAX_SAFE = 2**53  # beyond this, integral floats are not exact integers in JavaScript
_INT_MIN, _UINT_MAX = -(2**63), 2**64 - 1   # msgpack's integer range
_JS_DATE_MAX_MS = 8_640_000_000_000_000     # a JavaScript Date's range, both ways


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


def _js_number(value: int) -> float:
    """An int beyond msgpack's range as JavaScript holds it: a float64 (or +-Infinity)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _legacy_date(value: _dt.datetime) -> msgpack.ExtType:
    # notepack.io 2.x (socket.io-msgpack-parser 3.x): fixext 8, type 0, int64 ms since the epoch
    if value.tzinfo is None:
        value = value.replace(tzinfo=_UTC)
    ms = (value - _EPOCH) // _dt.timedelta(milliseconds=1)
    return msgpack.ExtType(0, ms.to_bytes(8, "big", signed=True))


def _normalise(value: Any, date: Any = _timestamp) -> Any:
    """Return ``value`` with notepack's spelling of floats, datetimes and keys
    (``date`` turns a datetime into its extension value).

    Returns the very same object when nothing needs changing, so the common payload
    (str/int/bytes in lists and str-keyed dicts) costs a walk and no copies.
    """
    t = type(value)
    if t is int:
        return value if _INT_MIN <= value <= _UINT_MAX else _js_number(value)
    if t is str or t is bytes or t is bool or value is None:
        return value
    if t is float:
        if value.is_integer() and abs(value) < _MAX_SAFE:
            return int(value)
        return value
    if t is list or t is tuple:
        out = None
        for i, item in enumerate(value):
            new = _normalise(item, date)
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
            nv = _normalise(v, date)
            if nk is not k or nv is not v:
                changed = True
            items.append((nk, nv))
        return dict(items) if changed else value
    if isinstance(value, _dt.datetime):
        return date(value)
    if isinstance(value, _dt.date):   # no JavaScript type: its JSON spelling, as clients get it
        return value.isoformat()
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    # subclasses of the basic types (IntEnum, str subclasses, OrderedDict, ...)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return _normalise(int(value), date)
    if isinstance(value, float):
        return _normalise(float(value), date)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, dict):
        return _normalise(dict(value), date)
    if isinstance(value, (list, tuple)):
        return _normalise(list(value), date)
    if isinstance(value, (msgpack.ExtType, msgpack.Timestamp)):
        return value
    raise TypeError(f"cannot encode {type(value).__name__} as msgpack")


def encode(value: Any, legacy_dates: bool = False) -> bytes:
    """Encode ``value`` exactly as notepack.io 3.x's ``encode`` would the equivalent JS
    value (TypeError for what has no msgpack spelling); with ``legacy_dates``, datetimes
    as notepack.io 2.x writes a Date (what socket.io-msgpack-parser 3.x uses, and what
    its decoder reads back as a Date)."""
    try:
        return msgpack.packb(_normalise(value, _legacy_date if legacy_dates else _timestamp),
                             use_bin_type=True)
    except (OverflowError, ValueError) as exc:  # e.g. nesting deeper than msgpack allows
        raise TypeError(f"cannot encode as msgpack: {exc}") from None


def _js_date(ms: int) -> Any:
    """What ``new Date(ms)`` is in Python: a UTC datetime when the year is in 1-9999,
    else the string of the Date's ``toJSON()``, or None for an Invalid Date."""
    if abs(ms) > _JS_DATE_MAX_MS:
        return None
    try:
        return _EPOCH + _dt.timedelta(milliseconds=ms)
    except OverflowError:
        pass
    days, ms_of_day = divmod(ms, 86_400_000)
    year, month, day = _civil_from_days(days)
    hours, rest = divmod(ms_of_day, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    # Date.prototype.toISOString: years outside 0-9999 take a sign and six digits
    year_text = (f"{year:04d}" if 0 <= year <= 9999
                 else f"{'+' if year > 0 else '-'}{abs(year):06d}")
    return (f"{year_text}-{month:02d}-{day:02d}T"
            f"{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}Z")


def _civil_from_days(days: int) -> tuple[int, int, int]:
    """Proleptic Gregorian (year, month, day) of a day count from 1970-01-01, for any
    year (Howard Hinnant's days-to-civil algorithm)."""
    days += 719_468
    era = days // 146_097
    doe = days - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def _timestamp_ms(ts: msgpack.Timestamp) -> int:
    # notepack: new Date(seconds * 1e3 + nanoseconds / 1e6), truncated toward zero
    total_ns = ts.seconds * 1_000_000_000 + ts.nanoseconds
    ms = abs(total_ns) // 1_000_000
    return ms if total_ns >= 0 else -ms


def _with_dates(value: Any) -> Any:
    """``value`` decoded with msgpack Timestamps, each Timestamp made a date."""
    t = type(value)
    if t is msgpack.Timestamp:
        return _js_date(_timestamp_ms(value))
    if t is list:
        return [_with_dates(item) for item in value]
    if t is dict:
        return {k: _with_dates(v) for k, v in value.items()}
    return value


def _ext_hook(code: int, data: bytes) -> Any:
    if code == 0:
        if len(data) == 1:
            return None  # notepack's legacy 'undefined'
        if len(data) == 8:  # notepack's legacy date: int64 milliseconds
            return _js_date(int.from_bytes(data, "big", signed=True))
        return bytes(data)  # legacy ArrayBuffer
    return [code, bytes(data)]


def _unpack(data: bytes | bytearray | memoryview, timestamp: int) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False, timestamp=timestamp,
                           ext_hook=_ext_hook, unicode_errors="replace")


def decode(data: bytes | bytearray | memoryview) -> Any:
    """Decode one notepack/msgpack value; raises NotepackError on malformed input."""
    try:
        try:
            return _unpack(data, timestamp=3)   # dates as UTC datetimes
        except OverflowError:
            # a date beyond datetime's years, which msgpack refuses: the rare slow path
            return _with_dates(_unpack(data, timestamp=0))
    except (ValueError, msgpack.UnpackException, TypeError, OverflowError) as exc:
        raise NotepackError(f"invalid msgpack data: {exc}") from None

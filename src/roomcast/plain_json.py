"""The JSON encoder both encoder twins (_encoder_py.py, ext/_encoder_c.pyx) try first.

Most event data is plain JSON: str, numbers, bools, None, lists and dicts. One shared C
encoder, built once (building one per call costs about a third of encoding a small event)
and without the circular-reference check, encodes it compactly. Anything else (a
bytes-like, a date, another object, NaN or Infinity, a cycle) raises one of
``NOT_PLAIN_ERRORS``, and the caller takes its full path from the start, which gives
the same text or the same error. Sans-IO.
"""
from __future__ import annotations

from json.encoder import c_make_encoder, encode_basestring

__all__ = ["NOT_PLAIN_ERRORS", "NotPlain", "plain_encoder"]


class NotPlain(Exception):
    """Data the plain encoder hands back: a bytes-like, a date or another object."""


def _not_plain(obj: object) -> object:
    raise NotPlain


# plain_encoder(data, 0) -> an iterable of str chunks; None without json's C speedups.
# Its flags: no sort_keys, no skipkeys, no allow_nan (NaN -> ValueError); a cycle ends in
# RecursionError.
plain_encoder = (c_make_encoder(None, _not_plain, encode_basestring, None, ":", ",",
                                False, False, False)
                 if c_make_encoder is not None else None)

NOT_PLAIN_ERRORS = (NotPlain, ValueError, RecursionError)

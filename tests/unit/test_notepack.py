"""roomcast._notepack against bytes produced by the real notepack.io 3.0.1 encoder.

The expected hex strings were generated with `require("notepack.io").encode(v)` in Node
for the JavaScript value equivalent to each Python value; the two Redis examples are
the ones in node-socketio.md section 4.
"""
from __future__ import annotations

import datetime as dt
import math
import struct

import pytest

from roomcast import _notepack

UTC = dt.timezone.utc


def _when(ms: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(milliseconds=ms)


# (python value, notepack hex)
CASES = {
    "fixint": (0, "00"),
    "fix127": (127, "7f"),
    "u8": (128, "cc80"),
    "u8max": (255, "ccff"),
    "u16": (256, "cd0100"),
    "u16max": (65535, "cdffff"),
    "u32": (65536, "ce00010000"),
    "u32max": (4294967295, "ceffffffff"),
    "u64": (4294967296, "cf0000000100000000"),
    "u64big": (2**52 + 5, "cf0010000000000005"),
    "negfix": (-1, "ff"),
    "negfix32": (-32, "e0"),
    "i8": (-33, "d0df"),
    "i8min": (-128, "d080"),
    "i16": (-129, "d1ff7f"),
    "i16min": (-32768, "d18000"),
    "i32": (-32769, "d2ffff7fff"),
    "i32min": (-2147483648, "d280000000"),
    "i64": (-2147483649, "d3ffffffff7fffffff"),
    "i64big": (-(2**52) - 7, "d3ffeffffffffffff9"),
    "float": (1.5, "cb3ff8000000000000"),
    "floatneg": (-0.1, "cbbfb999999999999a"),
    "negzero": (-0.0, "00"),
    "inf": (math.inf, "cb7ff0000000000000"),
    "intfloat": (3.0, "03"),
    "big1e15": (1e15, "cf00038d7ea4c68000"),
    "t": (True, "c3"),
    "f": (False, "c2"),
    "nil": (None, "c0"),
    "str0": ("", "a0"),
    "str31": ("a" * 31, "bf" + "61" * 31),
    "str32": ("a" * 32, "d920" + "61" * 32),
    "str255": ("b" * 255, "d9ff" + "62" * 255),
    "str256": ("c" * 256, "da0100" + "63" * 256),
    "str65536": ("d" * 65536, "db00010000" + "64" * 65536),
    "unicode": ("héllo wörld ✓ 😀", "b668c3a96c6c6f2077c3b6726c6420e29c9320f09f9880"),
    "longunicode": ("é" * 40, "d950" + "c3a9" * 40),
    "bin0": (b"", "c400"),
    "bin3": (b"\x01\x02\x03", "c403010203"),
    "bin256": (b"\x07" * 256, "c50100" + "07" * 256),
    "bin65536": (b"\x09" * 65536, "c600010000" + "09" * 65536),
    "arr15": (list(range(15)), "9f000102030405060708090a0b0c0d0e"),
    "arr16": (list(range(16)), "dc0010000102030405060708090a0b0c0d0e0f"),
    "arr65536": ([1] * 65536, "dd00010000" + "01" * 65536),
    "map15": (
        {f"k{i}": i for i in range(15)},
        "8fa26b3000a26b3101a26b3202a26b3303a26b3404a26b3505a26b3606a26b3707a26b3808"
        "a26b3909a36b31300aa36b31310ba36b31320ca36b31330da36b31340e",
    ),
    "map16": (
        {f"k{i}": i for i in range(16)},
        "de0010a26b3000a26b3101a26b3202a26b3303a26b3404a26b3505a26b3606a26b3707a26b3808"
        "a26b3909a36b31300aa36b31310ba36b31320ca36b31330da36b31340ea36b31350f",
    ),
    "nested": ({"a": [1, {"b": None, "c": [True, "x"]}], "d": {}}, "82a161920182a162c0a16392c3a178a16480"),
    "date32": (_when(1700000000000), "d6ff6553f100"),
    "date64": (_when(1700000000123), "d7ff1d5353006553f100"),
    "date96neg": (_when(-1000), "c70cff00000000ffffffffffffffff"),
    "date96big": (_when(2**34 * 1000 + 5), "c70cff004c4b400000000400000000"),
    "date0": (_when(0), "d6ff00000000"),
    # node-socketio.md section 4: the emitter's broadcast, and the adapter's (68 bytes)
    "emitterEx": (
        ["emitter", {"type": 2, "data": ["bin", b"\x01\x02\x03"], "nsp": "/"},
         {"rooms": [], "flags": {"volatile": True}, "except": []}],
        "93a7656d697474657283a47479706502a46461746192a362696ec403010203a36e7370a12f83"
        "a5726f6f6d7390a5666c61677381a8766f6c6174696c65c3a665786365707490",
    ),
    "adapterEx": (
        ["ABCDEF", {"type": 2, "data": ["hello", "world"], "nsp": "/"},
         {"rooms": ["room1"], "except": [], "flags": {}}],
        "93a641424344454683a47479706502a46461746192a568656c6c6fa5776f726c64a36e7370a12f83"
        "a5726f6f6d7391a5726f6f6d31a665786365707490a5666c61677380",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_encode_matches_notepack(name):
    value, expected = CASES[name]
    assert _notepack.encode(value).hex() == expected


def test_adapter_example_is_68_bytes():
    assert len(_notepack.encode(CASES["adapterEx"][0])) == 68


def test_nan_is_float64():
    assert _notepack.encode(math.nan).hex() == "cb7ff8000000000000"


@pytest.mark.parametrize("name", sorted(set(CASES) - {"negzero", "intfloat", "big1e15"}))
def test_decode_inverts_encode(name):
    value, expected = CASES[name]
    assert _notepack.decode(bytes.fromhex(expected)) == value


def test_python_only_types_take_their_javascript_spelling():
    # tuples are arrays, bytearray/memoryview are bin, non-str keys become JSON keys
    assert _notepack.encode((1, bytearray(b"\x01"), memoryview(b"\x02"))) == bytes.fromhex("9301c40101c40102")
    assert _notepack.decode(_notepack.encode({1: "a", None: 2, False: 3, 2.5: 4})) == {"1": "a", "null": 2, "false": 3, "2.5": 4}
    # a naive datetime is UTC; microseconds survive (notepack itself only has ms)
    naive = dt.datetime(2024, 5, 1, 12, 0, 0, 123456)
    assert _notepack.decode(_notepack.encode(naive)) == naive.replace(tzinfo=UTC)


def test_integral_float_keeps_the_same_object_when_nothing_changes():
    payload = ["ev", {"a": "b", "n": [1, 2, b"x"]}]
    assert _notepack._normalise(payload) is payload
    assert _notepack._normalise(["ev", 2.0]) == ["ev", 2]


def test_legacy_extensions_decode_like_notepack():
    assert _notepack.decode(bytes.fromhex("91d40000")) == [None]  # undefined
    assert _notepack.decode(bytes.fromhex("d700" + (1700000000123).to_bytes(8, "big").hex())) == _when(1700000000123)
    assert _notepack.decode(bytes.fromhex("c70300010203")) == b"\x01\x02\x03"  # ArrayBuffer
    assert _notepack.decode(bytes.fromhex("d50501ff")) == [5, b"\x01\xff"]  # unknown ext


@pytest.mark.parametrize("bad", [b"", b"\x93\x01", b"\xc1", b"\x01\x02"])
def test_malformed_input_is_a_clear_error(bad):
    with pytest.raises(_notepack.NotepackError):
        _notepack.decode(bad)


def test_integers_beyond_msgpack_are_their_javascript_value():
    # msgpack stops at 2**64 - 1 and -2**63; JSON gives Python bigger ints (a client's 1e20)
    assert _notepack.encode(2**64 - 1).hex() == "cfffffffffffffffff"
    assert _notepack.encode(-(2**63)).hex() == "d38000000000000000"
    for big in (2**64, 10**20, -(2**63) - 1, -(10**21)):
        assert _notepack.encode(big) == b"\xcb" + struct.pack(">d", float(big))
    assert _notepack.encode([10**400, -(10**400)]) == _notepack.encode([math.inf, -math.inf])


def test_dates_beyond_python_years_decode_as_their_javascript_json():
    def timestamp96(seconds: int, ns: int = 0) -> bytes:
        return b"\xc7\x0c\xff" + ns.to_bytes(4, "big") + seconds.to_bytes(8, "big", signed=True)

    assert _notepack.decode(timestamp96(8_640_000_000_000)) == "+275760-09-13T00:00:00.000Z"
    assert _notepack.decode(timestamp96(-8_640_000_000_000)) == "-271821-04-20T00:00:00.000Z"
    assert _notepack.decode(b"\x92" + timestamp96(-62_167_219_201, 5_000_000)
                            + timestamp96(0)) == ["-000001-12-31T23:59:59.005Z", _when(0)]
    assert _notepack.decode(timestamp96(8_640_000_000_001)) is None   # an Invalid Date
    legacy = b"\xd7\x00" + (8_640_000_000_000_000).to_bytes(8, "big")
    assert _notepack.decode(legacy) == "+275760-09-13T00:00:00.000Z"


def test_a_date_is_its_iso_string():
    assert _notepack.encode(dt.date(2024, 2, 29)) == _notepack.encode("2024-02-29")


@pytest.mark.parametrize("bad", [object(), {1, 2}, {("a",): 1}, "lone \ud800"])
def test_unencodable_values_raise_type_error(bad):
    with pytest.raises(TypeError):
        _notepack.encode(bad)

"""roomcast._notepack against what the real notepack.io 3.0.1 (tests/js) makes.

Each case pairs a Python value with the equivalent JavaScript expression; the
expected bytes are notepack.io's ``encode()`` of the latter, made during the run
(``node_made``, tests/unit/conftest.py). The two Redis examples are the ones in
node-socketio.md section 4.
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


# name: (Python value, the JavaScript value)
CASES = {
    "fixint": (0, "0"),
    "fix127": (127, "127"),
    "u8": (128, "128"),
    "u8max": (255, "255"),
    "u16": (256, "256"),
    "u16max": (65535, "65535"),
    "u32": (65536, "65536"),
    "u32max": (4294967295, "4294967295"),
    "u64": (4294967296, "4294967296"),
    "u64big": (2**52 + 5, "2 ** 52 + 5"),
    "negfix": (-1, "-1"),
    "negfix32": (-32, "-32"),
    "i8": (-33, "-33"),
    "i8min": (-128, "-128"),
    "i16": (-129, "-129"),
    "i16min": (-32768, "-32768"),
    "i32": (-32769, "-32769"),
    "i32min": (-2147483648, "-2147483648"),
    "i64": (-2147483649, "-2147483649"),
    "i64big": (-(2**52) - 7, "-(2 ** 52) - 7"),
    "i64min": (-(2**63), "-(2 ** 63)"),
    "float": (1.5, "1.5"),
    "floatneg": (-0.1, "-0.1"),
    "negzero": (-0.0, "-0"),
    "inf": (math.inf, "Infinity"),
    "nan": (math.nan, "NaN"),
    "intfloat": (3.0, "3.0"),
    "big1e15": (1e15, "1e15"),
    "t": (True, "true"),
    "f": (False, "false"),
    "nil": (None, "null"),
    "str0": ("", '""'),
    "str31": ("a" * 31, '"a".repeat(31)'),
    "str32": ("a" * 32, '"a".repeat(32)'),
    "str255": ("b" * 255, '"b".repeat(255)'),
    "str256": ("c" * 256, '"c".repeat(256)'),
    "str65536": ("d" * 65536, '"d".repeat(65536)'),
    "unicode": ("héllo wörld ✓ 😀", '"héllo wörld ✓ 😀"'),
    "longunicode": ("é" * 40, '"é".repeat(40)'),
    "bin0": (b"", "Buffer.alloc(0)"),
    "bin3": (b"\x01\x02\x03", "Buffer.from([1, 2, 3])"),
    "bin256": (b"\x07" * 256, "Buffer.alloc(256, 7)"),
    "bin65536": (b"\x09" * 65536, "Buffer.alloc(65536, 9)"),
    "arr15": (list(range(15)), "[...Array(15).keys()]"),
    "arr16": (list(range(16)), "[...Array(16).keys()]"),
    "arr65536": ([1] * 65536, "new Array(65536).fill(1)"),
    "map15": ({f"k{i}": i for i in range(15)},
              'Object.fromEntries([...Array(15).keys()].map((i) => ["k" + i, i]))'),
    "map16": ({f"k{i}": i for i in range(16)},
              'Object.fromEntries([...Array(16).keys()].map((i) => ["k" + i, i]))'),
    "nested": ({"a": [1, {"b": None, "c": [True, "x"]}], "d": {}},
               '{a: [1, {b: null, c: [true, "x"]}], d: {}}'),
    "date32": (_when(1700000000000), "new Date(1700000000000)"),
    "date64": (_when(1700000000123), "new Date(1700000000123)"),
    "date96neg": (_when(-1000), "new Date(-1000)"),
    "date96big": (_when(2**34 * 1000 + 5), "new Date(2 ** 34 * 1000 + 5)"),
    "date0": (_when(0), "new Date(0)"),
    # node-socketio.md section 4: the emitter's broadcast, and the adapter's (68 bytes)
    "emitterEx": (
        ["emitter", {"type": 2, "data": ["bin", b"\x01\x02\x03"], "nsp": "/"},
         {"rooms": [], "flags": {"volatile": True}, "except": []}],
        '["emitter", {type: 2, data: ["bin", Buffer.from([1, 2, 3])], nsp: "/"},'
        ' {rooms: [], flags: {volatile: true}, except: []}]',
    ),
    "adapterEx": (
        ["ABCDEF", {"type": 2, "data": ["hello", "world"], "nsp": "/"},
         {"rooms": ["room1"], "except": [], "flags": {}}],
        '["ABCDEF", {type: 2, data: ["hello", "world"], nsp: "/"},'
        ' {rooms: ["room1"], except: [], flags: {}}]',
    ),
}

# Dates beyond Python's years 1-9999, as notepack writes them and as JSON (the
# clients) spells them
FAR_DATES = {"latest": "8.64e15", "earliest": "-8.64e15", "year0": "-62167219200000",
             "year-1": "-62198755200000", "year10000": "253402300800000",
             "sub-second": "-62167219200995"}
# Integers beyond msgpack's range: roomcast writes float64, which notepack must
# decode to the JavaScript value (notepack itself would wrap them around)
BIG_INTS = {"2**64": 2**64, "1e20": 10**20, "-2**63-1": -(2**63) - 1, "-1e21": -(10**21),
            "1e400": 10**400}

# notepack's legacy extensions: undefined, the ms date, ArrayBuffer, and an unknown one
LEGACY = {"undefined": "91d40000", "date": "d700" + (1700000000123).to_bytes(8, "big").hex(),
          "far date": "d700" + (8_640_000_000_000_000).to_bytes(8, "big").hex(),
          "arraybuffer": "c70300010203", "unknown": "d50501ff"}

NODE_CASES = {
    "notepack": {
        **{name: js for name, (_, js) in CASES.items()},
        **{f"date {name}": f"new Date({ms})" for name, ms in FAR_DATES.items()},
        "python-only sequences": "[1, Buffer.from([1]), Buffer.from([2])]",
        "python-only keys": '{"1": "a", null: 2, false: 3, 2.5: 4}',
    },
    "json": {f"date {name}": f"new Date({ms})" for name, ms in FAR_DATES.items()},
    "notepack_decode": {
        **{f"int {name}": repr(_notepack.encode(value).hex()) for name, value in BIG_INTS.items()},
        **{f"legacy {name}": repr(hex_) for name, hex_ in LEGACY.items()},
    },
}
NODE_CASES["json"].update({f"int {name}": str(value) for name, value in BIG_INTS.items()})


def _as_json(value):
    """A decoded value as JavaScript's JSON.stringify spells it (dates by toJSON)."""
    if isinstance(value, dt.datetime):
        value = value.astimezone(UTC)
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    if isinstance(value, list):
        return [_as_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_json(v) for k, v in value.items()}
    return value


@pytest.mark.parametrize("name", sorted(CASES))
def test_encode_matches_notepack(name, node_made):
    assert _notepack.encode(CASES[name][0]).hex() == node_made["notepack"][name]


def test_adapter_example_is_68_bytes(node_made):
    assert len(_notepack.encode(CASES["adapterEx"][0])) == 68
    assert len(bytes.fromhex(node_made["notepack"]["adapterEx"])) == 68


@pytest.mark.parametrize("name", sorted(set(CASES) - {"negzero", "intfloat", "big1e15", "nan"}))
def test_decode_inverts_encode(name, node_made):
    assert _notepack.decode(bytes.fromhex(node_made["notepack"][name])) == CASES[name][0]


def test_python_only_types_take_their_javascript_spelling(node_made):
    # tuples are arrays, bytearray/memoryview are bin, non-str keys become JSON keys
    assert _notepack.encode((1, bytearray(b"\x01"), memoryview(b"\x02"))).hex() == \
        node_made["notepack"]["python-only sequences"]
    assert _notepack.encode({1: "a", None: 2, False: 3, 2.5: 4}).hex() == \
        node_made["notepack"]["python-only keys"]
    # a naive datetime is UTC; microseconds survive (notepack itself only has ms)
    naive = dt.datetime(2024, 5, 1, 12, 0, 0, 123456)
    assert _notepack.decode(_notepack.encode(naive)) == naive.replace(tzinfo=UTC)


def test_integral_float_keeps_the_same_object_when_nothing_changes():
    payload = ["ev", {"a": "b", "n": [1, 2, b"x"]}]
    assert _notepack._normalise(payload) is payload
    assert _notepack._normalise(["ev", 2.0]) == ["ev", 2]


@pytest.mark.parametrize("name", sorted(LEGACY))
def test_legacy_extensions_decode_like_notepack(name, node_made):
    assert _as_json(_notepack.decode(bytes.fromhex(LEGACY[name]))) == \
        node_made["notepack_decode"][f"legacy {name}"]


@pytest.mark.parametrize("bad", [b"", b"\x93\x01", b"\xc1", b"\x01\x02"])
def test_malformed_input_is_a_clear_error(bad):
    with pytest.raises(_notepack.NotepackError):
        _notepack.decode(bad)


@pytest.mark.parametrize("name", sorted(BIG_INTS))
def test_integers_beyond_msgpack_decode_in_node_to_their_javascript_value(name, node_made):
    # what notepack.io decodes from roomcast's bytes is the number JSON gives JavaScript
    assert node_made["notepack_decode"][f"int {name}"] == node_made["json"][f"int {name}"]
    big = BIG_INTS[name]
    as_float = float(big) if abs(big) < 10**308 else math.inf if big > 0 else -math.inf
    assert _notepack.encode(big) == b"\xcb" + struct.pack(">d", as_float)


def test_the_largest_msgpack_integer_stays_an_integer():
    # JavaScript has no such integer (2 ** 64 - 1 is 2 ** 64 there), so no notepack bytes
    assert _notepack.encode(2**64 - 1) == b"\xcf" + b"\xff" * 8


@pytest.mark.parametrize("name", sorted(FAR_DATES))
def test_dates_beyond_python_years_decode_as_javascript_json_spells_them(name, node_made):
    notepack_bytes = bytes.fromhex(node_made["notepack"][f"date {name}"])
    assert _notepack.decode(notepack_bytes) == node_made["json"][f"date {name}"]


def test_beyond_javascript_dates_is_an_invalid_date():
    # the 96-bit timestamp one second past new Date(8.64e15): null, as its toJSON()
    data = b"\xc7\x0c\xff" + bytes(4) + (8_640_000_000_001).to_bytes(8, "big")
    assert _notepack.decode(data) is None


def test_a_date_is_its_iso_string():
    assert _notepack.encode(dt.date(2024, 2, 29)) == _notepack.encode("2024-02-29")


@pytest.mark.parametrize("bad", [object(), {1, 2}, {("a",): 1}, "lone \ud800"])
def test_unencodable_values_raise_type_error(bad):
    with pytest.raises(TypeError):
        _notepack.encode(bad)

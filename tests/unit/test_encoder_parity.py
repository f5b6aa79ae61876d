"""Differential tests: the compiled encoder and its pure twin agree on every input.

Random packets go through ``roomcast._encoder_c`` and ``roomcast._encoder_py``
directly (not through _speedups), and must give identical ``text``, ``ws``,
``polling`` and ``attachments``, or raise the same exception type.
"""
from __future__ import annotations

import datetime as dt
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roomcast import _encoder_py as py

try:
    from roomcast import _encoder_c as c
except ImportError:
    if os.environ.get("ROOMCAST_REQUIRE_EXTENSIONS", "") not in ("", "0"):
        raise
    c = None

# Without the build there is nothing to compare; a required build fails above instead.
pytestmark = pytest.mark.skipif(c is None, reason="roomcast._encoder_c is not built")

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(),  # floats include NaN and ±inf
    st.text(), st.binary(max_size=40),
    st.builds(bytearray, st.binary(max_size=8)), st.builds(memoryview, st.binary(max_size=8)),
    st.datetimes(timezones=st.sampled_from([None, dt.timezone.utc,
                                            dt.timezone(dt.timedelta(hours=-5))])),
    st.dates(),
)
unserialisable = st.sampled_from([object(), {1, 2}, 1j, frozenset()])
keys = st.one_of(st.text(max_size=8), st.integers(), st.floats(), st.booleans(), st.none())


def json_like(leaves):
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=5),
            st.tuples(children, children),
            st.dictionaries(keys, children, max_size=5),
        ),
        max_leaves=15,
    )


payloads = json_like(scalars)
payloads_with_junk = json_like(st.one_of(scalars, unserialisable))
namespaces = st.one_of(st.just("/"), st.text(max_size=12).map(lambda s: "/" + s), st.text(max_size=6))
ack_ids = st.one_of(st.none(), st.integers(min_value=0, max_value=2**60),
                    st.integers(max_value=-1), st.sampled_from([True, 1.0, "3"]))
types = st.integers(min_value=-1, max_value=7)


def outcome(module, fn: str, *args):
    """(result fields) or (exception type) of one call."""
    try:
        result = getattr(module, fn)(*args)
    except Exception as exc:  # noqa: BLE001 - the type itself is what is compared
        return ("raised", type(exc))
    if isinstance(result, bytes):
        return ("bytes", result)
    return ("packet", result.text, result.ws, result.polling, result.attachments)


def assert_same(fn: str, *args):
    expected = outcome(py, fn, *args)
    assert outcome(c, fn, *args) == expected
    return expected


@SETTINGS
@given(ptype=st.sampled_from([2, 3]), nsp=namespaces, data=payloads, ack_id=ack_ids)
def test_events_and_acks(ptype, nsp, data, ack_id):
    assert_same("encode_packet", ptype, nsp, ["event", data], ack_id)


@SETTINGS
@given(ptype=types, nsp=namespaces, data=st.one_of(st.none(), payloads), ack_id=ack_ids)
def test_any_packet(ptype, nsp, data, ack_id):
    assert_same("encode_packet", ptype, nsp, data, ack_id)


@SETTINGS
@given(ptype=types, data=payloads_with_junk)
def test_unserialisable_input_raises_the_same(ptype, data):
    assert_same("encode_packet", ptype, "/", data)


def test_shared_and_circular_structures():
    shared = [b"\x01", 1.5]
    assert assert_same("encode_packet", 2, "/", ["e", shared, shared])[0] == "packet"
    loop = {"a": []}
    loop["a"].append(loop)
    assert assert_same("encode_packet", 2, "/", ["e", loop]) == ("raised", TypeError)
    loop["nan"] = float("nan")
    assert assert_same("encode_packet", 2, "/", ["e", loop]) == ("raised", TypeError)


@pytest.mark.parametrize("depth", [150, 250, 100_000])
def test_deep_nesting_behind_a_nan(depth):
    # the NaN makes the first encode fail early; the slow path must not overflow the C stack
    deep = []
    for _ in range(depth):
        deep = [deep]
    result = assert_same("encode_packet", 2, "/", ["e", float("nan"), deep])
    assert result[0] == "packet" if depth < 200 else result == ("raised", RecursionError)


@SETTINGS
@given(ptype=types, data=st.one_of(st.none(), st.text(), st.binary(), st.integers()))
def test_engineio_packets(ptype, data):
    assert_same("encode_eio", ptype, data)


@SETTINGS
@given(opcode=st.integers(min_value=-1, max_value=16),
       payload=st.one_of(st.binary(max_size=300), st.text(max_size=3)))
def test_frames(opcode, payload):
    assert_same("ws_frame", opcode, payload)


@pytest.mark.parametrize("length", [0, 125, 126, 65535, 65536, 1 << 20])
def test_frame_lengths(length):
    payload = os.urandom(length)
    assert assert_same("ws_frame", 2, payload)[1] == py.ws_frame(2, payload)
    packet = ("encode_packet", 2, "/", ["big", "x" * length, payload])
    assert assert_same(*packet)[0] == "packet"


@SETTINGS
@given(text=st.one_of(st.none(), st.text(), st.binary(max_size=3)),
       attachments=st.lists(st.one_of(st.binary(max_size=20), st.text(max_size=2)), max_size=3))
def test_encoded_packet_constructor(text, attachments):
    expected = outcome(py, "EncodedPacket", text, attachments)
    assert outcome(c, "EncodedPacket", text, attachments) == expected
    if expected[0] == "packet":
        a, b = py.EncodedPacket(text, attachments), c.EncodedPacket(text, attachments)
        assert repr(a) == repr(b)
        assert hash(a) == hash(b)


@SETTINGS
@given(ptype=types, nsp=namespaces, data=st.one_of(st.none(), payloads_with_junk), ack_id=ack_ids)
def test_msgpack_packets(ptype, nsp, data, ack_id):
    assert_same("encode_msgpack", ptype, nsp, data, ack_id)


def test_msgpack_shared_and_circular_structures():
    shared = {"k": [1, b"\x00"]}
    assert assert_same("encode_msgpack", 2, "/", ["e", shared, shared])[0] == "packet"
    loop: list = []
    loop.append(loop)
    assert assert_same("encode_msgpack", 2, "/", ["e", loop]) == ("raised", TypeError)


@SETTINGS
@given(data=payloads, threshold=st.sampled_from([0, 1, 20, 1024]), big=st.integers(0, 3000))
def test_compressed_frames(data, threshold, big):
    """ws_deflated (permessage-deflate, compressed once per packet) agrees between twins."""
    args = (2, "/", ["e", data, "x" * big])
    for fn in ("encode_packet", "encode_msgpack"):
        try:
            c_packet, py_packet = getattr(c, fn)(*args), getattr(py, fn)(*args)
        except Exception as exc:  # noqa: BLE001 - both must refuse alike
            with pytest.raises(type(exc)):
                getattr(py, fn)(*args)
            continue
        assert c_packet.ws_deflated(threshold) == py_packet.ws_deflated(threshold)

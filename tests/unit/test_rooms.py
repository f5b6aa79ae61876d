"""The room index (ARCHITECTURE.md section 3), run against both implementations."""
from __future__ import annotations

import pytest

from roomcast import _speedups


@pytest.fixture
def index():
    return _speedups.RoomIndex()


def test_add_and_remove_report_whether_anything_changed(index):
    assert index.add(3, "a") is True
    assert index.add(3, "a") is False
    assert index.remove(3, "a") is True
    assert index.remove(3, "a") is False
    assert index.remove(7, "never") is False


def test_rooms_of_and_remove_all_keep_join_order(index):
    for room in ("sid", "z", "a", "m"):
        index.add(5, room)
    index.remove(5, "a")
    index.add(5, "a")
    assert index.rooms_of(5) == ["sid", "z", "m", "a"]
    assert index.remove_all(5) == ["sid", "z", "m", "a"]
    assert index.rooms_of(5) == []
    assert index.remove_all(5) == []
    assert index.all_rooms() == []


def test_unknown_slot_has_no_rooms(index):
    index.add(0, "a")
    assert index.rooms_of(1) == []
    assert index.rooms_of(10_000) == []
    assert index.remove_all(10_000) == []


def test_a_room_exists_while_it_has_members(index):
    index.add(1, "a")
    index.add(2, "a")
    assert index.has_room("a") and index.room_size("a") == 2
    index.remove(1, "a")
    index.remove_all(2)
    assert not index.has_room("a")
    assert index.room_size("a") == 0
    assert index.members("a") == []


def test_members_in_slot_order_and_all_rooms_in_creation_order(index):
    for slot in (9, 2, 700, 0, 64, 63):
        index.add(slot, "room")
    index.add(1, "other")
    index.add(1, ("tuple", 1))
    index.add(1, 42)
    assert index.members("room") == [0, 2, 9, 63, 64, 700]
    assert index.all_rooms() == ["room", "other", ("tuple", 1), 42]
    index.remove(1, "other")
    index.add(2, "other")
    assert index.all_rooms() == ["room", ("tuple", 1), 42, "other"]


def test_select_union_minus_rooms_minus_slots(index):
    for slot in range(10):
        index.add(slot, f"sid{slot}")
        index.add(slot, "even" if slot % 2 == 0 else "odd")
        if slot % 3 == 0:
            index.add(slot, "three")
    assert list(index.select(["even", "three"])) == [0, 2, 3, 4, 6, 8, 9]
    assert list(index.select(["even"], except_rooms=["three"])) == [2, 4, 8]
    assert list(index.select(["even"], except_rooms=["three"], except_slots=[4])) == [2, 8]
    assert list(index.select(frozenset({"odd"}), except_slots={1, 3, 99})) == [5, 7, 9]


def test_select_none_or_empty_is_every_slot_in_any_room(index):
    for slot in (4, 0, 130):
        index.add(slot, f"sid{slot}")
    index.add(7, "x")
    index.remove(7, "x")   # slot 7 is in no room any more
    everyone = [0, 4, 130]
    assert list(index.select()) == everyone
    assert list(index.select(None)) == everyone
    assert list(index.select([])) == everyone
    assert list(index.select(frozenset(), except_rooms=["sid4"])) == [0, 130]


def test_select_of_unknown_rooms_is_empty(index):
    index.add(0, "a")
    assert list(index.select(["nope"])) == []
    assert list(index.select(["nope", "a"])) == [0]
    assert list(index.select(["a"], except_rooms=["nope"])) == [0]


def test_selection_is_a_snapshot(index):
    for slot in range(200):
        index.add(slot, "all")
    selection = index.select(["all"])
    seen = []
    for slot in selection:
        seen.append(slot)
        index.remove_all(slot)           # the index changes under the iteration
        index.add(slot + 1000, "all")
    assert seen == list(range(200))
    assert len(selection) == 200 and 5 in selection and 1005 not in selection
    assert index.members("all") == list(range(1000, 1200))


def test_selection_membership_and_length():
    selection = _speedups.Selection([5, 1, 64, 5, 1000])
    assert len(selection) == 4
    assert list(selection) == [1, 5, 64, 1000]
    assert 64 in selection and 1000 in selection
    assert 0 not in selection and 2000 not in selection and -1 not in selection
    assert "5" not in selection
    assert len(_speedups.Selection()) == 0 and list(_speedups.Selection()) == []
    assert not _speedups.Selection()


def test_intersect(index):
    for slot in range(20):
        index.add(slot, "all")
        if slot % 2 == 0:
            index.add(slot, "even")
        if slot % 5 == 0:
            index.add(slot, "five")
    assert list(index.intersect(["all", "even", "five"])) == [0, 10]
    assert list(index.intersect(["even"])) == list(range(0, 20, 2))
    assert list(index.intersect(["even", "nope"])) == []
    assert list(index.intersect([])) == []


def test_select_with_intersect_rooms(index):
    # "all" and "even" dense, "five" sparse: AND across both representations
    for slot in range(200):
        index.add(slot, "all")
        if slot % 2 == 0:
            index.add(slot, "even")
        if slot % 50 == 0:
            index.add(slot, "fifty")
        if slot < 60:
            index.add(slot, "low")
    assert list(index.select(["all"], intersect_rooms=["even", "fifty"])) == [0, 50, 100, 150]
    assert list(index.select(None, intersect_rooms=["fifty"])) == [0, 50, 100, 150]
    assert list(index.select(["fifty"], ["low"], intersect_rooms=["all"])) == [100, 150]
    assert list(index.select(["all"], except_slots=[0], intersect_rooms=["fifty"])) == [50, 100, 150]
    assert list(index.select(["all"], intersect_rooms=["fifty", "nope"])) == []
    assert len(index.select(["all"], intersect_rooms=[])) == 200
    with pytest.raises(TypeError):
        index.select(["all"], intersect_rooms="even")


def test_dense_and_sparse_switch_with_hysteresis(index):
    # Slot 1999 makes the bitmap 32 words: the room turns dense past 64 members...
    index.add(1999, "big")
    for slot in range(63):
        index.add(slot, "big")
    assert index.room_size("big") == 64
    assert index._representation("big") == "sparse"
    index.add(63, "big")
    assert index._representation("big") == "dense"
    # ...and sparse again only under 16 (the array 4x smaller than the bitmap).
    for slot in range(49):
        index.remove(slot, "big")
    assert index.room_size("big") == 16
    assert index._representation("big") == "dense"
    index.add(0, "big")
    index.remove(0, "big")
    assert index._representation("big") == "dense"
    index.remove(49, "big")
    assert index._representation("big") == "sparse"
    assert index.members("big") == list(range(50, 64)) + [1999]
    index.add(0, "big")   # no flapping back: 16 members, far below 64
    assert index._representation("big") == "sparse"


def test_own_rooms_stay_sparse_and_small(index):
    before = index.memory_bytes()
    for slot in range(5000):
        index.add(slot, f"sid-{slot}")
        index.add(slot, "everyone")
    assert index._representation("sid-4999") == "sparse"
    assert index._representation("everyone") == "dense"
    grown = index.memory_bytes() - before
    # a bitmap per own room would be 5000 * 5000 / 8 bytes; an array costs bytes each
    assert grown < 5000 * 400
    for slot in range(5000):
        index.remove_all(slot)
    assert index.all_rooms() == []


def test_room_ids_are_recycled(index):
    index.add(0, "keep")
    for round_ in range(50):
        for slot in range(100):
            index.add(slot, f"r{round_}-{slot}")
        for slot in range(100):
            index.remove(slot, f"r{round_}-{slot}")
        if round_ == 0:
            after_first = index.memory_bytes()
    assert index.memory_bytes() <= after_first
    assert index.all_rooms() == ["keep"]


def test_highest_slot_and_bad_slots(index):
    top = 2**20 - 1
    assert index.add(top, "edge")
    assert index.members("edge") == [top]
    assert list(index.select(["edge"])) == [top]
    with pytest.raises(ValueError, match="out of range"):
        index.add(top + 1, "edge")
    with pytest.raises(ValueError, match="out of range"):
        index.add(-1, "edge")
    with pytest.raises(TypeError, match="slot must be an int"):
        index.add("3", "edge")
    with pytest.raises(TypeError, match="slot must be an int"):
        index.select(["edge"], except_slots=[1.5])


def test_bad_rooms(index):
    with pytest.raises(TypeError, match="unhashable"):
        index.add(0, ["list"])
    with pytest.raises(TypeError, match="rooms must be an iterable of rooms"):
        index.select("room")
    with pytest.raises(TypeError, match="except_rooms must be an iterable"):
        index.select(None, except_rooms=b"room")
    with pytest.raises(TypeError, match="rooms must be an iterable"):
        index.intersect("room")
    assert index.all_rooms() == []

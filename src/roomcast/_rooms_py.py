"""The room index, pure-Python twin of ext/_rooms_c.pyx (same names, results, errors).

Theory of operation
-------------------
Members are *slots*: small ints handed out by the server-wide ConnTable, lowest
free first, so the live slots are packed near 0 and a bitmap over them is short.

Rooms are interned. The first add of a room gives it the next free room id (a
small int); the id goes back to a free list when the room's last member leaves,
so ids stay dense however many rooms come and go. ``_ids`` maps room -> id and
``_names`` maps id -> room; ``all_rooms()`` follows ``_ids``' insertion order.

Each room holds its members in one of two representations:

- *sparse*: a sorted array of uint32 slots (4 bytes a member). Every socket has
  its own-id room with one member, so this is the common case and it costs bytes,
  not a bit per connection.
- *dense*: a bitmap of uint64 words; slot ``s`` is bit ``s & 63`` of word
  ``s >> 6`` (little-endian words, so byte ``s >> 3``, bit ``s & 7`` as well).
  The bitmap has exactly the words its highest member ever needed; it grows and
  never shrinks while the room stays dense.

With ``w`` words (the bitmap's length when dense; ``(highest member >> 6) + 1``
when sparse) and ``c`` members, a room becomes dense after an add when
``c >= MIN_DENSE and c > 2 * w`` (the bitmap is then smaller than the array), and
sparse again after a remove when ``2 * c < w`` (the array is 4x smaller). The gap
between the two is the hysteresis: a room hovering at one size does not flap.
The compiled core applies the very same rules (tests compare ``_representation``).

Per slot, the list of its room ids in join order makes ``rooms_of`` and
``remove_all`` cost that slot's own rooms, not the number of rooms.

While iterating
---------------
``select``/``intersect`` return a Selection: a snapshot bitmap built at call
time. It does not refer to the index, so the index may change (joins, leaves,
disconnects) while a Selection is iterated; the iteration yields the slots that
matched when it was made, in increasing slot order. Iterating ``members()`` or
``rooms_of()`` is likewise safe: they return new lists.
"""
from __future__ import annotations

import sys
from array import array
from bisect import bisect_left, insort
from collections.abc import Hashable, Iterable, Iterator

MAX_SLOT = (1 << 20) - 1  # far above one process' connections; bounds a bitmap to 128 KiB
MIN_DENSE = 16            # below this a room stays an array: tiny rooms are cheap either way
_BIG_ENDIAN = sys.byteorder == "big"


def _check_slot(slot: object) -> int:
    if not isinstance(slot, int):
        raise TypeError(f"slot must be an int, not {type(slot).__name__}")
    if slot < 0 or slot > MAX_SLOT:
        raise ValueError(f"slot {slot} out of range 0..{MAX_SLOT}")
    return slot


def _check_rooms(rooms: object, what: str) -> None:
    # A str is iterable, and broadcasting to its characters is never what was meant.
    if isinstance(rooms, (str, bytes)):
        raise TypeError(f"{what} must be an iterable of rooms, not {type(rooms).__name__}")


def _bits_of(slots: Iterable[int], nbytes: int) -> int:
    buf = bytearray(nbytes)
    for s in slots:
        buf[s >> 3] |= 1 << (s & 7)
    return int.from_bytes(buf, "little")


class Selection:
    """A snapshot set of slots: ``len``, ``in`` and iteration in increasing slot order."""

    __slots__ = ("_bits",)

    def __init__(self, slots: Iterable[int] = ()) -> None:
        checked = [_check_slot(s) for s in slots]
        self._bits = _bits_of(checked, (max(checked) >> 3) + 1) if checked else 0

    @classmethod
    def _from_bits(cls, bits: int) -> "Selection":
        self = cls.__new__(cls)
        self._bits = bits
        return self

    def __len__(self) -> int:
        return self._bits.bit_count()

    def __contains__(self, slot: object) -> bool:
        if not isinstance(slot, int) or slot < 0:
            return False
        return (self._bits >> slot) & 1 == 1

    def __iter__(self) -> Iterator[int]:
        bits = self._bits
        if not bits:
            return
        nwords = (bits.bit_length() + 63) >> 6
        words = array("Q", bits.to_bytes(nwords * 8, "little"))
        if _BIG_ENDIAN:
            words.byteswap()
        for i, w in enumerate(words):
            if w:
                base = i << 6
                while w:
                    low = w & -w
                    yield base + low.bit_length() - 1
                    w ^= low

    def __repr__(self) -> str:
        return f"<Selection of {len(self)} slots>"


class RoomIndex:
    """Rooms -> member slots, and slot -> rooms in join order (see the module comment)."""

    __slots__ = ("_ids", "_names", "_free", "_count", "_sparse", "_dense",
                 "_slot_rooms", "_present")

    def __init__(self) -> None:
        self._ids: dict = {}                      # room -> id
        self._names: list = []                    # id -> room (None when free)
        self._free: list[int] = []                # recycled ids, reused last-freed first
        self._count: list[int] = []               # id -> members
        self._sparse: list[array | None] = []     # id -> sorted uint32 slots, or None when dense
        self._dense: list[bytearray | None] = []  # id -> bitmap (whole uint64 words), or None
        self._slot_rooms: dict[int, list[int]] = {}  # slot -> room ids in join order
        self._present = bytearray()               # bitmap: slots in at least one room

    # -- rooms --------------------------------------------------------------
    def _new_room(self, room: Hashable) -> int:
        if self._free:
            rid = self._free.pop()
            self._names[rid] = room
            self._count[rid] = 0
            self._sparse[rid] = array("I")
        else:
            rid = len(self._names)
            self._names.append(room)
            self._count.append(0)
            self._sparse.append(array("I"))
            self._dense.append(None)
        self._ids[room] = rid
        return rid

    def _free_room(self, rid: int) -> None:
        del self._ids[self._names[rid]]
        self._names[rid] = None
        self._sparse[rid] = None
        self._dense[rid] = None
        self._free.append(rid)

    def _is_member(self, rid: int, slot: int) -> bool:
        bitmap = self._dense[rid]
        if bitmap is not None:
            i = slot >> 3
            return i < len(bitmap) and bitmap[i] >> (slot & 7) & 1 == 1
        arr = self._sparse[rid]
        i = bisect_left(arr, slot)
        return i < len(arr) and arr[i] == slot

    def _insert(self, rid: int, slot: int) -> None:
        count = self._count[rid] + 1
        self._count[rid] = count
        bitmap = self._dense[rid]
        if bitmap is not None:
            need = ((slot >> 6) + 1) * 8
            if need > len(bitmap):
                bitmap.extend(bytes(need - len(bitmap)))
            bitmap[slot >> 3] |= 1 << (slot & 7)
            return
        arr = self._sparse[rid]
        insort(arr, slot)
        nwords = (arr[-1] >> 6) + 1
        if count >= MIN_DENSE and count > 2 * nwords:
            self._dense[rid] = bytearray(_bits_of(arr, nwords * 8).to_bytes(nwords * 8, "little"))
            self._sparse[rid] = None

    def _delete(self, rid: int, slot: int) -> None:
        count = self._count[rid] - 1
        self._count[rid] = count
        bitmap = self._dense[rid]
        if bitmap is None:
            arr = self._sparse[rid]
            del arr[bisect_left(arr, slot)]
            return
        bitmap[slot >> 3] &= ~(1 << (slot & 7)) & 0xFF
        if 2 * count < len(bitmap) >> 3:
            self._sparse[rid] = array("I", Selection._from_bits(int.from_bytes(bitmap, "little")))
            self._dense[rid] = None

    def _room_bits(self, rids: Iterable[int]) -> int:
        """The union of rooms as one int bitmap."""
        acc = 0
        scratch = None
        for rid in rids:
            bitmap = self._dense[rid]
            if bitmap is not None:
                acc |= int.from_bytes(bitmap, "little")
            else:
                if scratch is None:
                    scratch = bytearray(len(self._present))
                for s in self._sparse[rid]:
                    scratch[s >> 3] |= 1 << (s & 7)
        if scratch is not None:
            acc |= int.from_bytes(scratch, "little")
        return acc

    def _set_present(self, slot: int, on: bool) -> None:
        i = slot >> 3
        if on:
            if i >= len(self._present):
                self._present.extend(bytes(i + 1 - len(self._present)))
            self._present[i] |= 1 << (slot & 7)
        else:
            self._present[i] &= ~(1 << (slot & 7)) & 0xFF

    # -- public API ---------------------------------------------------------
    def add(self, slot: int, room: Hashable) -> bool:
        """Put ``slot`` in ``room``; True when it was not there yet."""
        _check_slot(slot)
        rid = self._ids.get(room)
        if rid is None:
            rid = self._new_room(room)
        elif self._is_member(rid, slot):
            return False
        self._insert(rid, slot)
        joined = self._slot_rooms.get(slot)
        if joined is None:
            self._slot_rooms[slot] = [rid]
            self._set_present(slot, True)
        else:
            joined.append(rid)
        return True

    def remove(self, slot: int, room: Hashable) -> bool:
        """Take ``slot`` out of ``room``; True when it was a member."""
        _check_slot(slot)
        rid = self._ids.get(room)
        if rid is None or not self._is_member(rid, slot):
            return False
        self._delete(rid, slot)
        joined = self._slot_rooms[slot]
        joined.remove(rid)
        if not joined:
            del self._slot_rooms[slot]
            self._set_present(slot, False)
        if self._count[rid] == 0:
            self._free_room(rid)
        return True

    def remove_all(self, slot: int) -> list:
        """Take ``slot`` out of every room; returns those rooms in join order."""
        _check_slot(slot)
        joined = self._slot_rooms.pop(slot, None)
        if joined is None:
            return []
        self._set_present(slot, False)
        left = []
        for rid in joined:
            left.append(self._names[rid])
            self._delete(rid, slot)
            if self._count[rid] == 0:
                self._free_room(rid)
        return left

    def rooms_of(self, slot: int) -> list:
        _check_slot(slot)
        names = self._names
        return [names[rid] for rid in self._slot_rooms.get(slot, ())]

    def has_room(self, room: Hashable) -> bool:
        return room in self._ids

    def room_size(self, room: Hashable) -> int:
        rid = self._ids.get(room)
        return 0 if rid is None else self._count[rid]

    def members(self, room: Hashable) -> list[int]:
        """The room's slots in increasing order."""
        rid = self._ids.get(room)
        if rid is None:
            return []
        bitmap = self._dense[rid]
        if bitmap is None:
            return list(self._sparse[rid])
        return list(Selection._from_bits(int.from_bytes(bitmap, "little")))

    def all_rooms(self) -> list:
        return list(self._ids)

    def select(self, rooms: Iterable[Hashable] | None = None,
               except_rooms: Iterable[Hashable] | None = None,
               except_slots: Iterable[int] | None = None,
               intersect_rooms: Iterable[Hashable] | None = None) -> Selection:
        """Members of any of ``rooms`` (None/empty: every slot in some room) that are also
        in every one of ``intersect_rooms`` (None/empty: no such condition), minus the
        members of ``except_rooms`` and minus ``except_slots``; a snapshot."""
        rids, named = self._lookup(rooms, "rooms")
        except_rids, _ = self._lookup(except_rooms, "except_rooms")
        all_rids, missing = self._lookup_all(intersect_rooms)
        skip = [] if except_slots is None else [_check_slot(s) for s in except_slots]
        if missing:
            bits = 0   # a room to intersect with has no members: nobody
        elif rids:
            bits = self._room_bits(rids)
        elif named:
            bits = 0   # only unknown rooms were named: nobody
        else:
            bits = int.from_bytes(self._present, "little")
        for rid in all_rids:
            if not bits:
                break
            bits &= self._room_bits((rid,))
        if bits and except_rids:
            bits &= ~self._room_bits(except_rids)
        if bits and skip:
            bits &= ~_bits_of(skip, (max(skip) >> 3) + 1)
        return Selection._from_bits(bits)

    def intersect(self, rooms: Iterable[Hashable]) -> Selection:
        """Slots that are in every one of ``rooms`` (no rooms: nobody); a snapshot."""
        _check_rooms(rooms, "rooms")
        bits = None
        for room in list(rooms):
            rid = self._ids.get(room)
            if rid is None:
                return Selection._from_bits(0)
            room_bits = self._room_bits((rid,))
            bits = room_bits if bits is None else bits & room_bits
        return Selection._from_bits(bits or 0)

    def memory_bytes(self) -> int:
        """Approximate bytes held by the index's own structures (room keys excluded)."""
        size = sys.getsizeof
        total = (size(self._ids) + size(self._names) + size(self._free) + size(self._count)
                 + size(self._sparse) + size(self._dense) + size(self._slot_rooms)
                 + size(self._present))
        total += sum(size(a) for a in self._sparse if a is not None)
        total += sum(size(b) for b in self._dense if b is not None)
        total += sum(size(j) for j in self._slot_rooms.values())
        return total

    def _representation(self, room: Hashable) -> str | None:
        """'dense', 'sparse' or None (no such room): for tests of the switching rules."""
        rid = self._ids.get(room)
        if rid is None:
            return None
        return "sparse" if self._dense[rid] is None else "dense"

    def _lookup_all(self, rooms: Iterable[Hashable] | None) -> tuple[list[int], bool]:
        """The ids of ``rooms`` for an intersection, and whether one of them is unknown."""
        if rooms is None:
            return [], False
        _check_rooms(rooms, "intersect_rooms")
        ids = self._ids
        found = []
        for room in rooms:
            rid = ids.get(room)
            if rid is None:
                return [], True
            found.append(rid)
        return found, False

    def _lookup(self, rooms: Iterable[Hashable] | None, what: str) -> tuple[list[int], bool]:
        """The ids of the known rooms among ``rooms``, and whether any room was named."""
        if rooms is None:
            return [], False
        _check_rooms(rooms, what)
        ids = self._ids
        found = []
        named = False
        for room in rooms:
            named = True
            rid = ids.get(room)
            if rid is not None:
                found.append(rid)
        return found, named

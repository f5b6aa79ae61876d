# cython: language_level=3
"""The room index, compiled (twin of roomcast._rooms_py; see its module comment).

The C layout is declared in _rooms_c.pxd. Every method first does its Python
work (argument checks, dict lookups, which may run a room's __hash__/__eq__)
and only then touches the C arrays, so no Python code runs while a pointer into
them is held.
"""
from cpython.mem cimport PyMem_Malloc, PyMem_Realloc, PyMem_Free
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy, memmove, memset
import sys

MAX_SLOT = (1 << 20) - 1  # far above one process' connections; bounds a bitmap to 128 KiB
MIN_DENSE = 16            # below this a room stays an array: tiny rooms are cheap either way
cdef Py_ssize_t C_MIN_DENSE = MIN_DENSE
cdef Py_ssize_t C_MAX_SLOT = MAX_SLOT


cdef inline Py_ssize_t _check_slot(object slot) except -1:
    if not isinstance(slot, int):
        raise TypeError(f"slot must be an int, not {type(slot).__name__}")
    if slot < 0 or slot > MAX_SLOT:
        raise ValueError(f"slot {slot} out of range 0..{MAX_SLOT}")
    return <Py_ssize_t>slot


cdef inline int _check_rooms(object rooms, str what) except -1:
    # A str is iterable, and broadcasting to its characters is never what was meant.
    if isinstance(rooms, (str, bytes)):
        raise TypeError(f"{what} must be an iterable of rooms, not {type(rooms).__name__}")
    return 0


cdef void *_alloc(Py_ssize_t nbytes) except NULL:
    cdef void *p = PyMem_Malloc(nbytes if nbytes > 0 else 1)
    if p == NULL:
        raise MemoryError()
    return p


cdef void *_realloc(void *p, Py_ssize_t nbytes) except NULL:
    cdef void *q = PyMem_Realloc(p, nbytes if nbytes > 0 else 1)
    if q == NULL:
        raise MemoryError()
    return q


cdef inline uint32_t *_sparse(Room *r) noexcept nogil:
    return &r.d.inline_[0] if r.size <= INLINE_CAP else r.d.slots


cdef inline Py_ssize_t _lower_bound(const uint32_t *a, Py_ssize_t n, uint32_t x) noexcept nogil:
    cdef Py_ssize_t lo = 0, hi = n, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline bint _is_member(Room *r, Py_ssize_t slot) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint32_t *a
    if r.dense:
        i = slot >> 6
        return i < r.size and (r.d.words[i] >> (slot & 63)) & 1
    a = _sparse(r)
    i = _lower_bound(a, r.count, <uint32_t>slot)
    return i < r.count and a[i] == slot


cdef void _free_storage(Room *r) noexcept:
    if r.dense:
        PyMem_Free(r.d.words)
    elif r.size > INLINE_CAP:
        PyMem_Free(r.d.slots)
    memset(r, 0, sizeof(Room))
    r.size = INLINE_CAP


cdef int _to_dense(Room *r) except -1:
    cdef uint32_t *a = _sparse(r)
    cdef Py_ssize_t nwords = (a[r.count - 1] >> 6) + 1, i
    cdef uint64_t *words = <uint64_t *>_alloc(nwords * 8)
    memset(words, 0, nwords * 8)
    for i in range(r.count):
        words[a[i] >> 6] |= (<uint64_t>1) << (a[i] & 63)
    if r.size > INLINE_CAP:
        PyMem_Free(r.d.slots)
    r.dense = 1
    r.size = <uint32_t>nwords
    r.d.words = words
    return 0


cdef int _to_sparse(Room *r) except -1:
    cdef Py_ssize_t cap = r.count if r.count > INLINE_CAP else INLINE_CAP
    cdef Py_ssize_t i, n = 0
    cdef uint64_t w
    cdef uint64_t *words = r.d.words
    cdef uint32_t tmp[INLINE_CAP]
    cdef uint32_t *a = &tmp[0] if cap <= INLINE_CAP else <uint32_t *>_alloc(cap * 4)
    for i in range(r.size):
        w = words[i]
        while w:
            a[n] = <uint32_t>((i << 6) + rc_ctz64(w))
            n += 1
            w &= w - 1
    PyMem_Free(words)
    r.dense = 0
    r.size = <uint32_t>cap
    if cap <= INLINE_CAP:
        memcpy(r.d.inline_, tmp, sizeof(tmp))
    else:
        r.d.slots = a
    return 0


cdef int _insert(Room *r, Py_ssize_t slot) except -1:
    """Add a slot known not to be a member; may turn the room dense."""
    cdef Py_ssize_t need, i, newcap
    cdef uint32_t *a
    cdef uint32_t *p
    if r.dense:
        need = (slot >> 6) + 1
        if need > r.size:
            r.d.words = <uint64_t *>_realloc(r.d.words, need * 8)
            memset(r.d.words + r.size, 0, (need - r.size) * 8)
            r.size = <uint32_t>need
        r.d.words[slot >> 6] |= (<uint64_t>1) << (slot & 63)
        r.count += 1
        return 0
    if r.count == r.size:
        newcap = r.size * 2
        if r.size <= INLINE_CAP:
            p = <uint32_t *>_alloc(newcap * 4)
            memcpy(p, r.d.inline_, r.count * 4)
        else:
            p = <uint32_t *>_realloc(r.d.slots, newcap * 4)
        r.d.slots = p
        r.size = <uint32_t>newcap
    a = _sparse(r)
    i = _lower_bound(a, r.count, <uint32_t>slot)
    memmove(a + i + 1, a + i, (r.count - i) * 4)
    a[i] = <uint32_t>slot
    r.count += 1
    if r.count >= C_MIN_DENSE and r.count > 2 * ((a[r.count - 1] >> 6) + 1):
        _to_dense(r)
    return 0


cdef int _delete(Room *r, Py_ssize_t slot) except -1:
    """Remove a slot known to be a member; may turn the room sparse."""
    cdef uint32_t *a
    cdef uint32_t *p
    cdef Py_ssize_t i
    r.count -= 1
    if r.dense:
        r.d.words[slot >> 6] &= ~((<uint64_t>1) << (slot & 63))
        if 2 * r.count < r.size:
            _to_sparse(r)
        return 0
    a = _sparse(r)
    i = _lower_bound(a, r.count + 1, <uint32_t>slot)
    memmove(a + i, a + i + 1, (r.count - i) * 4)
    # Give memory back when a big array has mostly emptied.
    if r.size > INLINE_CAP and r.count * 4 <= r.size:
        if r.count <= INLINE_CAP:
            p = r.d.slots
            memcpy(r.d.inline_, p, r.count * 4)
            PyMem_Free(p)
            r.size = INLINE_CAP
        else:
            r.d.slots = <uint32_t *>_realloc(r.d.slots, (r.size // 2) * 4)
            r.size = r.size // 2
    return 0


cdef inline uint32_t *_ids_of(SlotRooms *s) noexcept nogil:
    return &s.d.inline_[0] if s.cap <= INLINE_CAP else s.d.ids


cdef Selection _empty_selection():
    return Selection.__new__(Selection)


cdef Selection _finish(uint64_t *words, Py_ssize_t nwords):
    """Wrap a bitmap (ownership passes) as a Selection, trimming zero words at the end."""
    cdef Selection sel = Selection.__new__(Selection)
    cdef Py_ssize_t i, count = 0
    cdef Py_ssize_t allocated = nwords
    cdef uint64_t *smaller
    while nwords > 0 and words[nwords - 1] == 0:
        nwords -= 1
    if nwords * 2 < allocated:   # a snapshot of a few slots should not keep a big bitmap
        smaller = <uint64_t *>PyMem_Realloc(words, (nwords if nwords else 1) * 8)
        if smaller != NULL:
            words = smaller
    for i in range(nwords):
        count += rc_popcount64(words[i])
    sel.words = words
    sel.nwords = nwords
    sel.count = count
    return sel


cdef class Selection:
    """A snapshot set of slots: ``len``, ``in`` and iteration in increasing slot order."""

    def __cinit__(self):
        self.words = NULL
        self.nwords = 0
        self.count = 0

    def __init__(self, slots=()):
        cdef list checked = [_check_slot(x) for x in slots]
        cdef Py_ssize_t s, nwords, i
        PyMem_Free(self.words)   # __init__ may be called again
        self.words = NULL
        self.nwords = self.count = 0
        if not checked:
            return
        nwords = (max(checked) >> 6) + 1
        self.words = <uint64_t *>_alloc(nwords * 8)
        memset(self.words, 0, nwords * 8)
        for s in checked:
            self.words[s >> 6] |= (<uint64_t>1) << (s & 63)
        self.nwords = nwords
        self.count = 0
        for i in range(nwords):
            self.count += rc_popcount64(self.words[i])

    def __dealloc__(self):
        PyMem_Free(self.words)

    def __len__(self):
        return self.count

    def __contains__(self, slot):
        cdef Py_ssize_t s
        if not isinstance(slot, int) or slot < 0 or slot >= (self.nwords << 6):
            return False
        s = slot
        return (self.words[s >> 6] >> (s & 63)) & 1 == 1

    def __iter__(self):
        cdef Py_ssize_t i
        cdef uint64_t w
        for i in range(self.nwords):
            w = self.words[i]
            while w:
                yield (i << 6) + rc_ctz64(w)
                w &= w - 1

    def __repr__(self):
        return f"<Selection of {len(self)} slots>"


cdef class RoomIndex:
    """Rooms -> member slots, and slot -> rooms in join order (see _rooms_py's module comment)."""

    cdef dict _ids           # room -> id
    cdef list _names         # id -> room (None when free)
    cdef list _free          # recycled ids, reused last-freed first
    cdef Room *_rooms        # id -> Room; _rooms_cap entries
    cdef Py_ssize_t _rooms_cap
    cdef SlotRooms *_slots   # slot -> its rooms; _slots_cap entries
    cdef Py_ssize_t _slots_cap

    def __cinit__(self):
        self._ids = {}
        self._names = []
        self._free = []
        self._rooms = NULL
        self._rooms_cap = 0
        self._slots = NULL
        self._slots_cap = 0

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self._rooms != NULL:
            for i in range(self._rooms_cap):
                _free_storage(&self._rooms[i])
            PyMem_Free(self._rooms)
        if self._slots != NULL:
            for i in range(self._slots_cap):
                if self._slots[i].cap > INLINE_CAP:
                    PyMem_Free(self._slots[i].d.ids)
            PyMem_Free(self._slots)

    # -- rooms --------------------------------------------------------------
    cdef Py_ssize_t _new_room(self, object room) except -1:
        cdef Py_ssize_t rid, cap, i
        if self._free:
            rid = self._free.pop()
            self._names[rid] = room
        else:
            rid = len(self._names)
            if rid >= self._rooms_cap:
                cap = self._rooms_cap * 2 if self._rooms_cap else 64
                self._rooms = <Room *>_realloc(self._rooms, cap * sizeof(Room))
                memset(self._rooms + self._rooms_cap, 0, (cap - self._rooms_cap) * sizeof(Room))
                for i in range(self._rooms_cap, cap):
                    self._rooms[i].size = INLINE_CAP
                self._rooms_cap = cap
            self._names.append(room)
        self._ids[room] = rid
        return rid

    cdef int _free_room(self, Py_ssize_t rid) except -1:
        _free_storage(&self._rooms[rid])
        del self._ids[self._names[rid]]
        self._names[rid] = None
        self._free.append(rid)
        return 0

    cdef SlotRooms *_slot_rooms(self, Py_ssize_t slot) except NULL:
        """The slot's entry, growing the table to hold it."""
        cdef Py_ssize_t cap, i
        if slot >= self._slots_cap:
            cap = self._slots_cap * 2 if self._slots_cap else 64
            while cap <= slot:
                cap *= 2
            if cap > C_MAX_SLOT + 1:
                cap = C_MAX_SLOT + 1
            self._slots = <SlotRooms *>_realloc(self._slots, cap * sizeof(SlotRooms))
            memset(self._slots + self._slots_cap, 0, (cap - self._slots_cap) * sizeof(SlotRooms))
            for i in range(self._slots_cap, cap):
                self._slots[i].cap = INLINE_CAP
            self._slots_cap = cap
        return &self._slots[slot]

    cdef int _slot_join(self, Py_ssize_t slot, Py_ssize_t rid) except -1:
        cdef SlotRooms *s = self._slot_rooms(slot)
        cdef uint32_t *p
        if s.n == s.cap:
            if s.cap <= INLINE_CAP:
                p = <uint32_t *>_alloc(s.cap * 2 * 4)
                memcpy(p, s.d.inline_, s.n * 4)
            else:
                p = <uint32_t *>_realloc(s.d.ids, s.cap * 2 * 4)
            s.d.ids = p
            s.cap *= 2
        _ids_of(s)[s.n] = <uint32_t>rid
        s.n += 1
        return 0

    cdef void _slot_leave(self, Py_ssize_t slot, Py_ssize_t rid) noexcept:
        cdef SlotRooms *s = &self._slots[slot]
        cdef uint32_t *ids = _ids_of(s)
        cdef Py_ssize_t i
        for i in range(s.n):
            if ids[i] == rid:
                memmove(ids + i, ids + i + 1, (s.n - i - 1) * 4)
                s.n -= 1
                break
        if s.n == 0 and s.cap > INLINE_CAP:
            PyMem_Free(s.d.ids)
            s.cap = INLINE_CAP

    cdef list _lookup(self, object rooms, str what, bint *named):
        """The ids of the known rooms among ``rooms``; ``named``: any room was given."""
        cdef list found = []
        named[0] = False
        if rooms is None:
            return found
        _check_rooms(rooms, what)
        ids = self._ids
        for room in rooms:
            named[0] = True
            rid = ids.get(room)
            if rid is not None:
                found.append(rid)
        return found

    cdef void _or_rooms(self, uint64_t *acc, Py_ssize_t nwords, list rids) noexcept:
        cdef Py_ssize_t rid, i, n
        cdef Room *r
        cdef uint32_t *a
        for rid in rids:
            r = &self._rooms[rid]
            if r.dense:
                n = r.size if r.size < nwords else nwords
                for i in range(n):
                    acc[i] |= r.d.words[i]
            else:
                a = _sparse(r)
                for i in range(r.count):
                    acc[a[i] >> 6] |= (<uint64_t>1) << (a[i] & 63)

    cdef void _clear_rooms(self, uint64_t *acc, Py_ssize_t nwords, list rids) noexcept:
        cdef Py_ssize_t rid, i, n
        cdef Room *r
        cdef uint32_t *a
        for rid in rids:
            r = &self._rooms[rid]
            if r.dense:
                n = r.size if r.size < nwords else nwords
                for i in range(n):
                    acc[i] &= ~r.d.words[i]
            else:
                a = _sparse(r)
                for i in range(r.count):
                    if (a[i] >> 6) < nwords:
                        acc[a[i] >> 6] &= ~((<uint64_t>1) << (a[i] & 63))

    # -- public API ---------------------------------------------------------
    def add(self, slot, room):
        """Put ``slot`` in ``room``; True when it was not there yet."""
        cdef Py_ssize_t s = _check_slot(slot), rid
        found = self._ids.get(room)
        if found is None:
            rid = self._new_room(room)
        else:
            rid = found
            if _is_member(&self._rooms[rid], s):
                return False
        _insert(&self._rooms[rid], s)
        self._slot_join(s, rid)
        return True

    def remove(self, slot, room):
        """Take ``slot`` out of ``room``; True when it was a member."""
        cdef Py_ssize_t s = _check_slot(slot), rid
        found = self._ids.get(room)
        if found is None:
            return False
        rid = found
        if not _is_member(&self._rooms[rid], s):
            return False
        _delete(&self._rooms[rid], s)
        self._slot_leave(s, rid)
        if self._rooms[rid].count == 0:
            self._free_room(rid)
        return True

    def remove_all(self, slot):
        """Take ``slot`` out of every room; returns those rooms in join order."""
        cdef Py_ssize_t s = _check_slot(slot), i, n, rid
        cdef SlotRooms *sr
        cdef uint32_t *ids
        cdef list left = []
        cdef list rids
        if s >= self._slots_cap or self._slots[s].n == 0:
            return left
        sr = &self._slots[s]
        ids = _ids_of(sr)
        n = sr.n
        rids = [ids[i] for i in range(n)]
        if sr.cap > INLINE_CAP:
            PyMem_Free(sr.d.ids)
        sr.n = 0
        sr.cap = INLINE_CAP
        for rid in rids:
            left.append(self._names[rid])
            _delete(&self._rooms[rid], s)
            if self._rooms[rid].count == 0:
                self._free_room(rid)
        return left

    def rooms_of(self, slot):
        cdef Py_ssize_t s = _check_slot(slot), i
        cdef SlotRooms *sr
        cdef uint32_t *ids
        if s >= self._slots_cap:
            return []
        sr = &self._slots[s]
        ids = _ids_of(sr)
        names = self._names
        return [names[ids[i]] for i in range(sr.n)]

    def has_room(self, room):
        return room in self._ids

    def room_size(self, room):
        found = self._ids.get(room)
        if found is None:
            return 0
        return self._rooms[<Py_ssize_t>found].count

    def members(self, room):
        """The room's slots in increasing order."""
        cdef Py_ssize_t i
        cdef Room *r
        cdef uint32_t *a
        cdef uint64_t w
        cdef list out = []
        found = self._ids.get(room)
        if found is None:
            return out
        r = &self._rooms[<Py_ssize_t>found]
        if not r.dense:
            a = _sparse(r)
            return [a[i] for i in range(r.count)]
        for i in range(r.size):
            w = r.d.words[i]
            while w:
                out.append((i << 6) + rc_ctz64(w))
                w &= w - 1
        return out

    def all_rooms(self):
        return list(self._ids)

    cdef list _lookup_all(self, object rooms, bint *missing):
        """The ids of ``rooms`` for an intersection; ``missing``: one of them is unknown."""
        cdef list found = []
        missing[0] = False
        if rooms is None:
            return found
        _check_rooms(rooms, "intersect_rooms")
        ids = self._ids
        for room in rooms:
            rid = ids.get(room)
            if rid is None:
                missing[0] = True
                return []
            found.append(rid)
        return found

    cdef void _and_room(self, uint64_t *acc, Py_ssize_t nwords, Py_ssize_t rid) noexcept:
        """acc &= the members of room ``rid``."""
        cdef Room *r = &self._rooms[rid]
        cdef Py_ssize_t i, n, j
        cdef uint32_t *a
        cdef uint64_t w
        if r.dense:
            n = r.size if r.size < nwords else nwords
            for i in range(n):
                acc[i] &= r.d.words[i]
            for i in range(n, nwords):
                acc[i] = 0
        else:
            # keep only the bits of acc that are members: walk the sorted slots word by word
            a = _sparse(r)
            j = 0
            for i in range(nwords):
                w = 0
                while j < r.count and (a[j] >> 6) == i:
                    w |= (<uint64_t>1) << (a[j] & 63)
                    j += 1
                acc[i] &= w

    def select(self, rooms=None, except_rooms=None, except_slots=None, intersect_rooms=None):
        """Members of any of ``rooms`` (None/empty: every slot in some room) that are also
        in every one of ``intersect_rooms`` (None/empty: no such condition), minus the
        members of ``except_rooms`` and minus ``except_slots``; a snapshot."""
        cdef bint named, unused, missing
        cdef list rids = self._lookup(rooms, "rooms", &named)
        cdef list except_rids = self._lookup(except_rooms, "except_rooms", &unused)
        cdef list all_rids = self._lookup_all(intersect_rooms, &missing)
        cdef list skip = [] if except_slots is None else [_check_slot(x) for x in except_slots]
        cdef Py_ssize_t nwords = (self._slots_cap + 63) >> 6, i, s, rid
        cdef uint64_t *acc
        # From here on no Python code runs: the C arrays cannot move under us.
        acc = <uint64_t *>_alloc(nwords * 8)
        memset(acc, 0, nwords * 8)
        if missing:
            pass   # a room to intersect with has no members: nobody
        elif rids:
            self._or_rooms(acc, nwords, rids)
        elif not named:
            for i in range(self._slots_cap):
                if self._slots[i].n:
                    acc[i >> 6] |= (<uint64_t>1) << (i & 63)
        for rid in all_rids:
            self._and_room(acc, nwords, rid)
        if except_rids:
            self._clear_rooms(acc, nwords, except_rids)
        for s in skip:
            if (s >> 6) < nwords:
                acc[s >> 6] &= ~((<uint64_t>1) << (s & 63))
        return _finish(acc, nwords)

    def intersect(self, rooms):
        """Slots that are in every one of ``rooms`` (no rooms: nobody); a snapshot."""
        _check_rooms(rooms, "rooms")
        cdef list rids = []
        for room in list(rooms):
            found = self._ids.get(room)
            if found is None:
                return _empty_selection()
            rids.append(found)
        if not rids:
            return _empty_selection()
        cdef Py_ssize_t nwords = (self._slots_cap + 63) >> 6, i
        cdef uint64_t *acc = <uint64_t *>_alloc(nwords * 8)
        cdef uint64_t *tmp
        memset(acc, 0, nwords * 8)
        self._or_rooms(acc, nwords, rids[:1])
        if len(rids) > 1:
            tmp = <uint64_t *>PyMem_Malloc(nwords * 8)
            if tmp == NULL:
                PyMem_Free(acc)
                raise MemoryError()
            for rid in rids[1:]:
                memset(tmp, 0, nwords * 8)
                self._or_rooms(tmp, nwords, [rid])
                for i in range(nwords):
                    acc[i] &= tmp[i]
            PyMem_Free(tmp)
        return _finish(acc, nwords)

    def memory_bytes(self):
        """Approximate bytes held by the index's own structures (room keys excluded)."""
        cdef Py_ssize_t i, total
        cdef Room *r
        total = (sys.getsizeof(self) + sys.getsizeof(self._ids) + sys.getsizeof(self._names)
                 + sys.getsizeof(self._free)
                 + self._rooms_cap * sizeof(Room) + self._slots_cap * sizeof(SlotRooms))
        for i in range(self._rooms_cap):
            r = &self._rooms[i]
            if r.dense:
                total += r.size * 8
            elif r.size > INLINE_CAP:
                total += r.size * 4
        for i in range(self._slots_cap):
            if self._slots[i].cap > INLINE_CAP:
                total += self._slots[i].cap * 4
        return total

    def _representation(self, room):
        """'dense', 'sparse' or None (no such room): for tests of the switching rules."""
        found = self._ids.get(room)
        if found is None:
            return None
        return "dense" if self._rooms[<Py_ssize_t>found].dense else "sparse"

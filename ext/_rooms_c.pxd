# The compiled room index's C layout, shared with _fanout_c (which iterates a
# Selection's words without creating a Python object per recipient).
# The design (interning, word layout, dense/sparse rules, snapshots) is described
# at the top of src/roomcast/_rooms_py.py, the pure twin.
from libc.stdint cimport uint32_t, uint64_t

cdef extern from *:
    """
    #if defined(_MSC_VER)
    #include <intrin.h>
    static inline int rc_ctz64(unsigned long long x) { unsigned long i; _BitScanForward64(&i, x); return (int)i; }
    static inline int rc_popcount64(unsigned long long x) { return (int)__popcnt64(x); }
    #else
    static inline int rc_ctz64(unsigned long long x) { return __builtin_ctzll(x); }
    static inline int rc_popcount64(unsigned long long x) { return __builtin_popcountll(x); }
    #endif
    """
    int rc_ctz64(uint64_t x) nogil          # x != 0
    int rc_popcount64(uint64_t x) nogil

# Up to INLINE_CAP members (or room ids) live inside the struct: the own-id room
# of every socket then needs no allocation of its own.
cdef enum:
    INLINE_CAP = 2

cdef union RoomData:
    uint32_t inline_[2]
    uint32_t *slots          # sparse, size > INLINE_CAP: sorted member slots
    uint64_t *words          # dense: bitmap, slot s = bit (s & 63) of words[s >> 6]

cdef struct Room:
    uint32_t count           # members
    uint32_t size            # sparse: capacity in slots; dense: words in the bitmap
    int dense
    RoomData d

cdef union IdsData:
    uint32_t inline_[2]
    uint32_t *ids

cdef struct SlotRooms:       # one slot's room ids, in join order
    uint32_t n
    uint32_t cap
    IdsData d

cdef class Selection:
    cdef uint64_t *words     # snapshot bitmap, owned; nwords words, the last one non-zero
    cdef Py_ssize_t nwords
    cdef Py_ssize_t count

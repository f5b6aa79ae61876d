# cython: language_level=3
"""The fan-out loop, compiled (twin of roomcast._fanout_py: same calls, same results).

The table keeps each slot's fd, busy flag and held-back bytes in C arrays next to
the list of connection objects, and fanout() walks a Selection's bitmap words
directly, so an idle WebSocket recipient costs one send(2) (or one memcpy when its
writes are being coalesced) and no Python object. The coalescing rules are
described in roomcast._fanout_py, the pure twin.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.stdint cimport uint64_t
from libc.string cimport memcpy
from heapq import heappop, heappush

from roomcast._rooms_c cimport Selection, rc_ctz64

cdef extern from *:
    """
    #ifdef _WIN32
    /* Windows fds are not sockets: every direct write falls back to push_raw(). */
    static Py_ssize_t rc_send(int fd, const char *buf, Py_ssize_t len) {
        (void)fd; (void)buf; (void)len; return -1;
    }
    #else
    #include <sys/types.h>
    #include <sys/socket.h>
    #include <errno.h>
    #ifndef MSG_NOSIGNAL
    #define MSG_NOSIGNAL 0   /* macOS: SIGPIPE is ignored by the Python runtime anyway */
    #endif
    static Py_ssize_t rc_send(int fd, const char *buf, Py_ssize_t len) {
        Py_ssize_t n;
        do {
            n = (Py_ssize_t)send(fd, buf, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL);
        } while (n < 0 && errno == EINTR);
        return n;
    }
    #endif
    """
    Py_ssize_t rc_send(int fd, const char *buf, Py_ssize_t len) nogil

cdef long long _FD_MAX = (1 << 31) - 1  # a C int
cdef Py_ssize_t HOLD_MAX = 65536        # bytes a slot holds back before they are sent at once


cdef inline int _check_slot_arg(object slot) except -1:
    if not isinstance(slot, int):
        raise TypeError(f"slot must be an int, not {type(slot).__name__}")
    return 0


cdef class ConnTable:
    """slot -> (connection, fd, busy, held-back bytes); one per EngineServer."""

    cdef list _conns          # slot -> connection object, None when free
    cdef int *_fds            # _cap entries; -1: no direct writes
    cdef unsigned char *_busy
    cdef char **_held         # bytes held back until flush(), NULL when none
    cdef Py_ssize_t *_hlen
    cdef Py_ssize_t *_hcap
    cdef unsigned int *_stamp  # the pass of the slot's last direct write
    cdef unsigned char *_listed
    cdef Py_ssize_t *_holding  # slots holding bytes, in the order they started
    cdef Py_ssize_t _nholding
    cdef Py_ssize_t _cap
    cdef list _free           # min-heap of freed slots below len(_conns)
    cdef Py_ssize_t _used
    cdef unsigned int _pass
    cdef bint _coalescing
    cdef bint _repeated        # this pass wrote some slot more than once
    cdef object _flush_hook
    cdef bint _flush_scheduled

    def __cinit__(self):
        self._conns = []
        self._free = []
        self._fds = NULL
        self._busy = NULL
        self._held = NULL
        self._hlen = NULL
        self._hcap = NULL
        self._stamp = NULL
        self._listed = NULL
        self._holding = NULL
        self._nholding = 0
        self._cap = 0
        self._used = 0
        self._pass = 1
        self._coalescing = False
        self._repeated = False
        self._flush_hook = None
        self._flush_scheduled = False

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self._held != NULL:
            for i in range(self._cap):
                PyMem_Free(self._held[i])
        PyMem_Free(self._fds)
        PyMem_Free(self._busy)
        PyMem_Free(self._held)
        PyMem_Free(self._hlen)
        PyMem_Free(self._hcap)
        PyMem_Free(self._stamp)
        PyMem_Free(self._listed)
        PyMem_Free(self._holding)

    cdef int _grow(self) except -1:
        cdef Py_ssize_t cap = self._cap * 2 if self._cap else 64, i
        cdef void *p
        p = PyMem_Realloc(self._fds, cap * sizeof(int))
        if p == NULL:
            raise MemoryError()
        self._fds = <int *>p
        p = PyMem_Realloc(self._busy, cap)
        if p == NULL:
            raise MemoryError()
        self._busy = <unsigned char *>p
        p = PyMem_Realloc(self._held, cap * sizeof(char *))
        if p == NULL:
            raise MemoryError()
        self._held = <char **>p
        for i in range(self._cap, cap):
            self._held[i] = NULL
        p = PyMem_Realloc(self._hlen, cap * sizeof(Py_ssize_t))
        if p == NULL:
            raise MemoryError()
        self._hlen = <Py_ssize_t *>p
        p = PyMem_Realloc(self._hcap, cap * sizeof(Py_ssize_t))
        if p == NULL:
            raise MemoryError()
        self._hcap = <Py_ssize_t *>p
        p = PyMem_Realloc(self._stamp, cap * sizeof(unsigned int))
        if p == NULL:
            raise MemoryError()
        self._stamp = <unsigned int *>p
        p = PyMem_Realloc(self._listed, cap)
        if p == NULL:
            raise MemoryError()
        self._listed = <unsigned char *>p
        p = PyMem_Realloc(self._holding, cap * sizeof(Py_ssize_t))
        if p == NULL:
            raise MemoryError()
        self._holding = <Py_ssize_t *>p
        self._cap = cap
        return 0

    cdef void _drop_held(self, Py_ssize_t s):
        PyMem_Free(self._held[s])
        self._held[s] = NULL
        self._hlen[s] = 0
        self._hcap[s] = 0

    cdef Py_ssize_t _index(self, object slot) except -1:
        _check_slot_arg(slot)
        if slot < 0 or slot >= len(self._conns) or self._conns[slot] is None:
            raise KeyError(slot)
        return <Py_ssize_t>slot

    def add(self, conn):
        """Store ``conn`` in the lowest free slot (fd -1, not busy) and return the slot."""
        cdef Py_ssize_t slot
        if conn is None:
            raise ValueError("conn must not be None")
        if self._free:
            slot = heappop(self._free)
            self._conns[slot] = conn
        else:
            slot = len(self._conns)
            if slot >= self._cap:
                self._grow()
            self._fds[slot] = -1
            self._busy[slot] = 0
            self._held[slot] = NULL
            self._hlen[slot] = 0
            self._hcap[slot] = 0
            self._stamp[slot] = 0
            self._listed[slot] = 0
            self._conns.append(conn)
        self._used += 1
        return slot

    def remove(self, slot):
        cdef Py_ssize_t s = self._index(slot)
        self._conns[s] = None
        self._fds[s] = -1
        self._busy[s] = 0
        self._drop_held(s)
        heappush(self._free, s)
        self._used -= 1

    def conn(self, slot):
        return self._conns[self._index(slot)]

    def set_fd(self, slot, fd):
        """fd >= 0: a plain WebSocket that fanout() may write to directly (the socket
        must be non-blocking, as gevent's are); -1: it may not. Bytes held back for the
        previous fd go to ``conn.push_raw()``."""
        cdef Py_ssize_t s = self._index(slot)
        cdef bytes held = None
        if not isinstance(fd, int) or fd < -1 or fd > _FD_MAX:
            raise ValueError(f"fd must be an int from -1 to {_FD_MAX}, not {fd!r}")
        if self._fds[s] != <int>fd and self._hlen[s]:
            # bytes held back for the old fd now take the connection's queued path
            held = PyBytes_FromStringAndSize(self._held[s], self._hlen[s])
            self._drop_held(s)
        self._fds[s] = <int>fd
        if held is not None:
            self._conns[s].push_raw(held)

    def set_busy(self, slot, busy):
        self._busy[self._index(slot)] = 1 if busy else 0

    def is_busy(self, slot):
        return self._busy[self._index(slot)] != 0

    def __len__(self):
        return self._used

    # -- coalescing (see roomcast._fanout_py) ----------------------------------------

    def set_flush_hook(self, hook):
        """``hook()`` is called once a pass, at its first write; it must
        arrange for flush() to run before the event loop waits (and not call it itself)."""
        self._flush_hook = hook

    def send(self, slot, data):
        """Write ``data`` to a plain, idle WebSocket slot now, or hold it back until
        flush(); what the kernel does not take goes to ``conn.push_raw(rest)``.
        False, and nothing done, when the slot is busy or has no fd."""
        cdef Py_ssize_t s = self._index(slot)
        if not isinstance(data, bytes):
            raise TypeError(f"data must be bytes, not {type(data).__name__}")
        if self._busy[s] or self._fds[s] < 0:
            return False
        _write(self, s, <object>PyList_GET_ITEM(self._conns, s), <bytes>data)
        return True

    def take_held(self, slot):
        """The slot's held-back bytes, which the caller now owns (None when none)."""
        cdef Py_ssize_t s = self._index(slot)
        cdef bytes out
        if self._hlen[s] == 0:
            return None
        out = PyBytes_FromStringAndSize(self._held[s], self._hlen[s])
        self._drop_held(s)
        return out

    def flush(self):
        """Send every slot's held-back bytes, one send() each, and start the next pass.
        Returns the number of slots written."""
        cdef Py_ssize_t i = 0, s, written = 0
        self._flush_scheduled = False
        while i < self._nholding:   # push_raw() below only queues, but re-read the count anyway
            s = self._holding[i]
            i += 1
            self._listed[s] = 0
            if self._hlen[s]:
                written += 1
                _send_held(self, s)
        self._nholding = 0
        # coalesce the next pass from its first write while it pays: some slot was
        # written more than once in this one (sent at once and held, or held twice)
        self._coalescing = self._repeated
        self._repeated = False
        self._pass += 1
        return written


cdef int _send_held(ConnTable t, Py_ssize_t s) except -1:
    """Send a slot's held-back bytes now (busy: hand them to its connection's queue)."""
    cdef Py_ssize_t size = t._hlen[s], n
    cdef object conn = <object>PyList_GET_ITEM(t._conns, s)
    cdef bytes rest
    if size == 0:
        return 0
    if conn is None or t._fds[s] < 0:
        t._drop_held(s)
        return 0
    if t._busy[s]:
        rest = PyBytes_FromStringAndSize(t._held[s], size)
        t._drop_held(s)
        conn.push_raw(rest)
        return 0
    n = rc_send(t._fds[s], t._held[s], size)
    if n < 0:
        n = 0   # EAGAIN or an error: the connection's writer retries or reports it
    rest = None
    if n != size:
        rest = PyBytes_FromStringAndSize(t._held[s] + n, size - n)
    t._drop_held(s)
    t._stamp[s] = t._pass
    if rest is not None:
        conn.push_raw(rest)
    return 0


cdef inline int _end_pass_with_flush(ConnTable t) except -1:
    """Ask the owner, once a pass, to run flush() before the event loop waits."""
    if not t._flush_scheduled and t._flush_hook is not None:
        t._flush_scheduled = True
        t._flush_hook()
    return 0


cdef int _hold(ConnTable t, Py_ssize_t s, const char *p, Py_ssize_t size) except -1:
    cdef Py_ssize_t need = t._hlen[s] + size, cap
    cdef char *buf
    if need > t._hcap[s]:
        cap = t._hcap[s] * 2 if t._hcap[s] else 512
        while cap < need:
            cap *= 2
        buf = <char *>PyMem_Realloc(t._held[s], cap)
        if buf == NULL:
            raise MemoryError()
        t._held[s] = buf
        t._hcap[s] = cap
    memcpy(t._held[s] + t._hlen[s], p, size)
    t._hlen[s] = need
    if not t._listed[s]:
        t._listed[s] = 1
        t._holding[t._nholding] = s
        t._nholding += 1
    _end_pass_with_flush(t)
    if t._hlen[s] >= HOLD_MAX:
        _send_held(t, s)
    return 0


cdef int _write(ConnTable t, Py_ssize_t s, object conn, bytes ws) except -1:
    """A plain, idle WebSocket slot: send now, or hold back until flush()."""
    cdef Py_ssize_t size = PyBytes_GET_SIZE(ws), n
    if t._hlen[s] or t._stamp[s] == t._pass:
        # a second write to this slot in one pass: from now on this pass coalesces
        t._coalescing = True
        t._repeated = True
        return _hold(t, s, PyBytes_AS_STRING(ws), size)
    if t._coalescing:
        return _hold(t, s, PyBytes_AS_STRING(ws), size)
    t._stamp[s] = t._pass
    _end_pass_with_flush(t)   # every pass that writes ends with flush(): passes are loop passes
    n = rc_send(t._fds[s], PyBytes_AS_STRING(ws), size)
    if n < 0:
        n = 0   # EAGAIN or an error: the connection's writer retries or reports it
    if n != size:
        conn.push_raw(ws if n == 0 else
                      PyBytes_FromStringAndSize(PyBytes_AS_STRING(ws) + n, size - n))
    return 0


cdef inline int _deliver(ConnTable table, Py_ssize_t slot, object packet, bytes ws,
                         bint volatile) except -1:
    """One recipient; 1 when it was sent or queued the packet. The table is read
    afresh every time: the calls below run Python code."""
    if slot < 0 or slot >= PyList_GET_SIZE(table._conns):
        return 0
    conn = <object>PyList_GET_ITEM(table._conns, slot)
    if conn is None:
        return 0
    if table._busy[slot]:
        if volatile:
            return 0
        conn.push(packet)
    elif table._fds[slot] >= 0:
        _write(table, slot, conn, ws)
    else:
        conn.push(packet, volatile)
    return 1


def fanout(selection, ConnTable table not None, packet, bint volatile=False):
    """Deliver ``packet`` to every connection in ``selection``, in slot order.

    Busy connections get ``conn.push(packet)`` (dropped when volatile); idle plain
    WebSockets get ``packet.ws`` written to their (non-blocking) fd, or held back
    for flush() while writes are being coalesced, and whatever did not fit (partial
    write, EAGAIN, any error) goes to ``conn.push_raw(rest)``, whose writer reports
    errors; the others get ``conn.push(packet, volatile)``.
    Returns the number of connections that were sent or queued the packet.
    """
    ws = packet.ws
    if not isinstance(ws, bytes):
        raise TypeError(f"packet.ws must be bytes, not {type(ws).__name__}")
    cdef Py_ssize_t delivered = 0, i
    cdef uint64_t w
    cdef Selection sel
    if isinstance(selection, Selection):
        # The snapshot's words never change, so walking them across Python calls is safe.
        sel = <Selection>selection
        for i in range(sel.nwords):
            w = sel.words[i]
            while w:
                delivered += _deliver(table, (i << 6) + rc_ctz64(w), packet, ws, volatile)
                w &= w - 1
    else:
        for slot in selection:
            delivered += _deliver(table, slot, packet, ws, volatile)
    return delivered

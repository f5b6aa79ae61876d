# cython: language_level=3
"""The fan-out loop, compiled (twin of roomcast._fanout_py: same calls, same results).

The table keeps each slot's fd and busy flag in C arrays next to the list of
connection objects, and fanout() walks a Selection's bitmap words directly, so
an idle WebSocket recipient costs one send(2) and no Python object.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from libc.stdint cimport uint64_t
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


cdef inline int _check_slot_arg(object slot) except -1:
    if not isinstance(slot, int):
        raise TypeError(f"slot must be an int, not {type(slot).__name__}")
    return 0


cdef class ConnTable:
    """slot -> (connection, fd, busy); one per EngineServer."""

    cdef list _conns          # slot -> connection object, None when free
    cdef int *_fds            # _cap entries; -1: no direct writes
    cdef unsigned char *_busy
    cdef Py_ssize_t _cap
    cdef list _free           # min-heap of freed slots below len(_conns)
    cdef Py_ssize_t _used

    def __cinit__(self):
        self._conns = []
        self._free = []
        self._fds = NULL
        self._busy = NULL
        self._cap = 0
        self._used = 0

    def __dealloc__(self):
        PyMem_Free(self._fds)
        PyMem_Free(self._busy)

    cdef Py_ssize_t _index(self, object slot) except -1:
        _check_slot_arg(slot)
        if slot < 0 or slot >= len(self._conns) or self._conns[slot] is None:
            raise KeyError(slot)
        return <Py_ssize_t>slot

    def add(self, conn):
        """Store ``conn`` in the lowest free slot (fd -1, not busy) and return the slot."""
        cdef Py_ssize_t slot, cap
        cdef int *fds
        cdef unsigned char *busy
        if conn is None:
            raise ValueError("conn must not be None")
        if self._free:
            slot = heappop(self._free)
            self._conns[slot] = conn
        else:
            slot = len(self._conns)
            if slot >= self._cap:
                cap = self._cap * 2 if self._cap else 64
                fds = <int *>PyMem_Realloc(self._fds, cap * sizeof(int))
                if fds == NULL:
                    raise MemoryError()
                self._fds = fds
                busy = <unsigned char *>PyMem_Realloc(self._busy, cap)
                if busy == NULL:
                    raise MemoryError()
                self._busy = busy
                self._cap = cap
            self._fds[slot] = -1
            self._busy[slot] = 0
            self._conns.append(conn)
        self._used += 1
        return slot

    def remove(self, slot):
        cdef Py_ssize_t s = self._index(slot)
        self._conns[s] = None
        self._fds[s] = -1
        self._busy[s] = 0
        heappush(self._free, s)
        self._used -= 1

    def conn(self, slot):
        return self._conns[self._index(slot)]

    def set_fd(self, slot, fd):
        """fd >= 0: a plain WebSocket that fanout() may write to directly (the socket
        must be non-blocking, as gevent's are); -1: it may not."""
        cdef Py_ssize_t s = self._index(slot)
        if not isinstance(fd, int) or fd < -1 or fd > _FD_MAX:
            raise ValueError(f"fd must be an int from -1 to {_FD_MAX}, not {fd!r}")
        self._fds[s] = <int>fd

    def set_busy(self, slot, busy):
        self._busy[self._index(slot)] = 1 if busy else 0

    def is_busy(self, slot):
        return self._busy[self._index(slot)] != 0

    def __len__(self):
        return self._used


cdef inline int _deliver(ConnTable table, Py_ssize_t slot, object packet, bytes ws,
                         bint volatile) except -1:
    """One recipient; 1 when it was sent or queued the packet. The table is read
    afresh every time: the calls below run Python code."""
    cdef Py_ssize_t size, n
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
        size = PyBytes_GET_SIZE(ws)
        n = rc_send(table._fds[slot], PyBytes_AS_STRING(ws), size)
        if n < 0:
            n = 0   # EAGAIN or an error: the writer greenlet retries or reports it
        if n != size:
            conn.push_raw(ws if n == 0 else
                          PyBytes_FromStringAndSize(PyBytes_AS_STRING(ws) + n, size - n))
    else:
        conn.push(packet, volatile)
    return 1


def fanout(selection, ConnTable table not None, packet, bint volatile=False):
    """Deliver ``packet`` to every connection in ``selection``, in slot order.

    Busy connections get ``conn.push(packet)`` (dropped when volatile); idle plain
    WebSockets get ``packet.ws`` written to their (non-blocking) fd, and whatever
    did not fit (partial write, EAGAIN, any error) goes to ``conn.push_raw(rest)``,
    whose writer reports errors; the others get ``conn.push(packet, volatile)``.
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

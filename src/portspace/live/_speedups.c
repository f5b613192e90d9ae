/*
 * portspace.live._speedups: optional C versions of the host inspector's per-row loops.
 *
 * Theory of operation
 * -------------------
 * ``portspace ls`` on 20 000 sockets spends most of its own time (not the kernel's) in loops
 * over every socket: decoding inet_diag messages into SockRow tuples, sorting the rows into ls
 * order, walking /proc/<pid>/fd, giving each socket its holders, making the table's cells and
 * padding them.  Each is a pure function of its input, and each has a Python version that
 * stays the reference (``_sockdiag._decode_general``, ``list.sort`` with
 * ``_snapshot.ROW_ORDER``, ``_procfs.scan_socket_fds``, ``_snapshot._attribute_py``,
 * ``cli._live._ls_columns_py``, ``cli._live._columns_table``); tests/live/test_speedups.py
 * checks them equal on captured and generated input.  This module is built by ``pip install``
 * where a C compiler exists and is skipped where none does (setup.py marks it optional); the
 * Python code uses it when it imports and otherwise runs its own loops.  Text is never made
 * here from rules of its own: ls_columns calls the Python cell functions and only caches.
 *
 * Each function does only the common case and hands the rest back to Python:
 *
 *   decode(data, proto, rows, row_type, offset) -> int
 *       Appends a row_type (SockRow) per well-formed SOCK_DIAG_BY_FAMILY message of family
 *       AF_INET or AF_INET6 from ``offset`` on, skips other message types, and returns the
 *       offset of the first message it does not take (malformed framing, a short message, an
 *       unknown family) or the end.  The caller decodes that one message the Python way.
 *   sort_rows(rows) -> bool
 *       Sorts SockRows in place by (proto, lport, family, laddr, state, raddr, rport), stable;
 *       False (rows untouched) for anything it does not expect.
 *   walk(root, skip) -> (processes, scanned, denied, vanished)
 *       ``_procfs.scan_socket_fds(root, None, skip)``: every ``socket:[N]`` fd of every process
 *       under ``root``, as ``[(pid, [(N, fd), ...]), ...]`` in readdir order (the inode N as an
 *       int, not the link text), with the same counts and the same handling of processes that
 *       vanish or refuse (EACCES/EPERM).
 *   ls_columns(socks, host, state, flags, who, procs) -> list[list[str]] | None
 *       ``cli._live._ls_columns_py``: the ls table's cells as columns, made by the same Python
 *       cell functions (called once per distinct value); None for input it does not expect.
 *   ls_json(socks, host, head, text, proc, v6only) -> str | None
 *       ``cli._live._ls_json_rows``: the sockets of ``ls --json``, comma separated, from the
 *       same Python piece functions (called once per distinct value); None as above.
 *   attribute(socks, processes, commands, holder_type, note) -> int | None
 *       ``_snapshot._attribute_py``: holders from the fd walk appended, unheld sockets noted,
 *       their count returned; None (nothing changed) when one inode is in two rows.
 *   pidfd_getfd(pidfd, fd) -> int
 *       The system call (no libc wrapper; ``_pidfd`` otherwise calls it through ctypes).
 *   render(cols, header) -> str | None
 *       The left-aligned table of ``_columns_table`` (columns two spaces apart, the last one
 *       unpadded, the header line right-stripped); None unless every cell is an ASCII str.
 *
 * Layout of an inet_diag_msg (include/uapi/linux/inet_diag.h), after the 16-byte nlmsghdr:
 *   0 family, 1 state, 2 timer, 3 retrans, 4 sport(be16), 6 dport(be16), 8 src[16], 24 dst[16],
 *   40 if, 44 cookie[2], 52 expires, 56 rqueue, 60 wqueue, 64 uid, 68 inode; attributes at 72.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <structmember.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SOCK_DIAG_BY_FAMILY 20
#define MSG_SIZE 72
#define INET_DIAG_SKV6ONLY 11
#define FAMILY_INET 2
#define FAMILY_INET6 10
#define STATE_CLOSE 7
#define STATE_LISTEN 10

static uint32_t rd32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }   /* host order */
static uint16_t rd16(const unsigned char *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint16_t be16(const unsigned char *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static uint32_t be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}
static uint64_t be64(const unsigned char *p) { return ((uint64_t)be32(p) << 32) | be32(p + 4); }

/* A 128-bit big-endian address as a Python int. */
static PyObject *addr128(const unsigned char *p) {
    uint64_t hi = be64(p), lo = be64(p + 8);
    if (hi == 0)
        return PyLong_FromUnsignedLongLong(lo);
    PyObject *h = PyLong_FromUnsignedLongLong(hi), *s = NULL, *l = NULL, *r = NULL;
    PyObject *sixtyfour = PyLong_FromLong(64);
    if (h && sixtyfour)
        s = PyNumber_Lshift(h, sixtyfour);
    if (s)
        l = PyLong_FromUnsignedLongLong(lo);
    if (l)
        r = PyNumber_Or(s, l);
    Py_XDECREF(h); Py_XDECREF(s); Py_XDECREF(l); Py_XDECREF(sixtyfour);
    return r;
}

static PyObject *sd_decode(PyObject *self, PyObject *args) {
    Py_buffer buf;
    PyObject *proto, *rows, *row_type_obj;
    Py_ssize_t off;
    if (!PyArg_ParseTuple(args, "y*UO!On", &buf, &proto, &PyList_Type, &rows, &row_type_obj, &off))
        return NULL;
    if (!PyType_Check(row_type_obj) || !PyType_IsSubtype((PyTypeObject *)row_type_obj, &PyTuple_Type)) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_TypeError, "row_type must be a tuple subclass");
        return NULL;
    }
    PyTypeObject *row_type = (PyTypeObject *)row_type_obj;
    const unsigned char *data = buf.buf;
    Py_ssize_t n = buf.len;
    if (off < 0)
        off = 0;
    while (off + 16 <= n) {
        uint32_t length = rd32(data + off);
        uint16_t mtype = rd16(data + off + 4);
        if (length < 16 || (Py_ssize_t)length > n - off)
            break;                                       /* framing error: Python reports it */
        Py_ssize_t next = off + (Py_ssize_t)((length + 3) & ~3u);
        if (mtype != SOCK_DIAG_BY_FAMILY) {
            off = next;
            continue;
        }
        if (length - 16 < MSG_SIZE)
            break;                                       /* short message: Python reports it */
        const unsigned char *m = data + off + 16;
        int family = m[0], state = m[1], timer = m[2];
        if (family != FAMILY_INET && family != FAMILY_INET6)
            break;                                       /* unknown family: Python reports it */
        uint32_t ifindex = rd32(m + 40), c0 = rd32(m + 44), c1 = rd32(m + 48), expires = rd32(m + 52);
        uint32_t uid = rd32(m + 64), inode = rd32(m + 68);
        PyObject *laddr, *raddr, *v6only = Py_None;
        if (family == FAMILY_INET) {
            laddr = PyLong_FromUnsignedLong(be32(m + 8));
            raddr = PyLong_FromUnsignedLong(be32(m + 24));
        } else {
            laddr = addr128(m + 8);
            raddr = addr128(m + 24);
            if (state == STATE_LISTEN || state == STATE_CLOSE) {
                const unsigned char *a = m + MSG_SIZE, *end = data + off + length;
                while (a + 4 <= end) {
                    uint16_t alen = rd16(a), atype = rd16(a + 2);
                    if (alen < 4 || a + alen > end)
                        break;
                    if ((atype & 0x3FFF) == INET_DIAG_SKV6ONLY && alen > 4) {
                        v6only = a[4] ? Py_True : Py_False;
                        break;
                    }
                    a += (alen + 3) & ~3u;
                }
            }
        }
        PyObject *row = row_type->tp_alloc(row_type, 15);
        if (!laddr || !raddr || !row) {
            Py_XDECREF(laddr); Py_XDECREF(raddr); Py_XDECREF(row);
            PyBuffer_Release(&buf);
            return NULL;
        }
        PyObject *items[15];
        Py_INCREF(proto);
        items[0] = proto;
        items[1] = PyLong_FromLong(family);
        items[2] = PyLong_FromLong(state);
        items[3] = laddr;
        items[4] = PyLong_FromLong(be16(m + 4));
        items[5] = raddr;
        items[6] = PyLong_FromLong(be16(m + 6));
        items[7] = PyLong_FromUnsignedLong(ifindex);
        items[8] = PyLong_FromUnsignedLong(uid);
        items[9] = PyLong_FromUnsignedLong(inode);
        Py_INCREF(v6only);
        items[10] = v6only;
        items[11] = PyLong_FromLong(timer);
        if (timer) {
            items[12] = PyLong_FromUnsignedLong(expires);
        } else {
            Py_INCREF(Py_None);
            items[12] = Py_None;
        }
        items[13] = (timer == 3 && inode == 0) ? Py_True : Py_False;
        Py_INCREF(items[13]);
        items[14] = PyLong_FromUnsignedLongLong(((uint64_t)c1 << 32) | c0);
        int failed = 0;
        for (int i = 0; i < 15; i++) {
            if (items[i] == NULL)
                failed = 1;
            PyTuple_SET_ITEM(row, i, items[i]);   /* a NULL item is tolerated by dealloc */
        }
        if (failed || PyList_Append(rows, row) < 0) {
            Py_DECREF(row);
            PyBuffer_Release(&buf);
            return NULL;
        }
        Py_DECREF(row);
        off = next;
    }
    PyBuffer_Release(&buf);
    return PyLong_FromSsize_t(off);
}

/* ---- sort_rows ---------------------------------------------------------------------------- */

typedef struct {
    uint64_t la_hi, la_lo, ra_hi, ra_lo;
    uint32_t idx;
    uint16_t lport, rport;
    uint8_t proto, family, state;
    PyObject *row;
} sortkey;

static int cmp_u64(uint64_t a, uint64_t b) { return a < b ? -1 : a > b; }

static int key_cmp(const void *pa, const void *pb) {
    const sortkey *a = pa, *b = pb;
    int c;
    if ((c = (int)a->proto - (int)b->proto)) return c;
    if ((c = (int)a->lport - (int)b->lport)) return c;
    if ((c = (int)a->family - (int)b->family)) return c;
    if ((c = cmp_u64(a->la_hi, b->la_hi))) return c;
    if ((c = cmp_u64(a->la_lo, b->la_lo))) return c;
    if ((c = (int)a->state - (int)b->state)) return c;
    if ((c = cmp_u64(a->ra_hi, b->ra_hi))) return c;
    if ((c = cmp_u64(a->ra_lo, b->ra_lo))) return c;
    if ((c = (int)a->rport - (int)b->rport)) return c;
    return a->idx < b->idx ? -1 : a->idx > b->idx;   /* stable, as list.sort */
}

/* An int in [0, lim]; -1 when not (no exception left set). */
static long small_int(PyObject *v, long lim) {
    if (!PyLong_CheckExact(v) && !PyLong_Check(v))
        return -1;
    int overflow = 0;
    long x = PyLong_AsLongAndOverflow(v, &overflow);
    if (overflow || x < 0 || x > lim) {
        PyErr_Clear();
        return -1;
    }
    return x;
}

/* A non-negative int below 2**128 as two words; 0 on success, -1 when not (no exception set). */
static int u128(PyObject *v, uint64_t *hi, uint64_t *lo) {
    if (!PyLong_Check(v))
        return -1;
    /* a negative int fails both conversions below (OverflowError), so it is refused too */
    unsigned long long x = PyLong_AsUnsignedLongLong(v);
    if (!(x == (unsigned long long)-1 && PyErr_Occurred())) {
        *hi = 0;
        *lo = x;
        return 0;
    }
    PyErr_Clear();
    PyObject *sixtyfour = PyLong_FromLong(64);
    PyObject *h = sixtyfour ? PyNumber_Rshift(v, sixtyfour) : NULL;
    Py_XDECREF(sixtyfour);
    if (!h) {
        PyErr_Clear();
        return -1;
    }
    unsigned long long y = PyLong_AsUnsignedLongLong(h);
    Py_DECREF(h);
    if (y == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    *hi = y;
    *lo = PyLong_AsUnsignedLongLongMask(v);
    return 0;
}

static PyObject *sd_sort_rows(PyObject *self, PyObject *args) {
    PyObject *rows;
    if (!PyArg_ParseTuple(args, "O!", &PyList_Type, &rows))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(rows);
    if (n > (Py_ssize_t)UINT32_MAX)
        Py_RETURN_FALSE;
    sortkey *keys = PyMem_Malloc(sizeof(sortkey) * (size_t)(n ? n : 1));
    if (!keys)
        return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *r = PyList_GET_ITEM(rows, i);
        sortkey *k = &keys[i];
        if (!PyTuple_Check(r) || PyTuple_GET_SIZE(r) < 7)
            goto unexpected;
        PyObject *proto = PyTuple_GET_ITEM(r, 0);
        if (!PyUnicode_Check(proto))
            goto unexpected;
        if (PyUnicode_CompareWithASCIIString(proto, "tcp") == 0)
            k->proto = 0;
        else if (PyUnicode_CompareWithASCIIString(proto, "udp") == 0)
            k->proto = 1;
        else
            goto unexpected;
        long lport = small_int(PyTuple_GET_ITEM(r, 4), 65535), rport = small_int(PyTuple_GET_ITEM(r, 6), 65535);
        long family = small_int(PyTuple_GET_ITEM(r, 1), 255), state = small_int(PyTuple_GET_ITEM(r, 2), 255);
        if (lport < 0 || rport < 0 || family < 0 || state < 0)
            goto unexpected;
        if (u128(PyTuple_GET_ITEM(r, 3), &k->la_hi, &k->la_lo) < 0 || u128(PyTuple_GET_ITEM(r, 5), &k->ra_hi, &k->ra_lo) < 0)
            goto unexpected;
        k->lport = (uint16_t)lport;
        k->rport = (uint16_t)rport;
        k->family = (uint8_t)family;
        k->state = (uint8_t)state;
        k->idx = (uint32_t)i;
        k->row = r;
    }
    qsort(keys, (size_t)n, sizeof(sortkey), key_cmp);
    /* the list holds the same references, permuted: no reference count changes */
    for (Py_ssize_t i = 0; i < n; i++)
        PyList_SET_ITEM(rows, i, keys[i].row);
    PyMem_Free(keys);
    Py_RETURN_TRUE;
unexpected:
    PyMem_Free(keys);
    Py_RETURN_FALSE;
}

/* ---- render ------------------------------------------------------------------------------- */

static PyObject *sd_render(PyObject *self, PyObject *args) {
    PyObject *cols, *header;
    if (!PyArg_ParseTuple(args, "OO", &cols, &header))
        return NULL;
    if (!PyList_Check(cols) || !PyTuple_Check(header))
        Py_RETURN_NONE;
    Py_ssize_t ncol = PyTuple_GET_SIZE(header);
    if (ncol < 1 || PyList_GET_SIZE(cols) != ncol)
        Py_RETURN_NONE;
    Py_ssize_t nrow = -1;
    Py_ssize_t *widths = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)ncol);
    if (!widths)
        return PyErr_NoMemory();
    Py_ssize_t total = 0;
    for (Py_ssize_t c = 0; c < ncol; c++) {
        PyObject *h = PyTuple_GET_ITEM(header, c), *col = PyList_GET_ITEM(cols, c);
        if (!PyUnicode_Check(h) || !PyUnicode_IS_ASCII(h) || !PyList_Check(col))
            goto fallback;
        if (nrow < 0)
            nrow = PyList_GET_SIZE(col);
        else if (PyList_GET_SIZE(col) != nrow)
            goto fallback;
        Py_ssize_t w = PyUnicode_GET_LENGTH(h);
        for (Py_ssize_t i = 0; i < nrow; i++) {
            PyObject *cell = PyList_GET_ITEM(col, i);
            if (!PyUnicode_Check(cell) || !PyUnicode_IS_ASCII(cell))
                goto fallback;
            Py_ssize_t len = PyUnicode_GET_LENGTH(cell);
            if (len > w)
                w = len;
            if (c == ncol - 1)
                total += len;
        }
        widths[c] = w;
    }
    /* every line: the padded columns and their separators, the last cell, a newline */
    Py_ssize_t fixed = 0;
    for (Py_ssize_t c = 0; c < ncol - 1; c++)
        fixed += widths[c] + 2;
    Py_ssize_t head_len = fixed + PyUnicode_GET_LENGTH(PyTuple_GET_ITEM(header, ncol - 1));
    total += head_len + 1 + nrow * (fixed + 1);
    PyObject *out = PyUnicode_New(total, 127);
    if (!out) {
        PyMem_Free(widths);
        return NULL;
    }
    char *p = (char *)PyUnicode_1BYTE_DATA(out), *start = p;
    /* header, right-stripped */
    for (Py_ssize_t c = 0; c < ncol; c++) {
        PyObject *h = PyTuple_GET_ITEM(header, c);
        Py_ssize_t len = PyUnicode_GET_LENGTH(h);
        memcpy(p, PyUnicode_1BYTE_DATA(h), (size_t)len);
        p += len;
        if (c < ncol - 1) {
            memset(p, ' ', (size_t)(widths[c] - len + 2));
            p += widths[c] - len + 2;
        }
    }
    while (p > start && p[-1] == ' ')
        p--;
    *p++ = '\n';
    for (Py_ssize_t i = 0; i < nrow; i++) {
        for (Py_ssize_t c = 0; c < ncol; c++) {
            PyObject *cell = PyList_GET_ITEM(PyList_GET_ITEM(cols, c), i);
            Py_ssize_t len = PyUnicode_GET_LENGTH(cell);
            memcpy(p, PyUnicode_1BYTE_DATA(cell), (size_t)len);
            p += len;
            if (c < ncol - 1) {
                memset(p, ' ', (size_t)(widths[c] - len + 2));
                p += widths[c] - len + 2;
            }
        }
        *p++ = '\n';
    }
    PyMem_Free(widths);
    Py_ssize_t used = p - start;
    if (used == total)
        return out;
    /* the header lost trailing blanks: a shorter copy (rare: a blank last header) */
    PyObject *exact = PyUnicode_Substring(out, 0, used);
    Py_DECREF(out);
    return exact;
fallback:
    PyMem_Free(widths);
    Py_RETURN_NONE;
}

/* ---- ls_columns ---------------------------------------------------------------------------- */

/* The decimal digits of v at buf (NUL-terminated); their count. */
static int utoa(char *buf, unsigned long long v) {
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (int i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    buf[n] = 0;
    return n;
}

/* ``text + sep + tail`` (sep and tail ASCII C strings); ASCII texts are copied directly,
 * others go through PyUnicode_FromFormat. */
static PyObject *joined(PyObject *text, const char *sep, const char *tail) {
    size_t ls = strlen(sep), lt = strlen(tail);
    if (!PyUnicode_IS_ASCII(text))
        return PyUnicode_FromFormat("%U%s%s", text, sep, tail);
    Py_ssize_t lx = PyUnicode_GET_LENGTH(text);
    PyObject *out = PyUnicode_New(lx + (Py_ssize_t)(ls + lt), 127);
    if (!out)
        return NULL;
    char *p = (char *)PyUnicode_1BYTE_DATA(out);
    memcpy(p, PyUnicode_1BYTE_DATA(text), (size_t)lx);
    memcpy(p + lx, sep, ls);
    memcpy(p + lx + ls, tail, lt);
    return out;
}

/* dict[key], or fn(*key) -- fn(arg) when ``arg`` is given -- stored under key: a new
 * reference, NULL on error.  The value must be a str, or with ``pair`` a 2-tuple of str.
 * Steals ``key`` (NULL: an error is already set). */
static PyObject *cached(PyObject *dict, PyObject *key, PyObject *fn, PyObject *arg, int pair) {
    if (!key)
        return NULL;
    PyObject *v = PyDict_GetItemWithError(dict, key);
    if (v) {
        Py_INCREF(v);
    } else if (!PyErr_Occurred()) {
        v = arg ? PyObject_CallOneArg(fn, arg) : PyObject_CallObject(fn, key);
        int ok = v && (pair ? PyTuple_Check(v) && PyTuple_GET_SIZE(v) == 2 && PyUnicode_Check(PyTuple_GET_ITEM(v, 0)) &&
                                  PyUnicode_Check(PyTuple_GET_ITEM(v, 1))
                            : PyUnicode_Check(v));
        if (v && !ok) {
            PyErr_SetString(PyExc_TypeError, "a cell or piece function returned the wrong type");
            Py_CLEAR(v);
        }
        if (v && PyDict_SetItem(dict, key, v) < 0)
            Py_CLEAR(v);
    }
    Py_DECREF(key);
    return v;
}

/* Append a new reference to a list and drop it; -1 on error (v NULL: an error already set). */
static int append_new(PyObject *list, PyObject *v) {
    if (!v)
        return -1;
    int r = PyList_Append(list, v);
    Py_DECREF(v);
    return r;
}

/* A cell remembered with the C-level values it was made from.  Consecutive rows in ls order
 * mostly repeat the previous row's address, state, flags, uid and process, so most cells cost
 * a comparison with the last row; the others a dict lookup (the Python loop's cache) and, the
 * first time, a call of the Python cell function.  Objects are compared by identity (a miss
 * only means the dict is asked). */
typedef struct {
    int valid;
    long n1, n2;
    uint64_t hi, lo;
    PyObject *o1, *o2, *o3, *o4;   /* references held by the memo (so an address is never reused */
    PyObject *text;                /* for another object while compared), and the cell's text */
} memo;

static int memo_hit(const memo *m, long n1, long n2, uint64_t hi, uint64_t lo, PyObject *o1, PyObject *o2,
                    PyObject *o3, PyObject *o4) {
    return m->valid && m->n1 == n1 && m->n2 == n2 && m->hi == hi && m->lo == lo && m->o1 == o1 && m->o2 == o2 &&
           m->o3 == o3 && m->o4 == o4;
}

static void memo_set(memo *m, long n1, long n2, uint64_t hi, uint64_t lo, PyObject *o1, PyObject *o2,
                     PyObject *o3, PyObject *o4, PyObject *text) {
    Py_INCREF(text);
    Py_XSETREF(m->text, text);
    Py_XINCREF(o1); Py_XINCREF(o2); Py_XINCREF(o3); Py_XINCREF(o4);
    Py_XSETREF(m->o1, o1); Py_XSETREF(m->o2, o2); Py_XSETREF(m->o3, o3); Py_XSETREF(m->o4, o4);
    m->valid = 1;
    m->n1 = n1; m->n2 = n2; m->hi = hi; m->lo = lo;
}

static void memo_clear(memo *m) {
    Py_CLEAR(m->text); Py_CLEAR(m->o1); Py_CLEAR(m->o2); Py_CLEAR(m->o3); Py_CLEAR(m->o4);
}

/* Make ``m.text`` this row's cell: kept when the row's C values (n1, n2, hi, lo, o1..o4) are the
 * memo's, else ``cached(dict, KEY, fn, arg, pair)`` remembered under them.  KEY is built only on
 * a miss.  Jumps to ``done`` on an error (the function's one exit). */
#define MEMO(m, n1, n2, hi, lo, o1, o2, o3, o4, dict, KEY, fn, arg, pair)                          \
    do {                                                                                       \
        if (!memo_hit(&(m), n1, n2, hi, lo, o1, o2, o3, o4)) {                                  \
            PyObject *made_ = cached(dict, KEY, fn, arg, pair);                                \
            if (!made_)                                                                        \
                goto done;                                                                     \
            memo_set(&(m), n1, n2, hi, lo, o1, o2, o3, o4, made_);                             \
            Py_DECREF(made_);                                                                  \
        }                                                                                      \
    } while (0)

/* Reading a HostSocket's attributes.  HostSocket keeps them in __slots__: when an object's
 * type keeps an attribute as a plain object slot and nothing overrides attribute access, it
 * is read at the slot's offset (found once per type from its member descriptor); otherwise,
 * or when the slot is unset, by getattr, which raises as Python would. */
#define MAX_SLOTS 5
typedef struct { PyTypeObject *type; int n; Py_ssize_t off[MAX_SLOTS]; } slot_map;

static void slots_of(PyTypeObject *type, PyObject *const *names, int n, slot_map *map) {
    map->type = NULL;
    map->n = n;
    if (type->tp_getattro != PyObject_GenericGetAttr)
        return;
    for (int i = 0; i < n; i++) {
        PyObject *d = _PyType_Lookup(type, names[i]);
        if (!d || Py_TYPE(d) != &PyMemberDescr_Type)
            return;
        PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
        if (m->type != T_OBJECT_EX || (m->flags & READ_RESTRICTED))
            return;
        map->off[i] = m->offset;
    }
    map->type = type;
}

/* obj's attributes names[0..map->n) as new references in got[] (the previous ones dropped);
 * -1 with an exception set when one is missing. */
static int get_slots(PyObject *obj, PyObject *const *names, slot_map *map, PyObject **got) {
    if (Py_TYPE(obj) != map->type)
        slots_of(Py_TYPE(obj), names, map->n, map);
    for (int k = 0; k < map->n; k++) {
        Py_CLEAR(got[k]);
        if (map->type) {
            got[k] = *(PyObject **)((char *)obj + map->off[k]);
            Py_XINCREF(got[k]);
        }
        if (!got[k] && !(got[k] = PyObject_GetAttr(obj, names[k])))
            return -1;
    }
    return 0;
}

static PyObject *s_row, *s_device, *s_reuseaddr, *s_reuseport, *s_holders, *s_flags_note, *dash, *quest, *star;

static int intern_names(void) {
    if (s_row)
        return 0;
    s_row = PyUnicode_InternFromString("row");
    s_device = PyUnicode_InternFromString("device");
    s_reuseaddr = PyUnicode_InternFromString("reuseaddr");
    s_reuseport = PyUnicode_InternFromString("reuseport");
    s_holders = PyUnicode_InternFromString("holders");
    s_flags_note = PyUnicode_InternFromString("flags_note");
    dash = PyUnicode_InternFromString("-");
    quest = PyUnicode_InternFromString("?");
    star = PyUnicode_InternFromString("*");
    return s_row && s_device && s_reuseaddr && s_reuseport && s_holders && s_flags_note && dash && quest && star ? 0 : -1;
}

enum { S_ROW, S_DEVICE, S_REUSEADDR, S_REUSEPORT, S_HOLDERS };

#define NCOLS 8
enum { C_PROTO, C_STATE, C_LOCAL, C_PEER, C_UID, C_FLAGS, C_TIMER, C_PROCS };

static PyObject *sd_ls_columns(PyObject *self, PyObject *args) {
    PyObject *socks, *host_fn, *state_fn, *flags_fn, *who_fn, *procs_fn;
    if (!PyArg_ParseTuple(args, "OOOOOO", &socks, &host_fn, &state_fn, &flags_fn, &who_fn, &procs_fn))
        return NULL;
    if (!PyList_Check(socks))
        Py_RETURN_NONE;
    if (intern_names() < 0)
        return NULL;
    PyObject *const names[5] = {s_row, s_device, s_reuseaddr, s_reuseport, s_holders};
    PyObject *cols = PyList_New(NCOLS);
    PyObject *addrs = PyDict_New(), *states = PyDict_New(), *flags = PyDict_New(), *who = PyDict_New();
    PyObject *uids = PyDict_New(), *protos6 = PyDict_New();
    PyObject *got[5] = {NULL, NULL, NULL, NULL, NULL};   /* this row's slots (new references) */
    PyObject *result = NULL;
    memo m_local = {0}, m_peer = {0}, m_state = {0}, m_flags = {0}, m_uid = {0}, m_who = {0}, m_proto = {0};
    slot_map map = {NULL, 5, {0}};
    char num[32], tail[40];
    if (!cols || !addrs || !states || !flags || !who || !uids || !protos6)
        goto done;
    for (int c = 0; c < NCOLS; c++) {
        PyObject *col = PyList_New(0);
        if (!col)
            goto done;
        PyList_SET_ITEM(cols, c, col);
    }
#define COL(c) PyList_GET_ITEM(cols, c)
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(socks); i++) {
        PyObject *hs = PyList_GET_ITEM(socks, i);
        if (get_slots(hs, names, &map, got) < 0)
            goto done;
        PyObject *row = got[S_ROW], *dev = got[S_DEVICE], *ra = got[S_REUSEADDR], *rp = got[S_REUSEPORT];
        PyObject *holders = got[S_HOLDERS];
        if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) < 14 || !PyList_Check(holders))
            goto decline;
        PyObject *proto = PyTuple_GET_ITEM(row, 0), *family = PyTuple_GET_ITEM(row, 1);
        PyObject *state = PyTuple_GET_ITEM(row, 2), *laddr = PyTuple_GET_ITEM(row, 3);
        PyObject *raddr = PyTuple_GET_ITEM(row, 5), *ifindex = PyTuple_GET_ITEM(row, 7);
        PyObject *uid = PyTuple_GET_ITEM(row, 8), *v6only = PyTuple_GET_ITEM(row, 10);
        PyObject *expires = PyTuple_GET_ITEM(row, 12), *twobj = PyTuple_GET_ITEM(row, 13);
        long fam = small_int(family, 255), st = small_int(state, 255), ifi = small_int(ifindex, LONG_MAX);
        long lport = small_int(PyTuple_GET_ITEM(row, 4), 65535), rport = small_int(PyTuple_GET_ITEM(row, 6), 65535);
        uint64_t la_hi, la_lo, ra_hi = 0, ra_lo = 0;
        if (!PyUnicode_Check(proto) || !PyBool_Check(twobj) || fam < 0 || st < 0 || ifi < 0 || lport < 0 ||
            rport < 0 || u128(laddr, &la_hi, &la_lo) < 0 || (rport && u128(raddr, &ra_hi, &ra_lo) < 0))
            goto decline;
        int tw = twobj == Py_True;
        PyObject *t;

        /* LOCAL and PEER: "addr:port" */
        MEMO(m_local, fam, 0, la_hi, la_lo, dev, NULL, NULL, NULL, addrs, PyTuple_Pack(3, family, laddr, dev),
             host_fn, NULL, 0);
        if (lport)
            utoa(num, (unsigned long long)lport);
        else
            strcpy(num, "*");
        if (append_new(COL(C_LOCAL), joined(m_local.text, ":", num)) < 0)
            goto done;
        if (rport) {
            MEMO(m_peer, fam, 0, ra_hi, ra_lo, dev, NULL, NULL, NULL, addrs, PyTuple_Pack(3, family, raddr, dev),
                 host_fn, NULL, 0);
            utoa(num, (unsigned long long)rport);
            if (append_new(COL(C_PEER), joined(m_peer.text, ":", num)) < 0)
                goto done;
        } else if (PyList_Append(COL(C_PEER), star) < 0) {
            goto done;
        }

        /* STATE, and PROTO ("tcp6" for AF_INET6) */
        MEMO(m_state, st, 0, 0, 0, proto, NULL, NULL, NULL, states, PyTuple_Pack(2, proto, state), state_fn, NULL, 0);
        if (PyList_Append(COL(C_STATE), m_state.text) < 0)
            goto done;
        if (fam != FAMILY_INET6) {
            t = proto;
        } else if (memo_hit(&m_proto, 0, 0, 0, 0, proto, NULL, NULL, NULL)) {
            t = m_proto.text;
        } else {
            t = PyDict_GetItemWithError(protos6, proto);
            if (!t) {
                if (PyErr_Occurred() || !(t = PyUnicode_FromFormat("%U6", proto)) ||
                    PyDict_SetItem(protos6, proto, t) < 0) {
                    Py_XDECREF(t);
                    goto done;
                }
                Py_DECREF(t);   /* the dict holds it */
            }
            memo_set(&m_proto, 0, 0, 0, 0, proto, NULL, NULL, NULL, t);
        }
        if (PyList_Append(COL(C_PROTO), t) < 0)
            goto done;

        /* TW-LEFT and UID */
        if (tw) {
            if (expires == Py_None) {
                t = quest;
                Py_INCREF(t);
            } else {
                int overflow = 0;
                long long ms = PyLong_Check(expires) ? PyLong_AsLongLongAndOverflow(expires, &overflow) : 0;
                if (!PyLong_Check(expires) || overflow || ms > (1LL << 53) || ms < -(1LL << 53)) {
                    PyErr_Clear();
                    goto decline;
                }
                /* as Python's f"{ms / 1000:.1f}s": the correctly rounded quotient, formatted as float.__format__ does */
                char *d = PyOS_double_to_string((double)ms / 1000.0, 'f', 1, 0, NULL);
                if (!d)
                    goto done;
                snprintf(tail, sizeof tail, "%ss", d);
                PyMem_Free(d);
                t = PyUnicode_FromString(tail);
            }
            if (append_new(COL(C_TIMER), t) < 0 || PyList_Append(COL(C_UID), dash) < 0)
                goto done;
        } else {
            if (PyList_Append(COL(C_TIMER), dash) < 0)
                goto done;
            long u = small_int(uid, LONG_MAX);
            if (u < 0 || !memo_hit(&m_uid, u, 0, 0, 0, NULL, NULL, NULL, NULL)) {
                t = PyDict_GetItemWithError(uids, uid);
                if (t) {
                    Py_INCREF(t);
                } else if (PyErr_Occurred() || !(t = PyObject_Str(uid)) || PyDict_SetItem(uids, uid, t) < 0) {
                    Py_XDECREF(t);
                    goto done;
                }
                memo_set(&m_uid, u, 0, 0, 0, NULL, NULL, NULL, NULL, t);
                m_uid.valid = u >= 0;
                Py_DECREF(t);
            }
            if (PyList_Append(COL(C_UID), m_uid.text) < 0)
                goto done;
        }

        /* FLAGS: keyed by what flags_text() reads (see _ls_columns_py) */
        {
            int zero = la_hi == 0 && la_lo == 0, mapped = la_hi == 0 && (la_lo >> 32) == 0xFFFF;
            MEMO(m_flags, fam, ifi, (uint64_t)zero, (uint64_t)mapped, ra, rp, v6only, dev, flags,
                 PyTuple_Pack(8, family, ra, rp, v6only, zero ? Py_True : Py_False, mapped ? Py_True : Py_False,
                              dev, ifindex), flags_fn, hs, 0);
            if (PyList_Append(COL(C_FLAGS), m_flags.text) < 0)
                goto done;
        }

        /* PROCESS: "pid/comm fd N"; several holders by the Python cell function */
        Py_ssize_t nh = PyList_GET_SIZE(holders);
        if (nh == 0) {
            if (PyList_Append(COL(C_PROCS), tw ? dash : quest) < 0)
                goto done;
        } else if (nh == 1) {
            PyObject *h = PyList_GET_ITEM(holders, 0);
            if (!PyTuple_Check(h) || PyTuple_GET_SIZE(h) != 3)
                goto decline;
            PyObject *pid = PyTuple_GET_ITEM(h, 0);
            long pidn = small_int(pid, LONG_MAX), fdn = small_int(PyTuple_GET_ITEM(h, 1), LONG_MAX);
            if (pidn < 0 || fdn < 0)
                goto decline;
            if (!memo_hit(&m_who, pidn, 0, 0, 0, NULL, NULL, NULL, NULL)) {
                /* keyed by pid, as the Python loop: who(pid, command) on a miss */
                t = PyDict_GetItemWithError(who, pid);
                if (t) {
                    Py_INCREF(t);
                } else if (!PyErr_Occurred()) {
                    t = PyObject_CallFunctionObjArgs(who_fn, pid, PyTuple_GET_ITEM(h, 2), NULL);
                    if (t && (!PyUnicode_Check(t) || PyDict_SetItem(who, pid, t) < 0)) {
                        if (!PyErr_Occurred())
                            PyErr_SetString(PyExc_TypeError, "ls_columns: a cell function returned a non-str");
                        Py_CLEAR(t);
                    }
                }
                if (!t)
                    goto done;
                memo_set(&m_who, pidn, 0, 0, 0, NULL, NULL, NULL, NULL, t);
                Py_DECREF(t);
            }
            utoa(num, (unsigned long long)fdn);
            if (append_new(COL(C_PROCS), joined(m_who.text, " fd ", num)) < 0)
                goto done;
        } else if (append_new(COL(C_PROCS), PyObject_CallOneArg(procs_fn, hs)) < 0) {
            goto done;
        }
    }
#undef COL
    result = cols;
    cols = NULL;
    goto done;
decline:
    PyErr_Clear();
    result = Py_None;
    Py_INCREF(result);
done:
    for (int k = 0; k < 5; k++)
        Py_XDECREF(got[k]);
    memo_clear(&m_local); memo_clear(&m_peer); memo_clear(&m_state); memo_clear(&m_flags);
    memo_clear(&m_uid); memo_clear(&m_who); memo_clear(&m_proto);
    Py_XDECREF(cols); Py_XDECREF(addrs); Py_XDECREF(states); Py_XDECREF(flags); Py_XDECREF(who);
    Py_XDECREF(uids); Py_XDECREF(protos6);
    return result;
}

/* ---- ls_json ----------------------------------------------------------------------------------- */

/* A growing ASCII buffer. */
typedef struct { char *p; Py_ssize_t len, cap; } buf_t;

static int buf_put(buf_t *b, const char *s, Py_ssize_t n) {
    if (b->len + n > b->cap) {
        Py_ssize_t cap = b->cap ? b->cap : 1 << 16;
        while (cap < b->len + n)
            cap *= 2;
        char *q = PyMem_Realloc(b->p, (size_t)cap);
        if (!q) {
            PyErr_NoMemory();
            return -1;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, (size_t)n);
    b->len += n;
    return 0;
}

static int buf_str(buf_t *b, const char *s) { return buf_put(b, s, (Py_ssize_t)strlen(s)); }

/* An ASCII str's characters (the json escaper's output is ASCII); -1 (no error set) when the
 * object is not an ASCII str. */
static int buf_text(buf_t *b, PyObject *text) {
    if (!PyUnicode_Check(text) || !PyUnicode_IS_ASCII(text))
        return -2;
    return buf_put(b, (const char *)PyUnicode_1BYTE_DATA(text), PyUnicode_GET_LENGTH(text));
}

static int buf_num(buf_t *b, unsigned long long v) {
    char num[24];
    int n = utoa(num, v);
    return buf_put(b, num, n);
}

static const char *lit_of(PyObject *v) {
    return v == Py_True ? "true" : v == Py_False ? "false" : v == Py_None ? "null" : NULL;
}

/* A non-negative int that fits 64 bits, or -1. */
static long long u64_of(PyObject *v) {
    if (!PyLong_Check(v) || PyBool_Check(v))
        return -1;
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || x < 0) {
        PyErr_Clear();
        return -1;
    }
    return x;
}

static PyObject *sd_ls_json(PyObject *self, PyObject *args) {
    PyObject *socks, *host_fn, *head_fn, *text_fn, *proc_fn, *v6_fn;
    if (!PyArg_ParseTuple(args, "OOOOOO", &socks, &host_fn, &head_fn, &text_fn, &proc_fn, &v6_fn))
        return NULL;
    if (!PyList_Check(socks))
        Py_RETURN_NONE;
    if (intern_names() < 0)
        return NULL;
    PyObject *const names[5] = {s_row, s_device, s_reuseaddr, s_reuseport, s_holders};
    static PyObject *s_note;
    if (!s_note && !(s_note = PyUnicode_InternFromString("flags_note")))
        return NULL;
    slot_map map = {NULL, 5, {0}};
    PyObject *got[5] = {NULL, NULL, NULL, NULL, NULL}, *note = NULL, *result = NULL;
    PyObject *addrs = PyDict_New(), *heads = PyDict_New(), *texts = PyDict_New(), *procs = PyDict_New();
    PyObject *v6s = PyDict_New();
    memo m_local = {0}, m_peer = {0}, m_head = {0}, m_note = {0}, m_dev = {0}, m_v6 = {0}, m_proc = {0};
    buf_t b = {NULL, 0, 0};
    int r;
    if (!addrs || !heads || !texts || !procs || !v6s)
        goto done;
#define PUT(expr) do { if ((r = (expr)) == -2) goto decline; if (r < 0) goto done; } while (0)
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(socks); i++) {
        PyObject *hs = PyList_GET_ITEM(socks, i);
        if (get_slots(hs, names, &map, got) < 0)
            goto done;
        Py_CLEAR(note);
        if (!(note = PyObject_GetAttr(hs, s_note)))
            goto done;
        PyObject *row = got[S_ROW], *dev = got[S_DEVICE], *holders = got[S_HOLDERS];
        if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) < 14 || !PyList_Check(holders))
            goto decline;
        PyObject *proto = PyTuple_GET_ITEM(row, 0), *family = PyTuple_GET_ITEM(row, 1);
        PyObject *state = PyTuple_GET_ITEM(row, 2), *laddr = PyTuple_GET_ITEM(row, 3);
        PyObject *raddr = PyTuple_GET_ITEM(row, 5), *v6only = PyTuple_GET_ITEM(row, 10);
        PyObject *expires = PyTuple_GET_ITEM(row, 12), *twobj = PyTuple_GET_ITEM(row, 13);
        long fam = small_int(family, 255), st = small_int(state, 255);
        long long lport = u64_of(PyTuple_GET_ITEM(row, 4)), rport = u64_of(PyTuple_GET_ITEM(row, 6));
        long long ifindex = u64_of(PyTuple_GET_ITEM(row, 7)), uid = u64_of(PyTuple_GET_ITEM(row, 8));
        long long inode = u64_of(PyTuple_GET_ITEM(row, 9));
        long long exp = expires == Py_None ? 0 : u64_of(expires);
        const char *tw = lit_of(twobj), *ra = lit_of(got[S_REUSEADDR]), *rp = lit_of(got[S_REUSEPORT]);
        uint64_t la_hi, la_lo, ra_hi = 0, ra_lo = 0;
        if (!PyUnicode_Check(proto) || !PyBool_Check(twobj) || !ra || !rp || fam < 0 || st < 0 || lport < 0 ||
            rport < 0 || ifindex < 0 || uid < 0 || inode < 0 || exp < 0 || u128(laddr, &la_hi, &la_lo) < 0 ||
            (rport && u128(raddr, &ra_hi, &ra_lo) < 0))
            goto decline;
        int is_tw = twobj == Py_True;
        if (i)
            PUT(buf_put(&b, ", ", 2));
        /* head: {"proto": ..., "family": ..., "state": ..., "local": */
        MEMO(m_head, fam, st, 0, 0, proto, NULL, NULL, NULL, heads, PyTuple_Pack(3, proto, family, state), head_fn,
             NULL, 0);
        PUT(buf_text(&b, m_head.text));
        /* "local": "A:P", "peer": "B:Q" | "*", "local_address": "A" */
        MEMO(m_local, fam, 0, la_hi, la_lo, dev, NULL, NULL, NULL, addrs, PyTuple_Pack(3, family, laddr, dev),
             host_fn, NULL, 1);
        PUT(buf_text(&b, PyTuple_GET_ITEM(m_local.text, 0)));
        PUT(buf_put(&b, ":", 1));
        PUT(lport ? buf_num(&b, (unsigned long long)lport) : buf_put(&b, "*", 1));
        PUT(buf_str(&b, "\", \"peer\": "));
        if (rport) {
            MEMO(m_peer, fam, 0, ra_hi, ra_lo, dev, NULL, NULL, NULL, addrs, PyTuple_Pack(3, family, raddr, dev),
                 host_fn, NULL, 1);
            PUT(buf_text(&b, PyTuple_GET_ITEM(m_peer.text, 0)));
            PUT(buf_put(&b, ":", 1));
            PUT(buf_num(&b, (unsigned long long)rport));
            PUT(buf_put(&b, "\"", 1));
        } else {
            PUT(buf_str(&b, "\"*\""));
        }
        PUT(buf_str(&b, ", \"local_address\": "));
        PUT(buf_text(&b, PyTuple_GET_ITEM(m_local.text, 1)));
        PUT(buf_str(&b, ", \"local_port\": "));
        PUT(buf_num(&b, (unsigned long long)lport));
        PUT(buf_str(&b, ", \"peer_port\": "));
        PUT(buf_num(&b, (unsigned long long)rport));
        PUT(buf_str(&b, ", \"uid\": "));
        PUT(is_tw ? buf_str(&b, "null") : buf_num(&b, (unsigned long long)uid));
        PUT(buf_str(&b, ", \"inode\": "));
        PUT(inode ? buf_num(&b, (unsigned long long)inode) : buf_str(&b, "null"));
        PUT(buf_str(&b, ", \"time_wait\": "));
        PUT(buf_str(&b, tw));
        PUT(buf_str(&b, ", \"timer_ms\": "));
        PUT(expires == Py_None ? buf_str(&b, "null") : buf_num(&b, (unsigned long long)exp));
        /* "device": null | "name" */
        PUT(buf_str(&b, ", \"device\": "));
        MEMO(m_dev, 0, 0, 0, 0, dev, NULL, NULL, NULL, texts, PyTuple_Pack(1, dev), text_fn, NULL, 0);
        PUT(buf_text(&b, m_dev.text));
        PUT(buf_str(&b, ", \"ifindex\": "));
        PUT(ifindex ? buf_num(&b, (unsigned long long)ifindex) : buf_str(&b, "null"));
        PUT(buf_str(&b, ", \"reuseaddr\": "));
        PUT(buf_str(&b, ra));
        PUT(buf_str(&b, ", \"reuseport\": "));
        PUT(buf_str(&b, rp));
        /* "v6only": keyed by what HostSocket.v6only reads */
        PUT(buf_str(&b, ", \"v6only\": "));
        {
            int zero = la_hi == 0 && la_lo == 0, mapped = la_hi == 0 && (la_lo >> 32) == 0xFFFF;
            MEMO(m_v6, fam, zero * 2 + mapped, 0, 0, v6only, NULL, NULL, NULL, v6s,
                 PyTuple_Pack(4, family, v6only, zero ? Py_True : Py_False, mapped ? Py_True : Py_False), v6_fn, hs, 0);
            PUT(buf_text(&b, m_v6.text));
        }
        PUT(buf_str(&b, ", \"flags_unknown_because\": "));
        MEMO(m_note, 0, 0, 0, 0, note, NULL, NULL, NULL, texts, PyTuple_Pack(1, note), text_fn, NULL, 0);
        PUT(buf_text(&b, m_note.text));
        PUT(buf_str(&b, ", \"processes\": ["));
        for (Py_ssize_t k = 0; k < PyList_GET_SIZE(holders); k++) {
            PyObject *h = PyList_GET_ITEM(holders, k);
            if (!PyTuple_Check(h) || PyTuple_GET_SIZE(h) != 3)
                goto decline;
            PyObject *pid = PyTuple_GET_ITEM(h, 0), *command = PyTuple_GET_ITEM(h, 2);
            long long pidn = u64_of(pid), fd = u64_of(PyTuple_GET_ITEM(h, 1));
            if (pidn < 0 || fd < 0)
                goto decline;
            MEMO(m_proc, (long)pidn, 0, 0, 0, command, NULL, NULL, NULL, procs, PyTuple_Pack(2, pid, command), proc_fn,
                 NULL, 1);
            if (k)
                PUT(buf_put(&b, ", ", 2));
            PUT(buf_text(&b, PyTuple_GET_ITEM(m_proc.text, 0)));
            PUT(buf_num(&b, (unsigned long long)fd));
            PUT(buf_text(&b, PyTuple_GET_ITEM(m_proc.text, 1)));
        }
        PUT(buf_str(&b, "]}"));
    }
#undef PUT
    result = PyUnicode_DecodeASCII(b.p ? b.p : "", b.len, "strict");
    goto done;
decline:
    PyErr_Clear();
    result = Py_None;
    Py_INCREF(result);
done:
    for (int k = 0; k < 5; k++)
        Py_XDECREF(got[k]);
    Py_XDECREF(note);
    memo_clear(&m_local); memo_clear(&m_peer); memo_clear(&m_head); memo_clear(&m_note); memo_clear(&m_dev);
    memo_clear(&m_v6); memo_clear(&m_proc);
    Py_XDECREF(addrs); Py_XDECREF(heads); Py_XDECREF(texts); Py_XDECREF(procs); Py_XDECREF(v6s);
    PyMem_Free(b.p);
    return result;
}

/* ---- attribute ----------------------------------------------------------------------------- */

static int is_zero(PyObject *v) {
    int overflow = 0;
    long x = PyLong_AsLongAndOverflow(v, &overflow);
    return !overflow && x == 0;
}

static PyObject *sd_attribute(PyObject *self, PyObject *args) {
    PyObject *socks, *processes, *commands, *note;
    PyTypeObject *holder_type;
    if (!PyArg_ParseTuple(args, "OOO!O!O", &socks, &processes, &PyDict_Type, &commands, &PyType_Type, &holder_type,
                          &note))
        return NULL;
    /* Holder is a NamedTuple: a tuple subtype with no storage of its own, made as tuple.__new__ makes it */
    if (!PyList_Check(socks) || !PyList_Check(processes) || !PyType_IsSubtype(holder_type, &PyTuple_Type) ||
        holder_type->tp_basicsize != PyTuple_Type.tp_basicsize || holder_type->tp_itemsize != PyTuple_Type.tp_itemsize ||
        holder_type->tp_alloc == NULL)
        Py_RETURN_NONE;
    if (intern_names() < 0)
        return NULL;
    PyObject *const names[2] = {s_row, s_holders};
    slot_map map = {NULL, 2, {0}};
    PyObject *got[2] = {NULL, NULL}, *want = PyDict_New(), *result = NULL;
    Py_ssize_t n = PyList_GET_SIZE(socks), unattributed = 0;
    if (!want)
        return NULL;
    /* inode -> socket; a socket in two rows (it moved between tables during the dump): Python's */
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *hs = PyList_GET_ITEM(socks, i);
        if (get_slots(hs, names, &map, got) < 0)
            goto done;
        PyObject *row = got[0];
        if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) < 10 || !PyList_Check(got[1]))
            goto decline;
        PyObject *inode = PyTuple_GET_ITEM(row, 9);
        if (!PyLong_CheckExact(inode))
            goto decline;
        if (is_zero(inode))
            continue;
        PyObject *had = PyDict_SetDefault(want, inode, hs);   /* borrowed */
        if (!had)
            goto done;
        if (had != hs)
            goto decline;
    }
    /* the walk's shape checked before anything is changed: a decline leaves the sockets as they were */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(processes); i++) {
        PyObject *entry = PyList_GET_ITEM(processes, i);
        if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 2 || !PyList_Check(PyTuple_GET_ITEM(entry, 1)))
            goto decline;
        PyObject *pairs = PyTuple_GET_ITEM(entry, 1);
        for (Py_ssize_t j = 0; j < PyList_GET_SIZE(pairs); j++) {
            PyObject *pair = PyList_GET_ITEM(pairs, j);
            if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2)
                goto decline;
        }
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(processes); i++) {
        PyObject *entry = PyList_GET_ITEM(processes, i);
        PyObject *pid = PyTuple_GET_ITEM(entry, 0), *pairs = PyTuple_GET_ITEM(entry, 1);
        PyObject *command = PyDict_GetItemWithError(commands, pid);
        if (!command) {
            if (PyErr_Occurred())
                goto done;
            command = Py_None;
        }
        for (Py_ssize_t j = 0; j < PyList_GET_SIZE(pairs); j++) {
            PyObject *pair = PyList_GET_ITEM(pairs, j);
            PyObject *hs = PyDict_GetItemWithError(want, PyTuple_GET_ITEM(pair, 0));
            if (!hs) {
                if (PyErr_Occurred())
                    goto done;
                continue;   /* not a socket of this snapshot (another protocol, a netlink socket) */
            }
            if (get_slots(hs, names, &map, got) < 0)
                goto done;
            PyObject *h = holder_type->tp_alloc(holder_type, 3);
            if (!h)
                goto done;
            Py_INCREF(pid); Py_INCREF(PyTuple_GET_ITEM(pair, 1)); Py_INCREF(command);
            PyTuple_SET_ITEM(h, 0, pid);
            PyTuple_SET_ITEM(h, 1, PyTuple_GET_ITEM(pair, 1));
            PyTuple_SET_ITEM(h, 2, command);
            if (append_new(got[1], h) < 0)
                goto done;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *hs = PyList_GET_ITEM(socks, i);
        if (get_slots(hs, names, &map, got) < 0)
            goto done;
        if (!PyTuple_Check(got[0]) || PyTuple_GET_SIZE(got[0]) < 10 || !PyList_Check(got[1])) {
            PyErr_SetString(PyExc_TypeError, "attribute: a socket's row or holders changed during the call");
            goto done;
        }
        if (PyList_GET_SIZE(got[1]) == 0 && PyLong_Check(PyTuple_GET_ITEM(got[0], 9)) &&
            !is_zero(PyTuple_GET_ITEM(got[0], 9))) {
            unattributed++;
            if (PyObject_SetAttr(hs, s_flags_note, note) < 0)
                goto done;
        }
    }
    result = PyLong_FromSsize_t(unattributed);
    goto done;
decline:
    result = Py_None;
    Py_INCREF(result);
done:
    Py_XDECREF(got[0]);
    Py_XDECREF(got[1]);
    Py_DECREF(want);
    return result;
}

/* ---- walk ---------------------------------------------------------------------------------- */

static int all_digits(const char *s) {
    if (!*s)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

/* What a failed open/read of a process's fd directory means, as scan_socket_fds counts it:
 * 1 denied (EACCES/EPERM: another user's process), 2 vanished (it exited). */
static int refused_or_gone(int e) { return e == EACCES || e == EPERM ? 1 : 2; }

/* One process: its socket fds appended to ``pairs``; 0 done, 1 denied, 2 vanished, -1 error. */
static int walk_fds(int dfd, PyObject *pairs) {
    int dup_fd = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
    if (dup_fd < 0)
        return refused_or_gone(errno);
    DIR *d = fdopendir(dup_fd);
    if (!d) {
        int e = errno;
        close(dup_fd);
        return refused_or_gone(e);
    }
    struct dirent *ent;
    char link[64];
    for (;;) {
        errno = 0;                            /* readdir sets it only on an error */
        if ((ent = readdir(d)) == NULL)
            break;
        const char *name = ent->d_name;
        if (name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0)))
            continue;
        ssize_t len = readlinkat(dfd, name, link, sizeof link - 1);
        if (len < 0)
            continue;                         /* closed meanwhile (or not a link): skipped */
        link[len] = 0;
        if (len < 10 || memcmp(link, "socket:[", 8) != 0 || link[len - 1] != ']')
            continue;
        link[len - 1] = 0;
        int digits = all_digits(link + 8);
        link[len - 1] = ']';
        if (!digits || !all_digits(name))
            continue;
        PyObject *pair = Py_BuildValue("(Kl)", strtoull(link + 8, NULL, 10), strtol(name, NULL, 10));
        if (!pair || PyList_Append(pairs, pair) < 0) {
            Py_XDECREF(pair);
            closedir(d);
            return -1;
        }
        Py_DECREF(pair);
    }
    int e = errno;
    closedir(d);
    if (e)                                    /* readdir failed: the process went away */
        return refused_or_gone(e);
    return 0;
}

static PyObject *sd_walk(PyObject *self, PyObject *args) {
    const char *root;
    PyObject *skip_obj;
    if (!PyArg_ParseTuple(args, "sO", &root, &skip_obj))
        return NULL;
    long skip = -1;
    if (skip_obj != Py_None) {
        skip = PyLong_AsLong(skip_obj);
        if (skip == -1 && PyErr_Occurred())
            return NULL;
    }
    PyObject *processes = PyList_New(0), *denied = PyList_New(0);
    long scanned = 0, vanished = 0;
    if (!processes || !denied)
        goto error;
    DIR *top = opendir(root);
    if (!top)   /* as os.listdir failing: nothing scanned */
        return Py_BuildValue("(NlNl)", processes, 0L, denied, 0L);
    struct dirent *ent;
    char path[4096];
    while ((ent = readdir(top)) != NULL) {
        const char *name = ent->d_name;
        if (!all_digits(name))
            continue;
        long pid = strtol(name, NULL, 10);
        if (pid == skip)
            continue;
        snprintf(path, sizeof path, "%s/%s/fd", root, name);
        PyObject *pairs = NULL;
        int r, dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0) {
            r = refused_or_gone(errno);
        } else {
            pairs = PyList_New(0);
            r = pairs ? walk_fds(dfd, pairs) : -1;
            close(dfd);
        }
        if (r != 0)
            Py_XDECREF(pairs);
        if (r == 2) {
            vanished++;
            continue;
        }
        if (r == 1) {
            PyObject *p = PyLong_FromLong(pid);
            int failed = !p || PyList_Append(denied, p) < 0;
            Py_XDECREF(p);
            if (!failed)
                continue;
        }
        if (r != 0) {
            closedir(top);
            goto error;
        }
        scanned++;
        if (PyList_GET_SIZE(pairs)) {
            PyObject *entry = Py_BuildValue("(lN)", pid, pairs);
            if (!entry || PyList_Append(processes, entry) < 0) {
                Py_XDECREF(entry);
                closedir(top);
                goto error;
            }
            Py_DECREF(entry);
        } else {
            Py_DECREF(pairs);
        }
    }
    closedir(top);
    return Py_BuildValue("(NlNl)", processes, scanned, denied, vanished);
error:
    Py_XDECREF(processes);
    Py_XDECREF(denied);
    return NULL;
}

/* ---- pidfd_getfd ---------------------------------------------------------------------------- */

#if !defined(SYS_pidfd_getfd) && defined(__NR_pidfd_getfd)
#define SYS_pidfd_getfd __NR_pidfd_getfd
#endif

#ifdef SYS_pidfd_getfd
/* pidfd_getfd(pidfd, fd) -> a copy of the holder's fd in this process (close-on-exec, as the
 * kernel makes it); OSError with the errno when it fails.  _pidfd.FlagReader calls it, or the
 * same syscall through ctypes where this module is not built. */
static PyObject *sd_pidfd_getfd(PyObject *self, PyObject *args) {
    int pidfd, fd;
    if (!PyArg_ParseTuple(args, "ii", &pidfd, &fd))
        return NULL;
    long r = syscall(SYS_pidfd_getfd, pidfd, fd, 0);
    if (r < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromLong(r);
}
#endif

static PyMethodDef methods[] = {
#ifdef SYS_pidfd_getfd
    {"pidfd_getfd", sd_pidfd_getfd, METH_VARARGS, "pidfd_getfd(pidfd, fd) -> fd: the syscall (OSError on failure)"},
#endif
    {"walk", sd_walk, METH_VARARGS, "walk(root, skip) -> (processes, scanned, denied, vanished)"},
    {"decode", sd_decode, METH_VARARGS, "decode(data, proto, rows, row_type, offset) -> stop offset"},
    {"sort_rows", sd_sort_rows, METH_VARARGS, "sort_rows(rows) -> bool: sort SockRows in ls order"},
    {"ls_columns", sd_ls_columns, METH_VARARGS,
     "ls_columns(socks, host, state, flags, who, procs) -> list[list[str]] | None: the ls cells"},
    {"ls_json", sd_ls_json, METH_VARARGS,
     "ls_json(socks, host, head, text, proc, v6only) -> str | None: the sockets of ls --json"},
    {"attribute", sd_attribute, METH_VARARGS,
     "attribute(socks, processes, commands, holder_type, note) -> int | None: holders from an fd walk"},
    {"render", sd_render, METH_VARARGS, "render(cols, header) -> str | None: the aligned table"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "portspace.live._speedups",
    "Optional C versions of the inspector's per-row loops (see the C source's header).", -1, methods,
};

PyMODINIT_FUNC PyInit__speedups(void) { return PyModule_Create(&module); }

/*
 * portspace.live._speedups: optional C versions of the host inspector's three per-row loops.
 *
 * Theory of operation
 * -------------------
 * ``portspace ls`` on 20 000 sockets spends most of its own time (not the kernel's) in three
 * loops over every socket: decoding inet_diag messages into SockRow tuples, sorting the rows
 * into ls order, and padding the table.  Each is a pure function of its input, and each has a
 * Python version that stays the reference (``_sockdiag._decode_general``, ``list.sort`` with
 * ``_snapshot.ROW_ORDER``, ``cli._live._columns_table``); tests/live/test_speedups.py checks
 * them equal on captured and generated input.  This module is built by ``pip install`` where
 * a C compiler exists and is skipped where none does (setup.py marks it optional); the Python
 * code uses it when it imports and otherwise runs its own loops.
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

static PyMethodDef methods[] = {
    {"walk", sd_walk, METH_VARARGS, "walk(root, skip) -> (processes, scanned, denied, vanished)"},
    {"decode", sd_decode, METH_VARARGS, "decode(data, proto, rows, row_type, offset) -> stop offset"},
    {"sort_rows", sd_sort_rows, METH_VARARGS, "sort_rows(rows) -> bool: sort SockRows in ls order"},
    {"render", sd_render, METH_VARARGS, "render(cols, header) -> str | None: the aligned table"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "portspace.live._speedups",
    "Optional C versions of the inspector's per-row loops (see the C source's header).", -1, methods,
};

PyMODINIT_FUNC PyInit__speedups(void) { return PyModule_Create(&module); }

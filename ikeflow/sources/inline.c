/* The inline path of the capture reader (capture.py), compiled: counts the next in-sequence packets of
 * known ESP flows, as _PcapWalker.walk / _inline_more and _PcapngWalker._run count them, and stops at the
 * first record it would not count, which the Python loop then reads.  Optional: without it (no compiler at
 * install time, or IKEFLOW_PURE=1) the Python loop counts everything, to the same JSON byte for byte.
 *
 * A flow's hot list (model/esp.py): [packets, bytes, last time, last frame, last sequence, destination]. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define IPV4 0x0800
#define IPV6 0x86DD
#define IKE_PORT 500

static inline uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}
static inline uint32_t u32(const unsigned char *p, int big) { return big ? be32(p) : le32(p); }
static inline uint32_t be16(const unsigned char *p) { return (uint32_t)p[0] << 8 | p[1]; }
static inline uint64_t be64(const unsigned char *p) { return (uint64_t)be32(p) << 32 | be32(p + 4); }

/* What stays the same for a run of records. */
typedef struct {
    PyObject *hot;       /* dict: SPI -> hot list */
    long natt;           /* the NAT-T port */
    long etype_at;       /* offset of the ethertype in the frame; -1: raw IP, IPv4 assumed as the Python loop does */
    long ip_at;          /* offset of the IP header (before VLAN tags) */
    long need;           /* captured bytes the plain IPv4 check reads */
    int ethernet;        /* VLAN tags walked (Ethernet) */
    int more;            /* IPv6 and tagged frames counted too (_inline_more: nothing pending) */
    PyObject *record;    /* the Record class, for the MARK record of such a frame */
    PyObject *mark;      /* MARK */
    PyObject *empty;     /* b"" */
    PyObject *batch;     /* list the MARK records go to */
} Run;

static int replace(PyObject *list, Py_ssize_t i, PyObject *v) {
    if (v == NULL)
        return -1;
    PyList_SET_ITEM(list, i, v);  /* steals v */
    return 0;
}

/* Count a packet of flow `h` (already checked: next in sequence, same destination). */
static int count(PyObject *h, uint32_t size, double t, long long ref, uint32_t seq) {
    PyObject *old[5];
    for (int i = 0; i < 5; i++)
        old[i] = PyList_GET_ITEM(h, i);
    long long packets = PyLong_AsLongLong(old[0]), bytes = PyLong_AsLongLong(old[1]);
    if ((packets == -1 || bytes == -1) && PyErr_Occurred())
        return -1;
    PyObject *v[5] = {PyLong_FromLongLong(packets + 1), PyLong_FromLongLong(bytes + size), PyFloat_FromDouble(t),
                      PyLong_FromLongLong(ref), PyLong_FromUnsignedLong(seq)};
    int bad = 0;
    for (int i = 0; i < 5; i++)
        bad |= v[i] == NULL;
    if (bad) {
        for (int i = 0; i < 5; i++)
            Py_XDECREF(v[i]);
        return -1;
    }
    for (int i = 0; i < 5; i++) {
        replace(h, i, v[i]);
        Py_DECREF(old[i]);
    }
    return 0;
}

/* The hot list of `spi` if this packet is its flow's next in sequence to `dst`, else NULL (error: set). */
static PyObject *next_of(const Run *run, uint32_t spi, PyObject *dst_obj, uint64_t dst, uint32_t seq) {
    if (!spi)
        return NULL;
    PyObject *key = PyLong_FromUnsignedLong(spi);
    if (key == NULL)
        return NULL;
    PyObject *h = PyDict_GetItemWithError(run->hot, key);
    Py_DECREF(key);
    if (h == NULL || !PyList_CheckExact(h) || PyList_GET_SIZE(h) != 6)
        return NULL;
    PyObject *hdst = PyList_GET_ITEM(h, 5), *hseq = PyList_GET_ITEM(h, 4);
    if (!PyLong_CheckExact(hdst) || !PyLong_CheckExact(hseq))
        return NULL;
    if (dst_obj != NULL) {
        int same = PyObject_RichCompareBool(hdst, dst_obj, Py_EQ);
        if (same <= 0)
            return NULL;
    } else {
        int overflow;
        long long d = PyLong_AsLongLongAndOverflow(hdst, &overflow);
        if (overflow || d != (long long)dst)
            return NULL;
    }
    int overflow;
    long long last = PyLong_AsLongLongAndOverflow(hseq, &overflow);
    if (overflow || last + 1 != (long long)seq)
        return NULL;
    return h;
}

/* Count the frame `f` (`caplen` bytes, not cut, time `t`, frame `ref`) if it is the next in sequence of a
 * known ESP flow.  1: counted; 0: not (the Python loop reads it); -1: error. */
static int frame(const Run *run, const unsigned char *f, Py_ssize_t caplen, double t, long long ref) {
    uint32_t etype = run->etype_at < 0 ? IPV4 : (caplen >= run->etype_at + 2 ? be16(f + run->etype_at) : 0);
    const unsigned char *ip;
    uint32_t size, spi, seq;
    if (caplen >= run->need && etype == IPV4) {  /* plain IPv4: as the loop of _PcapWalker.walk */
        ip = f + run->ip_at;
        if (ip[0] == 0x45 && !(be16(ip + 6) & 0x3FFF)) {
            uint32_t proto = ip[9], dst = be32(ip + 16), w0 = be32(ip + 20), w1 = be32(ip + 24);
            size = be16(ip + 2);
            if (proto == 50) {
                spi = w0, seq = w1;
            } else if (proto == 17 && ((long)(w0 >> 16) == run->natt || (long)(w0 & 0xFFFF) == run->natt)
                       && 16 <= (w1 >> 16) && (long)(w1 >> 16) <= (long)size - 20) {
                spi = be32(ip + 28), seq = be32(ip + 32);
            } else {
                return 0;
            }
            PyObject *h = next_of(run, spi, NULL, dst, seq);
            if (h == NULL)
                return PyErr_Occurred() ? -1 : 0;
            return count(h, size, t, ref, seq) < 0 ? -1 : 1;
        }
        return 0;  /* (_inline_more declines what this declines) */
    }
    if (caplen < run->need || !run->more)
        return 0;
    /* IPv6, or behind 802.1Q/802.1ad tags: as _PcapWalker._inline_more */
    const unsigned char *end = f + caplen;
    ip = f + run->ip_at;
    if (run->ethernet)
        while ((etype == 0x8100 || etype == 0x88A8 || etype == 0x9100) && ip + 4 <= end) {
            etype = be16(ip + 2);
            ip += 4;
        }
    uint32_t body, proto, w0, w1, w2, w3, w_ike;
    uint64_t dst = 0, dst_hi = 0;
    if (etype == IPV6) {
        if (ip + 76 > end || ip[0] >> 4 != 6)
            return 0;
        dst_hi = be64(ip + 24), dst = be64(ip + 32);
        if (!(dst_hi || dst >> 32))
            return 0;
        proto = ip[6], body = 40, size = 40 + be16(ip + 4);
        w0 = be32(ip + 40), w1 = be32(ip + 44), w2 = be32(ip + 48), w3 = be32(ip + 52), w_ike = be32(ip + 72);
    } else if (etype == IPV4) {
        if (ip + 56 > end || ip[0] != 0x45 || (be16(ip + 6) & 0x3FFF))
            return 0;
        proto = ip[9], body = 20, size = be16(ip + 2), dst = be32(ip + 16);
        w0 = be32(ip + 20), w1 = be32(ip + 24), w2 = be32(ip + 28), w3 = be32(ip + 32), w_ike = be32(ip + 52);
    } else {
        return 0;
    }
    if (ip + size > end)
        return 0;
    long room = (long)size - (long)body;  /* (negative for a length shorter than the header) */
    if (proto == 50) {
        spi = room >= 8 ? w0 : 0, seq = room >= 8 ? w1 : 0;
    } else if (proto == 17) {
        uint32_t sport = w0 >> 16, dport = w0 & 0xFFFF, udp_len = w1 >> 16;
        if (((long)sport != run->natt && (long)dport != run->natt) || sport == IKE_PORT || dport == IKE_PORT
            || udp_len < 16 || (long)udp_len > room || (udp_len >= 36 && w_ike == udp_len - 8))
            return 0;
        spi = w2, seq = w3;
    } else {
        return 0;
    }
    PyObject *h;
    if (etype == IPV6) {
        unsigned char raw[16];
        memcpy(raw, ip + 24, 16);
        PyObject *d = _PyLong_FromByteArray(raw, 16, 0, 0);
        if (d == NULL)
            return -1;
        h = next_of(run, spi, d, 0, seq);
        Py_DECREF(d);
    } else {
        h = next_of(run, spi, NULL, dst, seq);
    }
    if (h == NULL)
        return PyErr_Occurred() ? -1 : 0;
    PyObject *args[5] = {NULL, NULL, NULL, NULL, NULL};
    args[0] = PyLong_FromLongLong(ref);
    args[1] = PyFloat_FromDouble(t);
    args[4] = PyLong_FromSsize_t(caplen);
    if (args[0] == NULL || args[1] == NULL || args[4] == NULL)
        goto fail;
    args[2] = run->mark, args[3] = run->empty;
    PyObject *rec = PyObject_Vectorcall(run->record, args, 5, NULL);
    if (rec == NULL || PyList_Append(run->batch, rec) < 0) {
        Py_XDECREF(rec);
        goto fail;
    }
    Py_DECREF(rec);
    Py_DECREF(args[0]), Py_DECREF(args[1]), Py_DECREF(args[4]);
    return count(h, size, t, ref, seq) < 0 ? -1 : 1;
fail:
    Py_XDECREF(args[0]), Py_XDECREF(args[1]), Py_XDECREF(args[4]);
    return -1;
}

static int run_args(Run *run, PyObject *const *a) {
    /* hot, natt, etype_at, ip_at, need, ethernet, more, Record, MARK, b"", batch */
    if (!PyDict_Check(a[0]) || !PyList_Check(a[10])) {
        PyErr_SetString(PyExc_TypeError, "hot: a dict, batch: a list");
        return -1;
    }
    run->hot = a[0];
    run->natt = PyLong_AsLong(a[1]);
    run->etype_at = PyLong_AsLong(a[2]);
    run->ip_at = PyLong_AsLong(a[3]);
    run->need = PyLong_AsLong(a[4]);
    run->ethernet = PyObject_IsTrue(a[5]);
    run->more = PyObject_IsTrue(a[6]);
    run->record = a[7], run->mark = a[8], run->empty = a[9], run->batch = a[10];
    return PyErr_Occurred() ? -1 : 0;
}

/* pcap(buf, off, stop, n, ts, ref, scale, big, hot, natt, etype_at, ip_at, need, ethernet, more, Record, MARK,
 * b"", batch) -> (off, ts, ref): the records from `off` on (starting before `stop`, ending by `n`) that are
 * counted, up to the first that is not. */
static PyObject *pcap(PyObject *self, PyObject *const *a, Py_ssize_t nargs) {
    if (nargs != 19) {
        PyErr_SetString(PyExc_TypeError, "pcap() takes 19 arguments");
        return NULL;
    }
    Py_ssize_t off = PyLong_AsSsize_t(a[1]), stop = PyLong_AsSsize_t(a[2]), n = PyLong_AsSsize_t(a[3]);
    double ts = PyFloat_AsDouble(a[4]), scale = PyFloat_AsDouble(a[6]);
    long long ref = PyLong_AsLongLong(a[5]);
    int big = PyObject_IsTrue(a[7]);
    Run run;
    if (PyErr_Occurred() || run_args(&run, a + 8) < 0)
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(a[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *b = view.buf;
    if (n > view.len)
        n = view.len;
    int got = 0;
    while (off < stop && off + 16 <= n) {
        const unsigned char *r = b + off;
        uint32_t caplen = u32(r + 8, big), wirelen = u32(r + 12, big);
        Py_ssize_t end = off + 16 + (Py_ssize_t)caplen;
        if (end > n || caplen < wirelen)
            break;
        double t = (double)u32(r, big) + (double)u32(r + 4, big) * scale;
        if (t <= ts)
            break;
        got = frame(&run, r + 16, caplen, t, ref + 1);
        if (got <= 0)
            break;
        ts = t, ref += 1, off = end;
    }
    PyBuffer_Release(&view);
    if (got < 0)
        return NULL;
    return Py_BuildValue("ndL", off, ts, ref);
}

/* pcapng(buf, off, stop, n, ts, ref, scale, tsoff, big, btype, iface, hot, natt, etype_at, ip_at, need,
 * ethernet, more, Record, MARK, b"", batch) -> (off, ts, ref, prev): as pcap(), for the packet blocks of type
 * `btype` on interface word `iface` (prev: where the last one counted starts, -1: none). */
static PyObject *pcapng(PyObject *self, PyObject *const *a, Py_ssize_t nargs) {
    if (nargs != 22) {
        PyErr_SetString(PyExc_TypeError, "pcapng() takes 22 arguments");
        return NULL;
    }
    Py_ssize_t off = PyLong_AsSsize_t(a[1]), stop = PyLong_AsSsize_t(a[2]), n = PyLong_AsSsize_t(a[3]);
    Py_ssize_t prev = -1;
    double ts = PyFloat_AsDouble(a[4]), scale = PyFloat_AsDouble(a[6]), tsoff = PyFloat_AsDouble(a[7]);
    long long ref = PyLong_AsLongLong(a[5]);
    int big = PyObject_IsTrue(a[8]);
    unsigned long btype = PyLong_AsUnsignedLong(a[9]), iface = PyLong_AsUnsignedLong(a[10]);
    Run run;
    if (PyErr_Occurred() || run_args(&run, a + 11) < 0)
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(a[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *b = view.buf;
    if (n > view.len)
        n = view.len;
    int got = 0;
    while (off < stop && off + 28 <= n) {
        const unsigned char *r = b + off;
        uint32_t blen = u32(r + 4, big), caplen = u32(r + 20, big), wirelen = u32(r + 24, big);
        if (u32(r, big) != btype || u32(r + 8, big) != iface || blen < 32 || blen % 4 || blen > (1 << 18) + 64
            || caplen > blen - 32 || caplen < wirelen)
            break;
        Py_ssize_t end = off + blen;
        if (end > n)
            break;
        uint64_t stamp = (uint64_t)u32(r + 12, big) << 32 | u32(r + 16, big);
        double t = (double)stamp * scale + tsoff;
        if (t <= ts)
            break;
        got = frame(&run, r + 28, caplen, t, ref + 1);
        if (got <= 0)
            break;
        prev = off, ts = t, ref += 1, off = end;
    }
    PyBuffer_Release(&view);
    if (got < 0)
        return NULL;
    return Py_BuildValue("ndLn", off, ts, ref, prev);
}

static PyMethodDef methods[] = {
    {"pcap", (PyCFunction)(void (*)(void))pcap, METH_FASTCALL, "Count the in-sequence ESP of pcap records."},
    {"pcapng", (PyCFunction)(void (*)(void))pcapng, METH_FASTCALL, "Count the in-sequence ESP of packet blocks."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "inline", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_inline(void) { return PyModule_Create(&module); }

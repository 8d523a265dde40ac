"""The reader's ESP fast path a chunk of records at a time, with numpy (for big captures).

The walkers in `capture` hand over a table of the records of a chunk: per record a
16-byte header of four words (two time words, captured length, wire length; the pcap
record header, or the same words of a pcapng Enhanced Packet Block) and the first
FRAME bytes of the frame.  `classify` finds the ESP in it as the per-record path does:
plain IPv4 at the link type's offsets (`capture._PcapWalker.walk`), and IPv6 or frames
behind 802.1Q/802.1ad tags (`capture._PcapWalker._more`).  `count_runs` then counts, all
at once, the flows whose every packet in the chunk is the next in sequence of a flow
already counted: what the per-record path counts in place without looking at anything
else.  Every other record is left to the per-record path, in order, so the result is
the same to the last counter (`tests/test_capture.py` compares the two paths).
"""

from __future__ import annotations

import numpy as np

from ikeflow.decode.linktypes import ETHERNET, LinkType

FRAME = 104  # bytes of each frame in the table: two VLAN tags, IPv6, UDP and the first 36 bytes of an ISAKMP header
ROW = 16 + FRAME
NATIVE, IKE_PORT = 0x0800, 500
IPV6 = 0x86DD
VLAN = (0x8100, 0x88A8, 0x9100)
INLINE, MORE, UNSURE = 1, 2, -1  # kinds of record: ESP for the inline path, for _more, or maybe ESP (its SPI is left alone)


def table(heads: list) -> bytes:
    """The records' rows (ROW bytes each: the last ones, cut by the end of the buffer, padded) in one buffer."""
    i = len(heads)
    while i and len(heads[i - 1]) < ROW:
        i -= 1
        heads[i] = bytes(heads[i]).ljust(ROW, b"\0")
    return b"".join(heads)


class Chunk:
    """The ESP of a chunk of records, per record: kind (0: not ESP), spi, seq, size, destination (hi, lo)."""

    def __init__(self, raw: bytes, endian: str):
        self.raw, n = raw, len(raw) // ROW
        words = np.ndarray((n, 4), endian + "u4", raw, 0, (ROW, 4)).astype(np.int64)
        self.a, self.b, self.caplen, self.wirelen = words.T
        self.kind = np.zeros(n, np.int8)
        self.spi = np.zeros(n, np.int64)
        self.seq = np.zeros(n, np.int64)
        self.size = np.zeros(n, np.int64)
        self.hi = np.zeros(n, np.uint64)
        self.lo = np.zeros(n, np.uint64)

    def field(self, at: int, width: int, rows: np.ndarray | None = None) -> np.ndarray:
        """The big-endian unsigned field at byte `at` of every frame (or of `rows`): int64 (width 8: uint64)."""
        view = np.ndarray((len(self.kind),), f">u{width}", self.raw, 16 + at, (ROW,))
        return (view if rows is None else view[rows]).astype(np.uint64 if width == 8 else np.int64)


def classify(chunk: Chunk, linktype: int, lt: LinkType, natt: int) -> bool:
    """Fill in the ESP of `chunk` as a link type `lt` capture; False if a frame is beyond what the table
    holds (more than two VLAN tags): the chunk is then for the per-record path."""
    caplen, ip = chunk.caplen, lt.ip_at
    fit = caplen >= ip + 36  # what the per-record path asks before it looks at a frame
    etype = np.full(len(caplen), NATIVE, np.int64) if lt.ethertype_at is None else chunk.field(lt.ethertype_at, 2)
    first = chunk.field(ip, 1)
    inline = fit & (etype == NATIVE) & (first == 0x45) & ((chunk.field(ip + 6, 2) & 0x3FFF) == 0)
    _esp(chunk, np.nonzero(inline)[0], ip, ip + 20, natt, INLINE)
    more = fit & ~inline
    if not more.any():
        return True
    at = np.full(len(caplen), ip, np.int64)
    if lt.ethertype_at is None:  # raw IP: the version says
        etype = np.where(first >> 4 == 6, IPV6, NATIVE)
    elif linktype == ETHERNET:
        for _ in range(2):
            tag = more & np.isin(etype, VLAN) & (at + 4 <= caplen)
            if not tag.any():
                break
            for where in np.unique(at[tag]).tolist():
                rows = np.nonzero(tag & (at == where))[0]
                etype[rows] = chunk.field(where + 2, 2, rows)
            at += 4 * tag
        if (more & np.isin(etype, VLAN) & (at + 4 <= caplen)).any():
            return False
    for where in np.unique(at[more]).tolist():
        rows = more & (at == where)
        for version, body in ((IPV6, where + 40), (NATIVE, where + 20)):
            idx = np.nonzero(rows & (etype == version))[0]
            if len(idx):
                _esp(chunk, idx, where, body, natt, MORE)
    return True


def _esp(chunk: Chunk, idx: np.ndarray, ip: int, body: int, natt: int, kind: int) -> None:
    """Mark the ESP among the records `idx`, whose IP header is at `ip` and payload at `body` (IPv6 if body - ip
    is 40), as the per-record path finds it: `kind` INLINE (fast_esp's checks) or MORE (_more's)."""
    rows = None if len(idx) == len(chunk.kind) else idx
    cap = chunk.caplen[idx]
    w = [chunk.field(body + 4 * k, 4, rows) for k in range(4)]
    if body - ip == 40:
        ok = (ip + 56 <= cap) & (chunk.field(ip, 1, rows) >> 4 == 6)
        size, proto = 40 + chunk.field(ip + 4, 2, rows), chunk.field(ip + 6, 1, rows)
        hi, lo = chunk.field(ip + 24, 8, rows), chunk.field(ip + 32, 8, rows)
        ok &= (hi != 0) | (lo >= np.uint64(1 << 32))  # an IPv4 destination could not be told from it
    else:
        ok = (ip + 36 <= cap) & (chunk.field(ip, 1, rows) == 0x45) & ((chunk.field(ip + 6, 2, rows) & 0x3FFF) == 0)
        size, proto = chunk.field(ip + 2, 2, rows), chunk.field(ip + 9, 1, rows)
        hi, lo = np.zeros(len(idx), np.uint64), chunk.field(ip + 16, 4, rows).astype(np.uint64)
    sport, dport, ulen = w[0] >> 16, w[0] & 0xFFFF, w[1] >> 16
    natted = (sport == natt) | (dport == natt)
    plain = proto == 50
    if kind == INLINE:  # fast_esp
        udp = (proto == 17) & natted & (16 <= ulen) & (ulen <= size - 20)
        unsure = None
    else:  # _PcapWalker._more
        dend = ip + size
        ok &= dend <= cap
        plain &= dend - body >= 8
        uend = body + ulen
        udp = (proto == 17) & natted & (sport != IKE_PORT) & (dport != IKE_PORT) & (body + 16 <= uend) & (uend <= dend)
        # capture._ike_without_marker's cheap half: an ISAKMP length equal to the UDP payload's; then only the
        # decoder can tell, so such a frame's SPI is left to the per-record path
        unsure = udp & (ulen - 8 >= 28) & (chunk.field(body + 32, 4, rows) == ulen - 8)
    spi = np.where(plain, w[0], w[2])
    esp = ok & (plain | udp) & (spi != 0)
    at = idx[esp]
    chunk.kind[at] = kind
    if unsure is not None:
        chunk.kind[idx[esp & unsure]] = UNSURE
    chunk.spi[at] = spi[esp]
    chunk.seq[at] = np.where(plain, w[1], w[3])[esp]
    chunk.size[at] = size[esp]
    chunk.hi[at] = hi[esp]
    chunk.lo[at] = lo[esp]


def count_runs(chunk: Chunk, times: np.ndarray, first_ref: int, hot: dict, pending: dict, flood: int) -> np.ndarray:
    """Count the flows whose every ESP packet in the chunk is, in frame order, the next in sequence of a flow
    already counted (two packets or more: a single-packet flow may yet be forgotten as part of a flood) into
    their hot lists (model.esp).  Returns which records were counted."""
    kind = chunk.kind
    counted = np.zeros(len(kind), bool)
    esp = np.nonzero(kind > 0)[0]
    if not len(esp):
        return counted
    order = esp[np.argsort(chunk.spi[esp], kind="stable")]
    spi = chunk.spi[order]
    starts = np.flatnonzero(np.r_[True, spi[1:] != spi[:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    base = chunk.seq[order] - (np.arange(len(order)) - np.repeat(starts, sizes))
    hi, lo = chunk.hi[order], chunk.lo[order]
    same = ((np.minimum.reduceat(base, starts) == np.maximum.reduceat(base, starts))
            & (np.minimum.reduceat(hi, starts) == np.maximum.reduceat(hi, starts))
            & (np.minimum.reduceat(lo, starts) == np.maximum.reduceat(lo, starts)))
    # SPIs left to the per-record path: maybe ESP, or cut ESP that _more remembers (_counted)
    left = np.unique(chunk.spi[(kind == UNSURE) | ((kind == MORE) & (chunk.caplen < chunk.wirelen))])
    if len(left):
        same &= ~np.isin(spi[starts], left)
    groups = np.flatnonzero(same)
    heads = starts[groups]
    more = np.maximum.reduceat(kind[order], starts)[groups] == MORE
    get = hot.get
    picked = [(h := get(s)) is not None and h[0] > 1 and first == h[4] + 1 and (dhi << 64 | dlo) == h[5]
              and not (by_more and (flood or (pending and (((1 << 128 | h[5]) if h[5] >> 32 else h[5]) << 32 | s)
                                              in pending)))
              for s, first, dhi, dlo, by_more in zip(spi[heads].tolist(), base[heads].tolist(), hi[heads].tolist(),
                                                     lo[heads].tolist(), more.tolist())]
    groups = groups[np.array(picked, bool)] if picked else groups
    if not len(groups):
        return counted
    nbytes = np.add.reduceat(chunk.size[order], starts)[groups]
    last = order[starts[groups] + sizes[groups] - 1]
    for s, n, nb, t, ref, seq in zip(spi[starts[groups]].tolist(), sizes[groups].tolist(), nbytes.tolist(),
                                     times[last].tolist(), (last + first_ref).tolist(), chunk.seq[last].tolist()):
        h = get(s)
        h[0] += n
        h[1] += nb
        h[2] = t
        h[3] = ref
        h[4] = seq
    mark = np.zeros(len(starts), bool)
    mark[groups] = True
    counted[order[np.repeat(mark, sizes)]] = True
    return counted


def pcap_times(chunk: Chunk, scale: float) -> np.ndarray:
    """The records' times, as the per-record path computes them (seconds + fraction * scale)."""
    return chunk.a.astype(np.float64) + chunk.b.astype(np.float64) * scale


def pcapng_times(chunk: Chunk, scale: float, tsoff: float) -> np.ndarray:
    """The packet blocks' times, as the per-record path computes them ((high << 32 | low) * scale + offset)."""
    return ((chunk.a.astype(np.uint64) << np.uint64(32)) | chunk.b.astype(np.uint64)).astype(np.float64) * scale + tsoff


def settle(chunk: Chunk, times: np.ndarray, ref: int, ts: float, quality, hot: dict, pending: dict,
           flood: int) -> tuple[list, ...]:
    """The clock and cut checks of every record of the chunk (`ref`: the frame before its first, at `ts`),
    and `count_runs`; returns what is left for the per-record path: the indices of the records and which
    of them are counted _more frames (MARK), then the times, captured and wire lengths of all records."""
    before = np.concatenate(([ts], times[:-1]))
    for i in np.nonzero(times <= before)[0].tolist():
        quality.clock(ref + 1 + i, float(times[i]), float(before[i]))
    for i in np.nonzero(chunk.caplen < chunk.wirelen)[0].tolist():
        quality.cut_short(ref + 1 + i, int(chunk.caplen[i]))
    counted = count_runs(chunk, times, ref + 1, hot, pending, flood)
    marks = counted & (chunk.kind == MORE)
    todo = np.nonzero(~counted | marks)[0]
    return todo.tolist(), marks[todo].tolist(), times.tolist(), chunk.caplen.tolist(), chunk.wirelen.tolist()

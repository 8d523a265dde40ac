"""The clock offset between two capture points (clock of the second minus clock of the first).

First estimate: the time differences of every pair of identical IKE message copies, per
direction; the densest cluster of each direction is its estimate, and with both directions the
offset is their midpoint (transit delay assumed symmetric).  With no IKE message at both points,
ESP SAs whose first or last sequence number is the same at both stand in.  Once the messages
are matched with that estimate, the offset is refined to the medians of the matches."""

from __future__ import annotations

import statistics
from collections import defaultdict

from ikeflow.compare.matching import MAX_PAIRS
from ikeflow.compare.points import by_key
from ikeflow.compare.segment import Clock, Segment

CLUSTER = 0.02  # s: time differences this close belong to the same match


def estimate(seg: Segment) -> Clock:
    """The first estimate, before any message is matched."""
    diffs: dict[str, list[float]] = {"I": [], "R": []}
    for conv in seg.convs:
        for sa_key in conv.sas:
            xs, ys = seg.x.msgs.get(sa_key), seg.y.msgs.get(sa_key)
            if not xs or not ys:
                continue
            byy = by_key(ys)
            for k, a in by_key(xs).items():
                b = byy.get(k)
                if b:
                    a, b = a[:MAX_PAIRS], b[:MAX_PAIRS]
                    diffs[a[0].sender].extend(mb.time - ma.time for ma in a for mb in b)
    centres = {d: densest(v) for d, v in diffs.items() if v}
    method = "ike"
    if not centres:
        centres, method = _esp_estimate(seg), "esp"
    if not centres:
        return Clock()
    return Clock(sum(centres.values()) / len(centres), method, 0, len(centres) == 1)


def _esp_estimate(seg: Segment) -> dict[str, float]:
    out: dict[str, list[float]] = {"I": [], "R": []}
    ys = defaultdict(list)
    for f in seg.y.an.esp.flows.values():
        ys[f.spi].append(f)
    for conv in seg.convs:
        for f in conv.flows[seg.x.index]:
            for g in ys.get(f.spi, []):
                role = "I" if f.src == conv.initiator.get(seg.x.index) else "R"
                if f.seq_min == g.seq_min:
                    out[role].append(g.first_time - f.first_time)
                if f.seq_max == g.seq_max:
                    out[role].append(g.last_time - f.last_time)
    return {d: statistics.median(v) for d, v in out.items() if v}


def refine(seg: Segment) -> Clock:
    """The medians of the matched messages per direction (the first estimate when nothing matched)."""
    diffs: dict[str, list[float]] = {"I": [], "R": []}
    for conv in seg.convs:
        for a, b in conv.matches:
            diffs[a.sender].append(b.time - a.time)
    medians = {d: statistics.median(v) for d, v in diffs.items() if v}
    matches = sum(len(v) for v in diffs.values())
    if not medians:
        return Clock(seg.clock.offset, seg.clock.method, matches, seg.clock.one_way)
    return Clock(sum(medians.values()) / len(medians), "ike", matches, len(medians) == 1)


def densest(values: list[float]) -> float:
    """The median of the densest run of values no wider than 2 * CLUSTER."""
    v = sorted(values)
    best, start = (0, 0, 0), 0
    for end in range(len(v)):
        while v[end] - v[start] > 2 * CLUSTER:
            start += 1
        if end - start + 1 > best[0]:
            best = (end - start + 1, start, end)
    return statistics.median(v[best[1]: best[2] + 1])

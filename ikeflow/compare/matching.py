"""Matching two capture points: conversations (peer pairs joined across NAT by the IKE SAs and
ESP SPIs they share), IKE message copies paired nearest in time, which point is nearer the
initiator, and per direction what was sent, what arrived, what was lost or duplicated."""

from __future__ import annotations

import statistics
from bisect import bisect_left, bisect_right
from collections import defaultdict

from ikeflow.compare.points import Msg, Point, by_key
from ikeflow.compare.segment import Conversation, Direction, Segment
from ikeflow.render.common import ip

WINDOW = 1.0  # s: most a matched copy may sit from the expected time (after the clock offset)
MAX_PAIRS = 64  # copies of one message per point compared pairwise; beyond that nearest in order


def _pair_of(f) -> tuple[bytes, bytes]:
    """The core peer-pair key of an ESP flow."""
    return (f.src, f.dst) if f.src <= f.dst else (f.dst, f.src)


def conversations(x: Point, y: Point) -> list[Conversation]:
    """Peer pairs at the two points joined by the IKE SAs and ESP SPIs they share, in order of first packet."""
    parent: dict = {}

    def find(n):
        while parent.setdefault(n, n) != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    def union(a, b):
        parent[find(a)] = find(b)

    for p in (x, y):
        for key in p.an.pairs:
            find((p.index, key))
    for sa_key in set(x.msgs) & set(y.msgs):
        kx, ky = x.pair_key(sa_key), y.pair_key(sa_key)
        if kx and ky:
            union((x.index, kx), (y.index, ky))
    spis: dict[int, list] = defaultdict(list)
    for p in (x, y):
        for f in p.an.esp.flows.values():
            spis[f.spi].append((p.index, _pair_of(f)))
    for nodes in spis.values():
        for n in nodes[1:]:
            union(nodes[0], n)
    groups: dict = defaultdict(list)
    for n in list(parent):
        groups[find(n)].append(n)
    convs = []
    for nodes in groups.values():
        pairs: dict[int, list] = {x.index: [], y.index: []}
        for p, key in nodes:
            pairs[p].append(key)
        sas: dict[tuple, float] = {}
        for p in (x, y):
            for sa_key, lst in p.msgs.items():
                if lst and p.pair_key(sa_key) in pairs[p.index]:
                    sas[sa_key] = min(sas.get(sa_key, lst[0].time), lst[0].time)
        flows = {p.index: [f for f in p.an.esp.flows.values() if _pair_of(f) in pairs[p.index]] for p in (x, y)}
        if not sas and not flows[x.index] and not flows[y.index]:
            continue
        conv = Conversation(pairs, sorted(sas, key=lambda k: sas[k]), flows)
        for p in (x, y):
            for sa_key in conv.sas:
                sa = p.an.sas.get(sa_key)
                if sa is not None and sa.initiator and sa.responder and p.index not in conv.initiator:
                    conv.initiator[p.index], conv.responder[p.index] = sa.initiator[0], sa.responder[0]
        _esp_roles(conv, x.index, y.index)
        convs.append(conv)

    def start(c: Conversation) -> float:
        ts = [m[0].time for s in c.sas for m in (x.msgs.get(s), y.msgs.get(s)) if m]
        ts += [f.first_time for fl in c.flows.values() for f in fl]
        return min(ts, default=0.0)

    convs.sort(key=start)
    return convs


def seen_at_one_point(seg: Segment, conv: Conversation) -> tuple[Point, set[bytes], set[bytes], list[float]] | None:
    """A conversation seen at one point only: that point, the addresses that sent its IKE messages and ESP, the
    addresses they went to, and when (each IKE message, each ESP flow's first and last packet); None when it was
    seen at both points.  Sent by both ends there, it did not go through the other point; sent by one end only,
    it may all have been lost on the way."""
    for p in (seg.x, seg.y):
        if conv.pairs[p.index] and not conv.pairs[seg.other(p.index).index]:
            msgs = [m for sa_key in conv.sas for m in p.msgs.get(sa_key, [])]
            flows = conv.flows[p.index]
            return (p, {m.src for m in msgs} | {f.src for f in flows}, {m.dst for m in msgs} | {f.dst for f in flows},
                    [m.time for m in msgs] + [t for f in flows for t in (f.first_time, f.last_time)])
    return None


def _esp_roles(conv: Conversation, x: int, y: int) -> None:
    """Fill in the end addresses at a point that saw ESP but no IKE of the conversation."""
    by_spi = {p: {f.spi: f for f in conv.flows[p]} for p in (x, y)}
    for p, q in ((x, y), (y, x)):
        if p in conv.initiator or not conv.flows[p]:
            continue
        for f in sorted(conv.flows[p], key=lambda h: h.first_time):
            g = by_spi[q].get(f.spi)
            if g is not None and q in conv.initiator:
                i_to_r = g.src == conv.initiator[q] or g.dst == conv.responder[q]
                conv.initiator[p], conv.responder[p] = (f.src, f.dst) if i_to_r else (f.dst, f.src)
                break
        else:  # no IKE anywhere: the source of the first ESP flow plays the initiator
            f = min(conv.flows[p], key=lambda h: h.first_time)
            conv.initiator[p], conv.responder[p] = f.src, f.dst


def match(seg: Segment, conv: Conversation) -> None:
    """conv.matches: identical copies at the two points paired up; conv.only: the rest, per point."""
    x, y = seg.x, seg.y
    conv.matches = []
    conv.only = {x.index: [], y.index: []}
    for sa_key in conv.sas:
        byx, byy = by_key(x.msgs.get(sa_key, [])), by_key(y.msgs.get(sa_key, []))
        for k in byx.keys() | byy.keys():
            a, b = byx.get(k, []), byy.get(k, [])
            pairs = pair_copies(a, b, seg.clock.offset)
            conv.matches.extend(pairs)
            used_a = {id(p[0]) for p in pairs}
            used_b = {id(p[1]) for p in pairs}
            conv.only[x.index].extend(m for m in a if id(m) not in used_a)
            conv.only[y.index].extend(m for m in b if id(m) not in used_b)
    conv.matches.sort(key=lambda p: p[0].time)
    for lst in conv.only.values():
        lst.sort(key=lambda m: m.time)


def pair_copies(a: list[Msg], b: list[Msg], offset: float) -> list[tuple[Msg, Msg]]:
    """Identical copies at the two points, paired nearest in time (after the offset), each used once."""
    if not a or not b:
        return []
    if len(a) * len(b) > MAX_PAIRS * MAX_PAIRS:  # many copies: first free one within the window
        out, used = [], set()
        bt = [m.time - offset for m in b]
        for m in a:
            for k in range(bisect_left(bt, m.time - WINDOW), bisect_right(bt, m.time + WINDOW)):
                if k not in used:
                    used.add(k)
                    out.append((m, b[k]))
                    break
        return out
    cand = sorted((abs(mb.time - offset - ma.time), i, j) for i, ma in enumerate(a) for j, mb in enumerate(b))
    ua, ub, out = set(), set(), []
    for delta, i, j in cand:
        if delta > WINDOW:
            break
        if i in ua or j in ub:
            continue
        ua.add(i)
        ub.add(j)
        out.append((a[i], b[j]))
    return out


def orient(seg: Segment, conv: Conversation) -> None:
    """Which point is nearer the initiator: transit times, else where packets go missing."""
    x, y = seg.x.index, seg.y.index
    diffs: dict[str, list[float]] = {"I": [], "R": []}
    for a, b in conv.matches:
        diffs[a.sender].append(b.time - a.time)
    if diffs["I"] and diffs["R"]:
        d = statistics.median(diffs["I"]) - statistics.median(diffs["R"])
        if abs(d) > 2e-5:
            conv.init_side, conv.orientation = (x if d > 0 else y), "timing"
            return
    score = 0
    for p, sign in ((x, 1), (y, -1)):  # IKE goes missing downstream of where it is sent
        for m in conv.only[p]:
            if seg.judged(m):
                score += sign if m.sender == "I" else -sign
    for p, q, sign in ((x, y, 1), (y, x, -1)):  # and so does ESP
        theirs = {f.spi: f for f in conv.flows[q]}
        for f in conv.flows[p]:
            g = theirs.get(f.spi)
            if f.packets > (g.packets if g else 0) and (g is not None or seg.flow_judged(p, f)):
                score += sign if f.src == conv.initiator.get(p) else -sign
    if score:
        conv.init_side, conv.orientation = (x if score > 0 else y), "loss"
    else:
        conv.init_side, conv.orientation = x, "assumed"


def directions(seg: Segment, conv: Conversation) -> None:
    """conv.directions: per direction the IKE messages sent, arrived, lost, duplicated, reordered and
    their transit times (ESP is added by esp.compare)."""
    x, y = seg.x.index, seg.y.index
    other = {x: y, y: x}
    for role in ("I", "R"):
        up = conv.init_side if role == "I" else other[conv.init_side]
        d = Direction(role, up, other[up])
        a, b = (conv.initiator, conv.responder) if role == "I" else (conv.responder, conv.initiator)
        d.src = ip(a.get(up, a.get(other[up], b""))) or "?"
        d.dst = ip(b.get(up, b.get(other[up], b""))) or "?"
        conv.directions[role] = d
    for mx, my in conv.matches:
        d = conv.directions[mx.sender]
        u, w = (mx, my) if d.up == x else (my, mx)
        d.sent += 1
        d.arrived += 1
        d.matched.append((u, w))
        d.delays.append(seg.to_y(w.point, w.time) - seg.to_y(u.point, u.time))
    for p in (x, y):
        for m in conv.only[p]:
            d = conv.directions[m.sender]
            judged = seg.judged(m)
            if p == d.up:
                if judged:
                    d.sent += 1
                    d.lost.append(m)
                else:
                    d.outside += 1
            elif judged:
                if any(o.key == m.key for o in seg.point(d.up).msgs.get(m.sa, [])):
                    d.duplicated += 1
                else:
                    d.not_seen_upstream.append(m)
    for d in conv.directions.values():
        top = float("-inf")
        for u, _ in sorted(d.matched, key=lambda uw: uw[1].time):
            if u.time < top:
                d.reordered += 1
            top = max(top, u.time)
        d.matched.sort(key=lambda uw: uw[0].time)

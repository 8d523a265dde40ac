"""What else changed between two capture points: NAT mappings (an end's address:port at the
point nearer to it and at the other), IP datagrams whose fragments never all arrived at a point,
and ICMP errors seen at one point only."""

from __future__ import annotations

from ikeflow.compare import esp
from ikeflow.compare.matching import WINDOW
from ikeflow.compare.segment import Incomplete, IcmpOneSide, NatMapping, Segment, Sighting


def nat_mappings(seg: Segment) -> list[NatMapping]:
    """Endpoint translations between the points: for each end, its address:port at the point
    nearer to it (inside) and at the other point (outside)."""
    seen: dict[tuple, tuple[NatMapping, dict]] = {}  # (conv, endpoint, inside) -> (mapping, outside -> sighting)
    x = seg.x.index
    for ci, conv in enumerate(seg.convs):
        far = seg.y.index if conv.init_side == x else x
        near = {"I": conv.init_side, "R": far}

        def note(endpoint, inside, outside, t, frames):
            if inside == outside:
                return
            key = (ci, endpoint, inside)
            if key not in seen:
                seen[key] = (NatMapping(ci, endpoint, inside, _kind(seg, inside[1]), []), {})
            sightings = seen[key][1]
            o = sightings.setdefault(outside, Sighting(t, t, 0, frames))
            o.first_time, o.last_time = min(o.first_time, t), max(o.last_time, t)
            o.count += 1

        def src(h):
            return h.src, h.sport

        def dst(h):
            return h.dst, h.dport

        for mx, my in conv.matches:
            by = {mx.point: mx, my.point: my}
            sender = mx.sender
            for role, addr in ((sender, src), ("R" if sender == "I" else "I", dst)):
                inner, outer = by[near[role]], by[seg.other(near[role]).index]
                note(role, addr(inner), addr(outer), seg.to_y(inner.point, inner.time),
                     [seg.point(inner.point).ref(inner.ref), seg.point(outer.point).ref(outer.ref)])
        for role, f, g in esp.pairs(seg, conv):
            if g is None or f.encap != "udp":
                continue
            up = conv.directions[role].up
            by = {up: f, seg.other(up).index: g}
            for r, addr in ((role, src), ("R" if role == "I" else "I", dst)):
                inner, outer = by[near[r]], by[seg.other(near[r]).index]
                note(r, addr(inner), addr(outer), seg.to_y(near[r], inner.first_time),
                     [seg.point(near[r]).ref(inner.first_frame), seg.other(near[r]).ref(outer.first_frame)])
    out = []
    for m, sightings in seen.values():
        m.outside = sorted(sightings.items(), key=lambda kv: kv[1].first_time)
        out.append(m)
    return out


def _kind(seg: Segment, port: int) -> int | None:
    return 500 if port == seg.ike_port else 4500 if port == seg.natt_port else None


def incomplete_fragments(seg: Segment) -> list[Incomplete]:
    """IP datagrams that never completed at a point, tied to the IKE message they most likely were
    (a fragmented message of about the same time at the other point that is missing here)."""
    out = []
    for p in (seg.x, seg.y):
        q = seg.other(p.index)
        for d in p.an.reassembler.incomplete:
            t = seg.to_y(p.index, d["first_time"])
            cands = [m for conv in seg.convs for m in conv.only.get(q.index, [])
                     if m.fragments and abs(seg.to_y(q.index, m.time) - t) < WINDOW]
            best = min(cands, key=lambda m: abs(seg.to_y(q.index, m.time) - t), default=None)
            out.append(Incomplete(p.index, [p.ref(r) for r in d["frames"]], d["src"], d["dst"], d["bytes"],
                                  d["has_first"], d["fragments"], d["first_time"], best))
    return out


def icmp_one_side(seg: Segment) -> list[IcmpOneSide]:
    """ICMP errors seen at one point with no counterpart (same error, same IKE SA, same time) at the other
    (but those about conversations that did not go through the other point)."""
    elsewhere = {(p, key) for conv in seg.elsewhere for p, keys in conv.pairs.items() for key in keys}
    events = {p.index: [e for key, pair in p.an.pairs.items() if (p.index, key) not in elsewhere for e in pair.icmp]
              for p in (seg.x, seg.y)}
    used: set[int] = set()
    for e in events[seg.x.index]:
        best = None
        for f in events[seg.y.index]:
            if id(f) in used or f.text != e.text or (e.sa and f.sa and e.sa != f.sa):
                continue
            delta = abs(f.time - seg.clock.offset - e.time)
            if delta <= WINDOW and (best is None or delta < best[0]):
                best = (delta, f)
        if best:
            used.add(id(best[1]))
            used.add(id(e))
    return [IcmpOneSide(p.index, e) for p in (seg.x, seg.y) for e in events[p.index] if id(e) not in used]

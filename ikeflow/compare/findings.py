"""The findings of one segment: the evidence for each situation the matching found, the row of
compare.rules it picks, and the finding's summary, frames and hint."""

from __future__ import annotations

import os
import time
from collections import defaultdict

from ikeflow.compare import matching, rules
from ikeflow.compare.points import Msg, Point
from ikeflow.compare.segment import (EDGE, CompareFinding, Conversation, Direction, EspSa, IcmpOneSide,
                                    Incomplete, NatMapping, Segment)
from ikeflow.diagnose.finding import WARNING, times
from ikeflow.render.common import clock, endpoint, ip
from ikeflow.sources.capture import split_ref

MTU_PAYLOAD = 1472  # bytes of UDP payload that fit a 1500-byte IPv4 packet


def findings(seg: Segment, first_segment: bool, last_segment: bool) -> list[CompareFinding]:
    """Every finding of the segment; requests unanswered are judged only at the ends of the path."""
    out = [_empty(seg, p) for p in (seg.x, seg.y) if p.empty()]
    for conv in seg.convs:
        pair = (conv.pairs[conv.init_side] or conv.pairs[seg.other(conv.init_side).index] or [None])[0]
        for d in conv.directions.values():
            out += _lost(seg, d, pair)
            out += [_esp(seg, d, sa, pair) for sa in d.esp if sa.judged and sa.lost]
            if (d.down == seg.y.index and last_segment) or (d.down == seg.x.index and first_segment):
                out += _unanswered(seg, conv, d, pair)
    out += [_nat_changed(seg, m) for m in seg.nat if len(m.outside) > 1]
    out += [_icmp(seg, e) for e in seg.icmp_one_side]
    out += [_fragments(seg, fr) for fr in seg.fragments]
    return out


def _finding(seg: Segment, row: rules.Row, at: str, summary: str, hint: str, frames: list[int] | None = None,
             pair=None, severity: str | None = None) -> CompareFinding:
    return CompareFinding(severity or row.severity, row.code, at, summary, hint, frames or [], list(row.causes),
                          pair=pair, segment=seg.points)


def _where(seg: Segment, d: Direction) -> str:
    return f"between the capture points ({seg.point(d.up).name} → {seg.point(d.down).name})"


def _frames(ms: list[Msg]) -> str:
    """The frame numbers of the first 8 messages, and how many more."""
    return ", ".join(str(split_ref(m.ref)[1]) for m in ms[:8]) + (f" and {len(ms) - 8} more" if len(ms) > 8 else "")


def _lost(seg: Segment, d: Direction, pair) -> list[CompareFinding]:
    """IKE messages of which no copy arrived, one finding per rule (and recovered or not); messages of
    which another copy arrived, one more."""
    if not d.lost:
        return []
    up, down = seg.point(d.up), seg.point(d.down)
    arrived_keys = {(u.sa, u.key) for u, _ in d.matched}
    groups: dict[tuple, list[Msg]] = {}
    for m in d.lost:
        groups.setdefault((m.sa, m.key), []).append(m)
    last_arrival = max((seg.to_y(w.point, w.time) for _, w in d.matched), default=None)

    def natt(u: Msg) -> bool:
        return u.natt or seg.natt_port in (u.dport, u.sport)

    natt_arrived = any(natt(u) for u, _ in d.matched)
    plain_arrived = any(not natt(u) for u, _ in d.matched)
    small_arrived = any(not u.fragments for u, _ in d.matched)
    whole: dict[tuple, list] = defaultdict(list)  # (row, recovered) -> groups of which no copy arrived
    partial: list[list[Msg]] = []
    for key, ms in groups.items():
        if key in arrived_keys:
            partial.append(ms)
            continue
        m = ms[0]
        row = rules.pick(rules.LOST, rules.Lost(
            answer=not m.request or m.response, fragmented=any(x.fragments for x in ms) or m.size > MTU_PAYLOAD,
            natt=natt(m), natt_arrived=natt_arrived, plain_arrived=plain_arrived, small_arrived=small_arrived,
            none_arrived=not d.matched))
        recovered = last_arrival is not None and last_arrival > seg.to_y(d.up, ms[-1].time)
        whole[(row, recovered)].append(ms)
    out = []
    facts = {"up": up.name, "down": down.name, "ike": seg.ike_port, "natt": seg.natt_port, "where": _where(seg, d)}
    for (row, recovered), gs in whole.items():
        msgs = [m for ms in gs for m in ms]
        incomplete = [f for f in seg.fragments if f.point == d.down and f.message in msgs]
        fragments = (f"{len(incomplete)} arrived as incomplete IP fragments" if incomplete else
                     f"none of their IP fragments reached {down.name}")
        says = row.says.format(**facts, fragments=fragments)
        out.append(_finding(
            seg, row, gs[0][0].label,
            f"{d.src} → {d.dst}: {_describe_all(seg, gs)}, never arrived at {down.name}: "
            f"{says}{', later messages got through' if recovered else ''}",
            row.hint.format(**facts), [up.ref(m.ref) for m in msgs] + [f.frames[0] for f in incomplete], pair,
            WARNING if recovered else None))
    if partial:
        row = rules.pick(rules.COPY_LOST)
        what = "; ".join(f"{len(ms)} cop{'y' if len(ms) == 1 else 'ies'} of {ms[0].label}" for ms in partial)
        out.append(_finding(seg, row, partial[0][0].label, f"{d.src} → {d.dst}: {what} {row.says.format(**facts)}",
                            row.hint.format(**facts), [up.ref(m.ref) for ms in partial for m in ms], pair))
    return out


def _describe_all(seg: Segment, groups: list[list[Msg]]) -> str:
    """The lost messages, each with its sends; messages alike (label, size, port, point) said once, counted."""
    alike: dict[tuple, list[list[Msg]]] = {}
    for ms in groups:
        m = ms[0]
        alike.setdefault((m.label, m.size, m.dport, m.natt, m.fragments, m.point), []).append(ms)
    return "; ".join(_describe(seg, gs[0]) if len(gs) == 1 else _describe(seg, [m for ms in gs for m in ms], len(gs))
                     for gs in alike.values())


def _describe(seg: Segment, ms: list[Msg], messages: int = 1) -> str:
    """One message and its sends ("MM5 (124 bytes, UDP 4500) sent 4 times at P (frames ...)"), or `messages` alike."""
    m = ms[0]
    port = f"UDP {m.dport}" + (" after the non-ESP marker" if m.natt else "")
    frag = f", {m.fragments} IP fragments" if m.fragments else ""
    what = f"{m.label} ({m.size} bytes" if messages == 1 else f"{messages} {m.label} messages ({m.size} bytes each"
    sent = times(len(ms)) if messages == 1 else f"{len(ms)} times in all" if len(ms) > messages else "once each"
    return (f"{what}, {port}{frag}) sent {sent} at {seg.point(m.point).name} "
            f"(frame{'s' if len(ms) > 1 else ''} {_frames(ms)})")


def _esp(seg: Segment, d: Direction, sa: EspSa, pair) -> CompareFinding:
    """ESP of one SA lost between the points."""
    up, down = seg.point(d.up), seg.point(d.down)
    f, g = sa.flow_up, sa.flow_down
    larger = (sa.lost >= 2 and sa.lost_smallest is not None and sa.lost_smallest > sa.arrived_largest)
    row = rules.pick(rules.ESP, rules.EspLoss(none_arrived=sa.arrived == 0, larger_lost=larger))
    facts = {"up": up.name, "down": down.name, "where": _where(seg, d), "src": d.src, "dst": d.dst,
             "packets": f.packets, "lost": sa.lost, "note": f" ({sa.note})" if sa.note else "",
             "frames": f"{split_ref(f.first_frame)[1]}–{split_ref(f.last_frame)[1]}",
             "esp": f"UDP {f.dport}" if f.encap == "udp" else "IP protocol 50 (ESP)",
             "sent": f"{f.seq_min}–{f.seq_max}", "arrived": f"{g.seq_min}–{g.seq_max}" if g else "",
             "lost_smallest": sa.lost_smallest, "arrived_largest": sa.arrived_largest}
    # the first packet sent, and the first that arrived (the last sent when none did)
    frames = [up.ref(f.first_frame), down.ref(g.first_frame) if sa.arrived else up.ref(f.last_frame)]
    return _finding(seg, row, "ESP", f"ESP SPI {f.spi:08x} {d.src} → {d.dst}: {row.says.format(**facts)}",
                    row.hint.format(**facts), frames, pair)


def _unanswered(seg: Segment, conv: Conversation, d: Direction, pair) -> list[CompareFinding]:
    """Requests that reached the capture point nearest the peer, re-sent, never answered there."""
    down = seg.point(d.down)
    at_down = {sa_key: down.msgs.get(sa_key, []) for sa_key in conv.sas}
    groups: dict[tuple, list[Msg]] = {}
    for _, w in d.matched:
        if w.request and not w.response:
            groups.setdefault((w.sa, w.key), []).append(w)
    for m in conv.only.get(d.down, []):
        if (m.sa, m.key) in groups:
            groups[(m.sa, m.key)].append(m)
    hits = []
    for (sa_key, _), ws in groups.items():
        ws.sort(key=lambda m: m.time)
        first = ws[0]
        if len(ws) < 2 and first.copies < 2:
            continue  # not re-sent: its sender did not wait for an answer
        answered = any(o.sender != first.sender and o.time >= first.time and
                       (o.message_id == first.message_id or first.sa[0] == 1) for o in at_down[sa_key])
        if not answered:
            hits.append(ws)
    if not hits:
        return []
    peer = conv.responder.get(d.down) if d.role == "I" else conv.initiator.get(d.down)
    icmp = [e for k in conv.pairs.get(d.down, []) for e in down.an.pairs[k].icmp
            if peer is not None and e.src == peer]
    first = hits[0][0]
    row = rules.pick(rules.UNANSWERED, rules.Unanswered(
        icmp_unreachable=any("unreachable" in e.text for e in icmp),
        liveness=first.label in ("INFO", "INFORMATIONAL"),
        answered_before=any(o.sender != first.sender and o.time < first.time for o in at_down.get(first.sa, []))))
    facts = {"icmp": icmp[0].text if icmp else "", "peer": ip(peer) if peer else "the peer"}
    what = "; ".join(f"{ws[0].label} arrived {times(len(ws))} (frame{'s' if len(ws) > 1 else ''} {_frames(ws)})"
                     for ws in hits)
    return [_finding(
        seg, row, first.label,
        f"{d.src} → {d.dst}: {what} at {down.name}, re-sent and never answered there: the requests got through "
        f"the capture points; they are lost beyond {down.name}, or the peer does not answer"
        f"{row.says.format(**facts)}",
        row.hint.format(**facts), [down.ref(m.ref) for ws in hits for m in ws] + [down.ref(e.ref) for e in icmp[:4]],
        pair)]


def _nat_changed(seg: Segment, m: NatMapping) -> CompareFinding:
    conv = seg.convs[m.conv]
    row = rules.pick(rules.NAT_CHANGED)
    chain = " → ".join(f"{endpoint(o)} from {clock(v.first_time)}" for o, v in m.outside)
    return _finding(
        seg, row, "NAT-T",
        f"the NAT between {seg.x.name} and {seg.y.name} changed the mapping of "
        f"{'initiator' if m.endpoint == 'I' else 'responder'} {endpoint(m.inside)}: {chain}",
        row.hint, [v.frames[0] for _, v in m.outside], (conv.pairs[conv.init_side] or [None])[0])


def _icmp(seg: Segment, e: IcmpOneSide) -> CompareFinding:
    ev, p = e.event, seg.point(e.point)
    to = (ev.about[2], ev.about[3])
    expired = ("port unreachable" in ev.text and ev.src == ev.about[2]
               and any(to == outside for m in seg.nat for outside, _ in m.outside))
    row = rules.pick(rules.ICMP, rules.Icmp(expired_mapping=expired))
    return _finding(
        seg, row, "IP",
        f"ICMP {ev.text} from {ip(ev.src)} about {ip(ev.about[0])}:{ev.about[1]} → {ip(ev.about[2])}:{ev.about[3]} "
        f"seen at {p.name} only (frame {split_ref(ev.ref)[1]}){row.says}", row.hint, [p.ref(ev.ref)])


def _fragments(seg: Segment, fr: Incomplete) -> CompareFinding:
    p, m = seg.point(fr.point), fr.message
    row = rules.pick(rules.FRAGMENTS, rules.Fragments(has_first=fr.has_first))
    about = (f" ({m.label} frame {split_ref(m.ref)[1]} at {seg.point(m.point).name}, {m.fragments} fragments)"
             if m is not None else "")
    return _finding(
        seg, row, "IP",
        f"an IP-fragmented datagram {ip(fr.src)} → {ip(fr.dst)} arrived incomplete at {p.name}: "
        f"{fr.fragments} fragment(s), {fr.bytes} bytes{about}", row.hint, fr.frames[:10])


def _empty(seg: Segment, p: Point) -> CompareFinding:
    row = rules.pick(rules.EMPTY)
    return _finding(
        seg, row, "capture",
        f"{p.name} holds no packets: everything sent towards it was lost before it, or it captured the wrong "
        "interface or filter", row.hint)


def captures(seg: Segment) -> CompareFinding | None:
    """The two captures as a whole: compare-same or compare-unrelated (and then no other finding), or None
    when they can be compared."""
    x, y = seg.x, seg.y
    spans = {x.index: x.times(), y.index: y.times()}
    tx, ty = spans.values()
    empty = tx is None or ty is None
    spis = [{f.spi for f in p.an.esp.flows.values()} for p in (x, y)]
    gap = 0.0 if empty else max(ty[0] - seg.to_y(x.index, tx[1]), seg.to_y(x.index, tx[0]) - ty[1])
    row = rules.pick(rules.CAPTURES, rules.Captures(
        same=_same_file(x, y) or not empty and _copies(x, y),
        empty=empty,
        shared=any(conv.matches for conv in seg.convs) or _esp_in_both(x, y),
        same_ids=bool(set(x.msgs) & set(y.msgs) or spis[0] & spis[1]),
        timed=not empty and not tx[2] and not ty[2],
        overlap=gap <= EDGE,
        one_way_to_other=not empty and _one_way_to_other(seg, spans)))
    if not row.code:
        return None
    a, b = (x.name, y.name) if x.name != y.name else (x.path, y.path)
    if row.code == "compare-same":
        what = ("are the same file" if _same_file(x, y) else
                f"hold the same {x.packets} packets at the same times ({_span(tx)}): two copies of one capture")
        return _finding(seg, row, "capture", row.says.format(x=a, y=b, what=what), row.hint)
    clockless = [f"{n} ({t[2]})" for n, t in ((a, tx), (b, ty)) if t[2]]
    ids = [f"IKE SA IKEv{v} {ispi.hex()}" for v, ispi in x.msgs if (v, ispi) in y.msgs]
    ids += [f"ESP SPI {spi:08x}" for spi in sorted(spis[0] & spis[1])]
    why = ((f"; {_some(ids)} {'is' if len(ids) == 1 else 'are'} in both, but not one of "
            f"{'its' if len(ids) == 1 else 'their'} packets" if ids else "")
           + f", and the timestamps of {' and '.join(clockless)} cannot tell whether both were capturing at the same "
           "time" if clockless else
           ", no IKE SA or ESP SPI either, and neither holds traffic sent one way only towards an address the "
           "other saw while it was capturing (which would be loss between them)")
    return _finding(seg, row, "capture", f"{row.says.format(x=a, y=b, gap=_duration(gap), why=why)}. "
                                         f"{a}: {_holds(x, tx)}. {b}: {_holds(y, ty)}", row.hint)


def _same_file(x: Point, y: Point) -> bool:
    try:
        return "-" not in (x.path, y.path) and os.path.samefile(x.path, y.path)
    except OSError:
        return False


def _copies(x: Point, y: Point) -> bool:
    """The same frames at the same times: two copies of one capture (pcap and pcapng, gzipped or not)."""
    if (x.packets, x.first_time, x.last_time) != (y.packets, y.first_time, y.last_time):
        return False
    mine = x.digest()
    return mine is not None and mine == y.digest()


def _esp_in_both(x: Point, y: Point) -> bool:
    """An ESP packet in both captures: an SPI with sequence numbers in common."""
    theirs = defaultdict(list)
    for g in y.an.esp.flows.values():
        theirs[g.spi].append(g)
    return any(f.seq_min <= g.seq_max and g.seq_min <= f.seq_max
               for f in x.an.esp.flows.values() for g in theirs.get(f.spi, ()))


def _one_way_to_other(seg: Segment, spans: dict) -> bool:
    """A conversation seen at one point only, sent one way only (by one address) to an address the other point
    saw, while the other point was capturing: everything of it was lost on the way."""
    seen = {p.index: {a for key in p.an.pairs for a in key} for p in (seg.x, seg.y)}
    for conv in seg.convs:
        alone = matching.seen_at_one_point(seg, conv)
        if alone is None or len(alone[1]) != 1:
            continue
        p, _, targets, sent = alone
        q = seg.other(p.index).index
        start, end = seg.to_y(q, spans[q][0]) - EDGE, seg.to_y(q, spans[q][1]) + EDGE
        if targets & seen[q] and any(start <= seg.to_y(p.index, t) <= end for t in sent):
            return True
    return False


def _holds(p: Point, span: tuple) -> str:
    """What a capture holds, for compare-unrelated: packets, time range, IKE SAs, ESP SPIs."""
    sas = [f"IKEv{v} {ispi.hex()}" for v, ispi in p.msgs]
    spis = [f"{spi:08x}" for spi in dict.fromkeys(f.spi for f in p.an.esp.flows.values())]
    return (f"{p.packets} packet{'' if p.packets == 1 else 's'}, {_span(span)}; IKE SAs (initiator SPI): "
            f"{_some(sas)}; ESP SPIs: {_some(spis)}")


def _some(items: list[str], n: int = 3) -> str:
    return "none" if not items else ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def _span(span) -> str:
    t0, t1, no_clock = span
    d0, d1 = _date(t0), _date(t1)
    if d0[:10] == d1[:10]:
        d1 = d1[11:]
    return f"{d0} to {d1} UTC" + (f" (timestamps {no_clock}: no clock)" if no_clock else "")


def _date(t: float) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1000):03d}"
    except (OverflowError, OSError, ValueError):
        return f"{t:.3f} s"


def _duration(s: float) -> str:
    return (f"{s:.1f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h" if s < 172800
            else f"{s / 86400:.0f} days")

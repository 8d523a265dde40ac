"""ESP across a segment, per SPI: the core counts ESP per flow without keeping packets, so each
SA's flow at its upstream point is compared with the flow of that SPI downstream (packets,
duplicates, sequence ranges), and packet by packet when both points kept every sequence number."""

from __future__ import annotations

from collections.abc import Iterator

from ikeflow.compare.points import ESP_KEEP
from ikeflow.compare.segment import EDGE, Conversation, Direction, EspSa, Segment
from ikeflow.sources.capture import split_ref


def pairs(seg: Segment, conv: Conversation) -> Iterator[tuple]:
    """(role, flow at its upstream point, flow with that SPI downstream or None) per ESP SA."""
    x, y = seg.x.index, seg.y.index
    seen = set()
    for p in (x, y):
        q = y if p == x else x
        for f in conv.flows[p]:
            if f.spi in seen:
                continue
            role = "I" if (f.src == conv.initiator.get(p) or f.dst == conv.responder.get(p)) else "R"
            up = conv.init_side if role == "I" else (y if conv.init_side == x else x)
            g = next((h for h in conv.flows[q] if h.spi == f.spi), None)
            if p != up:
                if g is None:
                    continue  # seen downstream only: nothing was sent upstream to compare
                f, g = g, f
            seen.add(f.spi)
            yield role, f, g


def compare(seg: Segment, conv: Conversation) -> None:
    """Each direction's `esp`: its ESP SAs, sent and arrived."""
    for role, f, g in pairs(seg, conv):
        d = conv.directions[role]
        d.esp.append(_compare(seg, d, f, g))


def _compare(seg: Segment, d: Direction, f, g) -> EspSa:
    down = seg.point(d.down)
    sa = EspSa(f.spi, f, g, f.packets, g.packets if g else 0)
    if down.empty():
        sa.lost = f.packets - f.duplicates
        return sa
    t0, t1 = seg.to_y(d.up, f.first_time), seg.to_y(d.up, f.last_time)
    q0, q1 = seg.to_y(d.down, down.first_time), seg.to_y(d.down, down.last_time)
    within = t0 >= q0 - EDGE and t1 <= q1 + EDGE
    if g is None:
        if t1 < q0 - EDGE or t0 > q1 + EDGE:
            sa.judged, sa.note = False, "sent while the other point was not capturing"
        else:
            sa.lost = f.packets - f.duplicates
            if not within:
                sa.note = "partly sent while the other point was not capturing"
        return sa
    sa.duplicated = max(0, g.duplicates - f.duplicates)
    sa.reordered = max(0, g.reordered - f.reordered)
    if within:
        sa.lost = max(0, (f.packets - f.duplicates) - (g.packets - g.duplicates))
    else:  # only the holes inside the range seen downstream can be judged
        sa.lost = max(0, g.lost - f.lost)
        sa.note = "the flow runs beyond the other capture: only sequence gaps within its range are judged"
    _packets(seg, d, sa, q0, q1)
    return sa


def _packets(seg: Segment, d: Direction, sa: EspSa, q0: float, q1: float) -> None:
    """Packet by packet, by SPI and sequence number, when both points kept every sequence number:
    which were sent and never arrived (while the other point was capturing), which arrived more
    often than they were sent, and the transit time of each."""
    up, down = seg.point(d.up).esp_seqs.get(sa.spi), seg.point(d.down).esp_seqs.get(sa.spi, {})
    if up is None or len(up) >= ESP_KEEP or len(down) >= ESP_KEEP:
        return
    lost, transit, lost_sizes, arrived_sizes = [], [], [], []
    for seq, copies in up.items():
        t = seg.to_y(d.up, copies[0][0])
        if seq in down:
            transit.append(seg.to_y(d.down, down[seq][0][0]) - t)
            arrived_sizes.append(copies[0][2])
        elif q0 + EDGE <= t <= q1 - EDGE:  # clearly while the other point was capturing
            lost.append((seq, copies[0][1]))
            lost_sizes.append(copies[0][2])
    if lost_sizes and arrived_sizes:
        sa.lost_smallest, sa.arrived_largest = min(lost_sizes), max(arrived_sizes)
    lost.sort()
    sa.lost = len(lost)
    sa.lost_seq = [s for s, _ in lost[:20]]
    sa.lost_frames = [split_ref(r)[1] for _, r in lost[:20]]
    sa.duplicated = sum(max(0, len(c) - len(up.get(s, ()))) for s, c in down.items())
    sa.transit = transit

"""Captures along a path: the points in order, and one segment per two neighbouring points,
compared step by step (see the package docstring for the method)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ikeflow.compare import between, clock, esp, matching
from ikeflow.compare.findings import captures, findings
from ikeflow.compare.points import Point
from ikeflow.compare.segment import CompareFinding, Segment
from ikeflow.diagnose.finding import ERROR, INFO, WARNING
from ikeflow.limits import DEFAULT, Limits

if TYPE_CHECKING:
    from ikeflow.keys import KeyRing


def compare_points(x: Point, y: Point, ike_port: int, natt_port: int, first: bool, last: bool) -> Segment:
    """Two neighbouring points, read: their segment with everything filled in (`first` and `last`:
    the segment is at that end of the path)."""
    seg = Segment(x, y, ike_port, natt_port)
    seg.convs = matching.conversations(x, y)
    seg.clock = clock.estimate(seg)
    for conv in seg.convs:
        matching.match(seg, conv)
    seg.clock = clock.refine(seg)
    for conv in seg.convs:
        matching.match(seg, conv)
    unrelated = captures(seg)
    if unrelated is not None:  # the same capture twice, or unrelated ones: nothing to judge between them
        seg.findings, seg.compared = [unrelated], False
        return seg
    if not (seg.x.empty() or seg.y.empty()):  # an empty point saw nothing at all: everything was lost before it
        convs, seg.convs = seg.convs, []
        for conv in convs:
            alone = matching.seen_at_one_point(seg, conv)
            (seg.elsewhere if alone and len(alone[1]) > 1 else seg.convs).append(conv)
    for conv in seg.convs:
        matching.orient(seg, conv)
        matching.directions(seg, conv)
        esp.compare(seg, conv)
    seg.nat = between.nat_mappings(seg)
    seg.fragments = between.incomplete_fragments(seg)
    seg.icmp_one_side = between.icmp_one_side(seg)
    seg.findings = findings(seg, first, last)
    return seg


class Comparison:
    """Captures along a path, point by point; `segments[i]` compares point i with point i+1."""

    def __init__(self, paths: list[str], ike_port: int = 500, natt_port: int = 4500, limits: Limits = DEFAULT,
                 keys: KeyRing | None = None):
        self.points = [Point(i, p, ike_port, natt_port, limits, keys) for i, p in enumerate(paths)]
        self.ike_port, self.natt_port = ike_port, natt_port
        self.segments: list[Segment] = []

    def run(self) -> Comparison:
        for p in self.points:
            p.read()
        n = len(self.points)
        for i in range(n - 1):
            self.segments.append(compare_points(self.points[i], self.points[i + 1], self.ike_port, self.natt_port,
                                                first=i == 0, last=i == n - 2))
        return self

    def offsets(self) -> list[float]:
        """Clock of each point minus the clock of the first."""
        out = [0.0]
        for s in self.segments:
            out.append(out[-1] + s.clock.offset)
        return out

    def findings(self) -> list[CompareFinding]:
        """The findings of every segment, errors first."""
        seen, out = set(), []
        for f in (f for s in self.segments for f in s.findings):
            k = (f.code, f.summary)  # an empty middle point is reported by both of its segments
            if k not in seen:
                seen.add(k)
                out.append(f)
        order = {ERROR: 0, WARNING: 1, INFO: 2}
        out.sort(key=lambda f: (order[f.severity], f.segment or (0, 0), min(f.frames) if f.frames else 0))
        return out
